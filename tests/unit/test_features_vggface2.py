"""facenet-vggface2: user-supplied weights files, read safely, mapped onto the shipped architecture.

The real 20180402-114759 files cannot be downloaded here, so the tests write weights files in
the real formats (facenet-pytorch state dict: zip and legacy PyTorch pickles; keras-facenet
HDF5) holding the *shipped* checkpoint's weights, with the batch norms un-folded by random
scales. Loading them must give back exactly the shipped model's embeddings.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from facecluster.config import FeaturesConfig
from facecluster.errors import ConfigError
from facecluster.features import make_extractor
from facecluster.features.facenet_model import FaceNetEmbedder, shipped_graph_path
from facecluster.features.tf_graph import read_graph_def
from facecluster.features.vggface2 import (
    BN_EPSILON, FILENAMES, SCOPE, VGGFace2Features, VGGFace2WeightsError, checkpoint_weights, graph_layers,
    keras_layer, torch_module)
from facecluster.features.weights_io import (
    LEGACY_MAGIC, WeightsFileError, read_keras_h5, read_torch_state_dict, read_weights)

# --- writers of the real file formats, without torch or keras --------------------------------------------


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _state_dict_pickle(state: dict[str, np.ndarray], legacy: bool) -> bytes:
    """The pickle ``torch.save(state_dict)`` writes: an OrderedDict of ``_rebuild_tensor_v2`` calls."""
    storage_types = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}
    body = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    for key, (name, array) in enumerate(state.items()):
        pid = [_str("storage"), _global("torch", storage_types[array.dtype]), _str(str(key)), _str("cpu"),
               _int(array.size)] + ([b"N"] if legacy else [])
        strides = [s // array.itemsize for s in array.strides]
        args = [_tuple(pid) + b"Q", _int(0), _tuple(_int(d) for d in array.shape), _tuple(_int(s) for s in strides),
                b"\x89", _global("collections", "OrderedDict") + b")R"]
        body += _str(name) + _global("torch._utils", "_rebuild_tensor_v2") + _tuple(args) + b"R"
    return body + b"u."


def write_torch_zip(path: Path, state: dict[str, np.ndarray]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _state_dict_pickle(state, legacy=False))
        archive.writestr("archive/version", "3\n")
        for key, array in enumerate(state.values()):
            archive.writestr(f"archive/data/{key}", np.ascontiguousarray(array).tobytes())
    return path


def write_torch_legacy(path: Path, state: dict[str, np.ndarray]) -> Path:
    out = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(_state_dict_pickle(state, legacy=True))
    pickle.dump([str(k) for k in range(len(state))], out, protocol=2)
    for array in state.values():
        out.write(struct.pack("<q", array.size) + np.ascontiguousarray(array).tobytes())
    path.write_bytes(out.getvalue())
    return path


def write_keras_h5(path: Path, weights: dict[str, np.ndarray]) -> Path:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as handle:
        for name, array in weights.items():
            layer, weight = name.split("/")
            handle.create_dataset(f"{layer}/{layer}/{weight}:0", data=array)
    return path


# --- the shipped weights, batch norms un-folded ---------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    nodes = read_graph_def(shipped_graph_path())
    consts = {n.name[len(SCOPE):]: n.attrs["value"] for n in nodes if n.op == "Const" and n.name.startswith(SCOPE)}
    return graph_layers(nodes), consts


@pytest.fixture(scope="module")
def unfolded(shipped):
    """TensorFlow-named weights whose folding gives back the shipped graph's constants."""
    layers, consts = shipped
    rng = np.random.default_rng(0)
    out = {}
    for scope, kind in layers.items():
        if kind == "bias":
            out[f"{scope}/weights"], out[f"{scope}/biases"] = consts[f"{scope}/weights"], consts[f"{scope}/biases"]
        elif kind == "dense":
            out[f"{scope}/weights"] = consts[f"{scope}/weights"]
            for name in ("beta", "moving_mean", "moving_variance"):
                out[f"{scope}/BatchNorm/{name}"] = consts[f"{scope}/BatchNorm/{name}"]
        else:
            offset = consts[f"{scope}/Conv2D_bn_offset"]
            s = rng.uniform(0.5, 2.0, offset.shape).astype(np.float32)
            mean = rng.normal(0, 1, offset.shape).astype(np.float32)
            out[f"{scope}/weights"] = consts[f"{scope}/weights"] * s
            out[f"{scope}/BatchNorm/beta"] = offset + mean / s
            out[f"{scope}/BatchNorm/moving_mean"] = mean
            out[f"{scope}/BatchNorm/moving_variance"] = s * s - BN_EPSILON
    return out


def as_torch(layers, weights) -> dict[str, np.ndarray]:
    state = {}
    for scope, kind in layers.items():
        if kind == "dense":
            state["last_linear.weight"] = np.ascontiguousarray(weights[f"{scope}/weights"].T)
            prefix = "last_bn"
        else:
            module = torch_module(scope, layers)
            conv = np.ascontiguousarray(weights[f"{scope}/weights"].transpose(3, 2, 0, 1))
            if kind == "bias":
                state[f"{module}.weight"], state[f"{module}.bias"] = conv, weights[f"{scope}/biases"]
                continue
            state[f"{module}.conv.weight"] = conv
            prefix = f"{module}.bn"
        state[f"{prefix}.weight"] = np.ones_like(weights[f"{scope}/BatchNorm/beta"])
        state[f"{prefix}.bias"] = weights[f"{scope}/BatchNorm/beta"]
        state[f"{prefix}.running_mean"] = weights[f"{scope}/BatchNorm/moving_mean"]
        state[f"{prefix}.running_var"] = weights[f"{scope}/BatchNorm/moving_variance"]
        state[f"{prefix}.num_batches_tracked"] = np.array(0, dtype=np.int64)
    state["logits.weight"] = np.zeros((3, 512), np.float32)  # the classifier head is ignored
    return state


def as_keras(layers, weights) -> dict[str, np.ndarray]:
    out = {}
    for scope, kind in layers.items():
        layer = keras_layer(scope)
        out[f"{layer}/kernel"] = weights[f"{scope}/weights"]
        if kind == "bias":
            out[f"{layer}/bias"] = weights[f"{scope}/biases"]
        else:
            for name in ("beta", "moving_mean", "moving_variance"):
                out[f"{layer}_BatchNorm/{name}"] = weights[f"{scope}/BatchNorm/{name}"]
    return out


def faces(n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (n, 20, 20, 3)).astype(np.uint8)
    return np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)  # 160×160, blocky but not noise


# --- tests -------------------------------------------------------------------------------------------


def test_name_mappings_match_the_known_layer_names(shipped):
    layers, _ = shipped
    assert len(layers) == 132 + 1  # 132 convolutions + the bottleneck
    assert keras_layer("Repeat/block35_1/Branch_2/Conv2d_0c_3x3") == "Block35_1_Branch_2_Conv2d_0c_3x3"
    assert keras_layer("Repeat_2/block8_5/Conv2d_1x1") == "Block8_5_Conv2d_1x1"
    assert keras_layer("Block8/Branch_1/Conv2d_0b_1x3") == "Block8_6_Branch_1_Conv2d_0b_1x3"
    assert keras_layer("Mixed_6a/Branch_1/Conv2d_1a_3x3") == "Mixed_6a_Branch_1_Conv2d_1a_3x3"
    assert torch_module("Conv2d_4b_3x3", layers) == "conv2d_4b"
    assert torch_module("Repeat/block35_3/Branch_0/Conv2d_1x1", layers) == "repeat_1.2.branch0"
    assert torch_module("Repeat_1/block17_10/Branch_1/Conv2d_0c_7x1", layers) == "repeat_2.9.branch1.2"
    assert torch_module("Repeat_2/block8_1/Conv2d_1x1", layers) == "repeat_3.0.conv2d"
    assert torch_module("Mixed_6a/Branch_1/Conv2d_1a_3x3", layers) == "mixed_6a.branch1.2"
    assert torch_module("Mixed_7a/Branch_0/Conv2d_1a_3x3", layers) == "mixed_7a.branch0.1"
    assert torch_module("Mixed_6a/Branch_0/Conv2d_1a_3x3", layers) == "mixed_6a.branch0"
    assert torch_module("Block8/Branch_1/Conv2d_0a_1x1", layers) == "block8.branch1.0"


def test_torch_zip_weights_give_back_the_shipped_embeddings(shipped, unfolded, tmp_path):
    layers, _ = shipped
    path = write_torch_zip(tmp_path / FILENAMES[0], as_torch(layers, unfolded))
    extractor = VGGFace2Features(weights=str(path), divisor=128.0)  # 128: the shipped model's standardisation
    crops = faces()
    ours = extractor.transform(crops, np.zeros((len(crops), 18)))
    reference = FaceNetEmbedder(backend="onnx", threads=2).embed(crops)
    assert ours.shape == (3, 512) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=2e-4)
    np.testing.assert_array_equal(extractor.transform(crops, np.zeros((3, 18))), ours)  # deterministic
    assert extractor.describe()["weights_sha256"] == extractor.cache_identity()["weights_sha256"]


@pytest.mark.parametrize("fmt", ["torch-legacy", "keras"])
def test_other_formats_map_to_the_same_weights(shipped, unfolded, tmp_path, fmt):
    layers, _ = shipped
    torch_state = as_torch(layers, unfolded)
    expected = checkpoint_weights("torch", torch_state, layers, "reference")
    if fmt == "keras":
        raw = read_keras_h5(write_keras_h5(tmp_path / "w.h5", as_keras(layers, unfolded)))
        got = checkpoint_weights("keras", raw, layers, "w.h5")
    else:
        raw = read_torch_state_dict(write_torch_legacy(tmp_path / "w.pt", torch_state))
        assert raw.keys() == torch_state.keys()
        got = checkpoint_weights("torch", raw, layers, "w.pt")
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_missing_weights_file_says_where_to_put_it(tmp_path):
    with pytest.raises(ConfigError, match="cannot be downloaded here") as caught:
        make_extractor(FeaturesConfig(extractor="facenet-vggface2"))
    message = str(caught.value)
    assert "\n" not in message and FILENAMES[0] in message and "features.weights" in message
    assert str(tmp_path.parent) in message or "models" in message
    with pytest.raises(VGGFace2WeightsError, match="no such file"):
        VGGFace2Features(weights=str(tmp_path / "nowhere.pt"))


def test_weights_file_in_the_cache_folder_is_found(isolated_cache, tmp_path, shipped, unfolded):
    target = isolated_cache / "models" / FILENAMES[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    write_torch_zip(target, {"x": np.zeros(2, np.float32)})
    try:
        assert VGGFace2Features().weights_path == target
    finally:
        target.unlink()


def test_a_pickle_calling_anything_else_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    payload = b"\x80\x02" + _global("os", "system") + _tuple([_str("echo hacked")]) + b"R."
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    with pytest.raises(WeightsFileError, match="os.system"):
        read_torch_state_dict(evil)


def test_wrong_architecture_is_refused_with_the_missing_names(tmp_path, shipped):
    path = write_torch_zip(tmp_path / "other.pt", {"fc.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(VGGFace2WeightsError, match="missing .*conv2d_1a.conv.weight"):
        VGGFace2Features(weights=str(path)).transform(faces(1), np.zeros((1, 18)))


def test_garbage_and_malformed_files_give_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02garbage")
    with pytest.raises(WeightsFileError, match="junk.pt: not a readable PyTorch file"):
        read_torch_state_dict(junk)
    reversed_rows = np.arange(6, dtype=np.float32)[::-1]  # negative stride: would read before the buffer
    with pytest.raises(WeightsFileError, match="malformed"):
        read_torch_state_dict(write_torch_zip(tmp_path / "bad.pt", {"w": reversed_rows}))
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(WeightsFileError, match="neither a PyTorch .pt nor a Keras .h5"):
        read_weights(text)
