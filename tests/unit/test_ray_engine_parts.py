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


def _batch(path: Path, sha256: str, sent: bool = False, data: bytes = b"") -> dict:
    return {"path": np.array([str(path)]), "name": np.array([path.name]), "sha256": np.array([sha256]),
            "sent": np.array([sent]), "data": np.array([data], dtype=object)}


def test_an_actor_uses_an_image_it_reads_only_when_its_bytes_are_the_drivers(tmp_path):
    import hashlib

    image = tmp_path / "a.jpg"
    image.write_bytes(b"the driver's bytes")
    digest = hashlib.sha256(b"the driver's bytes").hexdigest()
    read = ray_engine._FaceEmbedder._image_bytes
    assert read(_batch(image, digest), 0) == b"the driver's bytes"
    assert read(_batch(image, hashlib.sha256(b"other bytes").hexdigest()), 0) is None  # another file there
    assert read(_batch(tmp_path / "absent.jpg", digest), 0) is None  # this node does not see it
    assert read(_batch(image, ""), 0) is None  # the driver could not hash it: the driver says why
    assert read(_batch(tmp_path / "absent.jpg", digest, sent=True, data=b"sent"), 0) == b"sent"


def test_the_driver_sends_images_in_bounded_parts_and_records_those_it_cannot_read(tmp_path, monkeypatch):
    from facecluster.dataset import Sample

    monkeypatch.setattr(ray_engine, "SEND_BYTES", 10)
    paths = []
    for name, size in (("a.jpg", 6), ("b.jpg", 6), ("c.jpg", 3)):
        (tmp_path / name).write_bytes(b"x" * size)
        paths.append(tmp_path / name)
    paths.insert(1, tmp_path / "gone.jpg")
    samples = [Sample(path=p, label="real", split="train", relpath=p.name) for p in paths]

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    ledger = base.Ledger(samples, None, None, Bar(), seconds=("detect", "embed"))
    jobs = [base.Job(i, None) for i in range(len(samples))]
    parts = list(ray_engine.RayEngine._driver_reads(ledger, jobs))
    assert [[job.row for job in part] for part, _ in parts] == [[0], [2, 3]]  # 6 + 6 > 10 bytes
    assert [len(d) for d in parts[1][1]] == [6, 3]
    assert ledger.status[1] == "missing" and "gone.jpg" in ledger.messages[1] and ledger.bar.n == 1
