"""Model-based families: facenet-bottleneck (shipped) and dlib (optional extra)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from facecluster.config import FeaturesConfig
from facecluster.features import dlib_resnet, make_extractor
from facecluster.errors import MissingExtraError
from facecluster.features.dlib_resnet import DlibFeatures

from .test_facenet_model import synthetic_face

HAVE_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.stack([synthetic_face(seed) for seed in range(3)])


def test_facenet_bottleneck_is_the_1792_layer_and_cached_apart(faces):
    bottleneck = make_extractor(FeaturesConfig(extractor="facenet-bottleneck"))
    facenet = make_extractor(FeaturesConfig(extractor="facenet"))
    assert bottleneck.name == "facenet-bottleneck" and bottleneck.dim == 1792 and facenet.dim == 512
    assert bottleneck.cache_identity() != facenet.cache_identity()
    out = bottleneck.transform(faces, np.zeros((3, 18)))
    assert out.shape == (3, 1792) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(bottleneck.transform(faces, np.zeros((3, 18))), out, atol=1e-6)
    assert not np.allclose(out[0], out[1])


def test_dlib_missing_extra_is_named(monkeypatch):
    monkeypatch.setattr(dlib_resnet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingExtraError, match=r"facecluster\[dlib\]"):
        dlib_resnet.dlib_model_files()
    monkeypatch.setitem(__import__("sys").modules, "dlib", None)  # import dlib → ImportError
    with pytest.raises(MissingExtraError, match=r"facecluster\[dlib\]"):
        DlibFeatures().transform(np.zeros((1, 150, 150, 3), np.uint8), np.zeros((1, 18)))


@pytest.mark.skipif(not HAVE_DLIB, reason="dlib extra not installed: pip install 'facecluster[dlib]'")
def test_dlib_descriptors_shape_determinism_and_identity(faces):
    extractor = make_extractor(FeaturesConfig(extractor="dlib"))
    out = extractor.transform(faces, np.zeros((3, 18)))
    assert out.shape == (3, 128) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(extractor.transform(faces, np.zeros((3, 18))), out)
    assert not np.allclose(out[0], out[1])
    description = extractor.describe()
    assert description["model"] == "dlib_face_recognition_resnet_model_v1.dat" and len(description["model_sha256"]) == 2
    # the same face with light noise stays closer to itself than to another face
    noisy = np.clip(faces[:1] + np.random.default_rng(0).normal(0, 3, faces[:1].shape), 0, 255).astype(np.uint8)
    again = extractor.transform(noisy, np.zeros((1, 18)))[0]
    assert np.linalg.norm(again - out[0]) < np.linalg.norm(out[1] - out[0])
