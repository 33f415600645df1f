"""FaceNet: TF->ONNX conversion, the cached model, and the two backends agreeing."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from facecluster.errors import ModelFileError
from facecluster.features import facenet_model, tf2onnx
from facecluster.features.facenet_model import (
    SHIPPED_GRAPH_SHA256,
    FaceNetEmbedder,
    ensure_onnx_model,
    file_sha256,
    shipped_graph_path,
    verify_shipped_graph,
)
from facecluster.features.tf2onnx import ConversionError, convert_frozen_graph
from facecluster.features.tf_graph import GraphDefError, parse_graph_def

FACES_DEV = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "faces-dev"


def synthetic_face(seed: int) -> np.ndarray:
    """A 160x160 RGB cartoon face: skin ellipse, eyes, brows, nose, mouth, noise."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, 160)[:, None, None]
    img = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (160, 160, 3)).astype(np.uint8).copy()
    skin = tuple(int(v) for v in rng.integers([150, 100, 70], [255, 200, 170]))
    cx, cy = 80 + int(rng.integers(-6, 7)), 84 + int(rng.integers(-6, 7))
    cv2.ellipse(img, (cx, cy), (int(rng.integers(44, 56)), int(rng.integers(58, 70))), 0, 0, 360, skin, -1)
    for side in (-1, 1):
        eye = (cx + side * 22, cy - 14)
        cv2.ellipse(img, eye, (10, 5), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(img, eye, 4, tuple(int(v) for v in rng.integers(0, 120, 3)), -1)
        cv2.line(img, (eye[0] - 12, eye[1] - 12), (eye[0] + 12, eye[1] - 14), (60, 40, 30), 3)
    cv2.line(img, (cx, cy - 8), (cx - 4, cy + 14), (120, 80, 60), 2)
    cv2.ellipse(img, (cx, cy + 32), (18, 7), 0, 0, 180, (150, 50, 60), -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """Module-scoped fixtures also stay off the user's cache: same folder as conftest's ``isolated_cache``."""
    root = tmp_path_factory.getbasetemp() / "facecluster-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACECLUSTER_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.stack([synthetic_face(seed) for seed in range(5)])


@pytest.fixture(scope="module")
def onnx_embedder(cache_dir) -> FaceNetEmbedder:
    return FaceNetEmbedder(backend="onnx", threads=2)


@pytest.fixture(scope="module")
def opencv_embedder() -> FaceNetEmbedder:
    return FaceNetEmbedder(backend="opencv")


@pytest.fixture
def conversions(monkeypatch) -> list:
    """Count calls to the converter made by ensure_onnx_model."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return convert_frozen_graph(*args, **kwargs)

    monkeypatch.setattr(tf2onnx, "convert_frozen_graph", counting)  # imported by facenet_model when it converts
    return calls


def test_onnx_matches_opencv_on_original_graph(onnx_embedder, opencv_embedder, faces):
    ours, reference = onnx_embedder.embed(faces), opencv_embedder.embed(faces)
    assert ours.shape == reference.shape == (len(faces), 512)
    assert ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-4
    assert cosine(ours, reference).min() > 0.9999


def test_different_faces_give_different_embeddings(onnx_embedder, faces):
    embeddings = onnx_embedder.embed(faces)
    off_diagonal = (embeddings @ embeddings.T)[~np.eye(len(faces), dtype=bool)]
    assert off_diagonal.max() < 0.999


def test_batch_size_does_not_change_rows(cache_dir):
    crops = np.stack([synthetic_face(100 + seed) for seed in range(35)])
    rows = {size: FaceNetEmbedder(backend="onnx", threads=2, batch_size=size).embed(crops) for size in (1, 3, 32)}
    np.testing.assert_allclose(rows[1], rows[3], rtol=0, atol=1e-6)
    np.testing.assert_allclose(rows[1], rows[32], rtol=0, atol=1e-6)


def test_embeddings_are_unit_norm(onnx_embedder, opencv_embedder, faces):
    for embedder in (onnx_embedder, opencv_embedder):
        np.testing.assert_allclose(np.linalg.norm(embedder.embed(faces), axis=1), 1.0, atol=1e-5)


def test_bottleneck_has_1792_dims(cache_dir, faces):
    embedder = FaceNetEmbedder(backend="onnx", threads=2, output="bottleneck", batch_size=2)
    features = embedder.embed(faces)
    assert features.shape == (len(faces), 1792)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    assert embedder.identity["output"] == "bottleneck"
    assert not np.allclose(np.linalg.norm(features, axis=1), 1.0)  # raw pooled features, not normalised


def test_empty_input_gives_empty_output(onnx_embedder):
    assert onnx_embedder.embed(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 512)


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 160, 160, 3), np.float32), np.zeros((160, 160, 3), np.uint8), np.zeros((1, 96, 96, 3), np.uint8)]
)
def test_embed_rejects_wrong_input_with_expected_shape(onnx_embedder, bad):
    with pytest.raises(ValueError, match=r"uint8 RGB of shape \[N, 160, 160, 3\]"):
        onnx_embedder.embed(bad)


def test_identity_names_checkpoint_and_the_file_run(onnx_embedder, opencv_embedder):
    identity = onnx_embedder.identity
    assert identity["checkpoint"] == "20180408-102900"
    assert identity["training_data"] == "CASIA-WebFace"
    assert identity["backend"] == "onnx" and identity["output"] == "embeddings"
    assert identity["graph_sha256"] == SHIPPED_GRAPH_SHA256
    assert identity["model_sha256"] == file_sha256(onnx_embedder.model_path)
    assert opencv_embedder.identity["backend"] == "opencv"
    assert opencv_embedder.identity["model_sha256"] == SHIPPED_GRAPH_SHA256


def test_shipped_graph_matches_pinned_checksum():
    path = shipped_graph_path()
    assert path.name == "graph_final.pb"
    assert verify_shipped_graph(path) == path


def test_graph_checksum_mismatch_names_the_file(monkeypatch):
    monkeypatch.setattr(facenet_model, "SHIPPED_GRAPH_SHA256", "0" * 64)
    with pytest.raises(ModelFileError, match="graph_final.pb.*does not match"):
        verify_shipped_graph()


def test_cached_model_is_reused(onnx_embedder, conversions):
    path, digest = ensure_onnx_model()
    mtime = path.stat().st_mtime_ns
    again_path, again_digest = ensure_onnx_model()
    assert conversions == []
    assert (again_path, again_digest) == (path, digest) == (onnx_embedder.model_path, onnx_embedder.model_sha256)
    assert path.stat().st_mtime_ns == mtime
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == digest


def test_corrupted_cached_model_is_reconverted(tmp_path, monkeypatch, conversions, caplog):
    monkeypatch.setenv("FACECLUSTER_CACHE_DIR", str(tmp_path))
    path, digest = ensure_onnx_model(("embeddings",))
    assert path.parent == tmp_path / "models" and len(conversions) == 1
    with open(path, "r+b") as fh:  # flip some bytes in the middle of the weights
        fh.seek(path.stat().st_size // 2)
        chunk = fh.read(16)
        fh.seek(-16, 1)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    assert file_sha256(path) != digest
    with caplog.at_level(logging.WARNING, logger="facecluster.features.facenet_model"):
        again_path, again_digest = ensure_onnx_model(("embeddings",))
    assert len(conversions) == 2
    assert "does not match its checksum" in caplog.text
    assert again_path == path and again_digest == digest == file_sha256(path)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_truncated_graph_raises_conversion_error(tmp_path):
    truncated = tmp_path / "truncated.pb"
    truncated.write_bytes(shipped_graph_path().read_bytes()[:100_000])
    with pytest.raises(ConversionError, match="truncated.pb"):
        convert_frozen_graph(truncated, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_garbage_and_missing_files_raise_conversion_error(tmp_path):
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"this is not a protobuf at all \xff\xff\xff\xff")
    with pytest.raises(ConversionError, match="garbage.pb"):
        convert_frozen_graph(garbage, tmp_path / "out.onnx")
    with pytest.raises(ConversionError, match="not found"):
        convert_frozen_graph(tmp_path / "missing.pb", tmp_path / "out.onnx")


# --- a tiny GraphDef written by hand, to test the reader and the op check ---------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _node(name: str, op: str, inputs=(), attrs: dict[str, bytes] | None = None) -> bytes:
    body = _field(1, name.encode()) + _field(2, op.encode())
    body += b"".join(_field(3, ref.encode()) for ref in inputs)
    for key, value in (attrs or {}).items():
        body += _field(5, _field(1, key.encode()) + _field(2, value))
    return _field(1, body)


def _tiny_graph(op: str) -> bytes:
    dims = b"".join(_field(2, _varint(1 << 3) + _varint(d)) for d in (1, 4, 4, 3))
    shape_attr = _field(7, dims)
    dtype_attr = _varint(6 << 3) + _varint(1)  # DT_FLOAT
    tensor = _varint(1 << 3) + _varint(1) + _field(2, _field(2, _varint(1 << 3) + _varint(3)))
    tensor += _field(5, struct.pack("<3f", 1.0, 2.0, 3.0))
    return (
        _node("input", "Placeholder", attrs={"dtype": dtype_attr, "shape": shape_attr})
        + _node("bias", "Const", attrs={"value": _field(8, tensor), "dtype": dtype_attr})
        + _node("added", "BiasAdd", ["input:0", "bias"])
        + _node("out", op, ["added", "^bias"])
    )


def test_reader_decodes_names_inputs_shapes_and_tensors():
    nodes = {node.name: node for node in parse_graph_def(_tiny_graph("Relu"))}
    assert nodes["input"].op == "Placeholder"
    assert nodes["input"].attrs["shape"] == [1, 4, 4, 3]
    assert nodes["input"].attrs["dtype"] == np.float32
    np.testing.assert_array_equal(nodes["bias"].attrs["value"], np.array([1, 2, 3], np.float32))
    assert nodes["out"].inputs == ["added", "^bias"]


def test_reader_rejects_truncated_bytes():
    with pytest.raises(GraphDefError):
        parse_graph_def(_tiny_graph("Relu")[:-3])


def test_tiny_graph_converts_and_runs(tmp_path):
    import onnxruntime as ort

    path = convert_frozen_graph_tiny(tmp_path, "Relu")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 3)).astype(np.float32)
    (out,) = session.run(None, {"input": x})
    np.testing.assert_allclose(out, np.maximum(x + [1, 2, 3], 0), atol=1e-6)


def convert_frozen_graph_tiny(tmp_path: Path, op: str) -> Path:
    pb = tmp_path / f"tiny_{op}.pb"
    pb.write_bytes(_tiny_graph(op))
    return convert_frozen_graph(pb, tmp_path / "tiny.onnx", outputs=("out",), input_size=4)


def test_unsupported_op_is_named(tmp_path):
    with pytest.raises(ConversionError, match="unsupported TensorFlow op type.*Softmax"):
        convert_frozen_graph_tiny(tmp_path, "Softmax")


def test_unknown_output_is_named(tmp_path):
    with pytest.raises(ConversionError, match="logits"):
        convert_frozen_graph(shipped_graph_path(), tmp_path / "out.onnx", outputs=("logits",))


# --- backend choice --------------------------------------------------------------------


def test_auto_falls_back_to_opencv_with_a_warning(monkeypatch, caplog):
    def failing(outputs=()):
        raise ConversionError("simulated failure")

    monkeypatch.setattr(facenet_model, "ensure_onnx_model", failing)
    with caplog.at_level(logging.WARNING, logger="facecluster.features.facenet_model"):
        embedder = FaceNetEmbedder(backend="auto")
    assert embedder.identity["backend"] == "opencv"
    assert "simulated failure" in caplog.text and "falling back to OpenCV" in caplog.text


def test_opencv_backend_refuses_bottleneck():
    with pytest.raises(ValueError, match="needs backend='onnx'"):
        FaceNetEmbedder(backend="opencv", output="bottleneck")


@pytest.mark.integration
def test_real_faces_agree_between_backends(onnx_embedder, opencv_embedder):
    if not FACES_DEV.is_dir():
        pytest.skip(f"real faces not available: {FACES_DEV} does not exist")
    files = sorted(FACES_DEV.rglob("*.jpg"))[:1] + sorted(FACES_DEV.rglob("*.png"))[:1] + sorted(FACES_DEV.rglob("*.jpg"))[-2:]
    if not files:
        pytest.skip(f"no .jpg or .png images under {FACES_DEV}")
    crops = []
    for file in files:
        image = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        side = int(min(h, w) * 0.8)
        top, left = (h - side) // 2, (w - side) // 2
        crops.append(cv2.resize(image[top : top + side, left : left + side], (160, 160), interpolation=cv2.INTER_AREA))
    crops = np.stack(crops)
    ours, reference = onnx_embedder.embed(crops), opencv_embedder.embed(crops)
    assert np.abs(ours - reference).max() < 1e-4
    assert cosine(ours, reference).min() > 0.9999


def test_prewhiten_standardizes_each_image_and_fixed_is_affine():
    from facecluster.features.facenet_model import standardize

    faces = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    white = standardize(faces, "prewhiten")
    assert white.dtype == np.float32
    np.testing.assert_allclose(white.reshape(3, -1).mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(white.reshape(3, -1).std(axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(standardize(faces, "fixed"), (faces.astype(np.float32) - 127.5) / 128)
    with pytest.raises(ValueError, match="standardization"):
        standardize(faces, "nope")
