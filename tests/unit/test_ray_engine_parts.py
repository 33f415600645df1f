"""Parts of the ray engine that need no Ray."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from facecluster.engines import base, make_engine
from facecluster.engines import ray as ray_engine


def test_a_large_feature_matrix_lives_in_a_temporary_file(monkeypatch):
    monkeypatch.setattr(base, "IN_MEMORY_BYTES", 0)
    matrix = base.FeatureMatrix(3)
    matrix[1] = np.array([1.0, 2.0], dtype=np.float32)
    result = matrix.result()
    assert isinstance(result, np.memmap)
    np.testing.assert_array_equal(result[1], [1, 2])
    assert np.isnan(result[[0, 2]]).all()


def test_no_features_gives_an_empty_matrix_with_a_row_per_sample():
    assert base.FeatureMatrix(4).result().shape == (4, 0)


def test_missing_ray_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    engine = make_engine("ray", workers=2)
    with pytest.raises(ImportError, match=r"facecluster\[ray\]"):
        engine.extract([], None, None, None)


def test_local_ray_workers_import_this_facecluster_and_share_its_model_cache(monkeypatch):
    monkeypatch.setenv("FACECLUSTER_CACHE_DIR", "/somewhere")
    env = ray_engine.local_runtime_env()["env_vars"]
    assert env["FACECLUSTER_CACHE_DIR"] == "/somewhere"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(ray_engine.__file__).resolve().parents[2])
