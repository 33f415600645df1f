"""Reduced-precision FaceNet: int8 stays close to fp32, is built once and cached, and bf16 is refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

from facecluster.errors import ConfigError
from facecluster.features import make_extractor
from facecluster.features import facenet_quant
from facecluster.features.facenet_model import FaceNetEmbedder
from facecluster.features.facenet_quant import PrecisionError, load_calibration
from facecluster.resolve import build_config

from .test_facenet_model import cosine, synthetic_face


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.stack([synthetic_face(seed) for seed in range(8)])


@pytest.fixture(scope="module")
def embedders(tmp_path_factory):
    """fp32 and int8 embedders on the session's shared model cache (conversion and quantisation happen once)."""
    root = tmp_path_factory.getbasetemp() / "facecluster-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACECLUSTER_CACHE_DIR", str(root))
        yield {p: FaceNetEmbedder(backend="onnx", threads=2, precision=p) for p in ("fp32", "int8")}


def test_int8_embeddings_stay_close_to_fp32(embedders, faces):
    reference, reduced = embedders["fp32"].embed(faces), embedders["int8"].embed(faces)
    similarity = cosine(reference, reduced)
    assert similarity.min() > 0.97  # loose: synthetic cartoons, not the faces it was calibrated on
    assert np.allclose(np.linalg.norm(reduced, axis=1), 1.0, atol=1e-4)
    # it is a different model, not fp32 under another name
    assert embedders["int8"].model_sha256 != embedders["fp32"].model_sha256
    assert not np.array_equal(reference, reduced)


def test_int8_keeps_faces_apart_like_fp32(embedders, faces):
    """Which synthetic face is most like which stays mostly the same."""
    def nearest(vectors):
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        return similarity.argmax(1)

    agree = nearest(embedders["fp32"].embed(faces)) == nearest(embedders["int8"].embed(faces))
    assert agree.mean() >= 0.75


def test_int8_model_is_built_once_with_its_checksum(embedders, monkeypatch):
    model = embedders["int8"]
    checksum = model.model_path.with_name(model.model_path.name + ".sha256")
    assert checksum.read_text().split()[0] == model.model_sha256
    monkeypatch.setattr(facenet_quant, "quantize_int8", lambda *a, **k: pytest.fail("quantised again"))
    again = FaceNetEmbedder(backend="onnx", threads=1, precision="int8")
    assert again.model_sha256 == model.model_sha256
    assert again.identity["precision"] == "int8"


def test_calibration_ships_ranges_for_the_quantised_layers():
    table = load_calibration()
    assert len(table["ranges"]) > 100
    assert all(low <= high for low, high in table["ranges"].values())


def test_precision_is_part_of_the_cache_identity_and_study_stays_fp32():
    study = build_config("study")
    assert study.features.precision == "fp32"
    fp32 = make_extractor(study.features).cache_identity()
    int8 = make_extractor(build_config("study", {"features": {"precision": "int8"}}).features).cache_identity()
    assert fp32 != int8 and int8["precision"] == "int8"


def test_bf16_and_unknown_precisions_are_clear_errors():
    with pytest.raises(PrecisionError, match="int8"):
        FaceNetEmbedder(backend="onnx", precision="bf16")
    with pytest.raises(ConfigError, match="bf16"):
        make_extractor(build_config("study", {"features": {"precision": "bf16"}}).features)
    with pytest.raises(ConfigError, match="precision"):
        build_config("study", {"features": {"precision": "fp8"}})
    with pytest.raises(ValueError, match="backend='onnx'"):
        FaceNetEmbedder(backend="opencv", precision="int8")


def test_command_line_options_set_detector_and_precision_or_name_the_option():
    from facecluster.cli import with_options

    settings = with_options(build_config("study"), detector="yunet", precision="int8")
    assert (settings.faces.detector, settings.features.precision) == ("yunet", "int8")
    with pytest.raises(ConfigError, match="--precision 'fp16'"):
        with_options(build_config("study"), precision="fp16")
    with pytest.raises(ConfigError, match="--detector 'dlib'"):
        with_options(build_config("study"), detector="dlib")
