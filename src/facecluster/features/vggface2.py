"""FaceNet with the study's own checkpoint, 20180402-114759 (VGGFace2), from a weights file the user supplies.

No package reachable offline ships these weights, and facecluster never downloads weights
at run time. Given facenet-pytorch's ``20180402-114759-vggface2.pt`` or keras-facenet's
``20180402-114759-weights.h5`` (or ``20180402-114759.h5``), the family rebuilds the same
Inception-ResNet-v1 graph as the shipped 20180408-102900 model: the shipped frozen graph
is read, each weight constant is replaced by the user's (mapped by layer name, checked
by shape, batch norms folded as in the frozen graph), and the result is converted to ONNX
once into the model cache, named by the weights file's SHA-256.

The ``.pt`` file is read without PyTorch by a restricted unpickler (see `weights_io`);
the ``.h5`` file with h5py (``pip install 'facecluster[vggface2]'``).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from facecluster.errors import ConfigError
from facecluster.features.base import check_crops
from facecluster.features.facenet_model import (
    CONVERTER_VERSION,
    INPUT_SIZE,
    cached_model_file,
    file_sha256,
    inference_threads,
    model_cache_dir,
    verify_shipped_graph,
)
from facecluster.features.tf_graph import TFNode, read_graph_def
from facecluster.features.weights_io import WeightsFileError, read_weights

CHECKPOINT = "20180402-114759"
TRAINING_DATA = "VGGFace2"
#: File names looked for in the model cache folder when ``features.weights`` is not set.
FILENAMES = ("20180402-114759-vggface2.pt", "20180402-114759-weights.h5", "20180402-114759.h5")
BN_EPSILON = 0.001  # Sandberg's batch_norm_params, keras-facenet and facenet-pytorch alike
BUILD_VERSION = 1  # bump when the mapping or folding changes
SCOPE = "InceptionResnetV1/"


class VGGFace2WeightsError(ConfigError):
    """The 20180402-114759 weights are missing or unusable; the message says where to put them."""


def missing_message() -> str:
    """One line saying where to put the weights file and that it cannot be downloaded here."""
    return (f"facenet-vggface2 needs the study's FaceNet checkpoint {CHECKPOINT} (VGGFace2), which cannot be "
            f"downloaded here: put facenet-pytorch's {FILENAMES[0]} or keras-facenet's {FILENAMES[1]} in "
            f"{model_cache_dir()}/ or set features.weights = \"/path/to/file\" in the config")


def find_weights(weights: str | None) -> Path:
    """The weights file: ``weights`` if given, else the first of `FILENAMES` in the model cache folder.

    Raises
    ------
    VGGFace2WeightsError
        When there is no such file.
    """
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise VGGFace2WeightsError(f"features.weights = {weights!r}: no such file. {missing_message()}")
        return path
    for name in FILENAMES:
        if (model_cache_dir() / name).is_file():
            return model_cache_dir() / name
    raise VGGFace2WeightsError(missing_message())


def graph_layers(nodes: list[TFNode]) -> dict[str, str]:
    """Every weighted layer of the frozen graph (scope without ``InceptionResnetV1/``) → ``"bn"``, ``"bias"`` or ``"dense"``."""
    ordered = [n.name for n in nodes if n.op == "Const"]  # graph order: input to output
    names = set(ordered)
    layers = {}
    for name in ordered:
        if name.startswith(SCOPE) and name.endswith("/weights"):
            scope = name[len(SCOPE): -len("/weights")]
            if scope == "Bottleneck":
                layers[scope] = "dense"
            elif f"{SCOPE}{scope}/Conv2D_bn_offset" in names:
                layers[scope] = "bn"
            elif f"{SCOPE}{scope}/biases" in names:
                layers[scope] = "bias"
    return layers


def keras_layer(scope: str) -> str:
    """keras-facenet's layer name for a TensorFlow scope (its ``get_filename`` renaming)."""
    match = re.fullmatch(r"Repeat(?:_\d)?/block(35|17|8)_(\d+)/(.+)", scope)
    if match:
        scope = f"Block{match[1]}_{match[2]}/{match[3]}"
    elif scope.startswith("Block8/"):
        scope = "Block8_6/" + scope[len("Block8/"):]
    return scope.replace("/", "_")


_TORCH_BLOCKS = {"35": "repeat_1", "17": "repeat_2", "8": "repeat_3"}


def torch_module(scope: str, layers: dict[str, str]) -> str:
    """facenet-pytorch's module path for a TensorFlow scope (e.g. ``repeat_1.0.branch1.1``)."""
    match = re.fullmatch(r"Repeat(?:_\d)?/block(35|17|8)_(\d+)/(.+)", scope)
    if match:
        module, rest = f"{_TORCH_BLOCKS[match[1]]}.{int(match[2]) - 1}", match[3]
        parent = scope[: -len(rest) - 1]
    elif "/" in scope:
        parent, rest = scope.split("/", 1)
        module = "block8" if parent == "Block8" else parent.lower()  # Mixed_6a → mixed_6a
    else:
        return scope[:9].lower()  # Conv2d_1a_3x3 → conv2d_1a
    if rest == "Conv2d_1x1":
        return f"{module}.conv2d"
    branch, conv = rest.split("/", 1)
    siblings = sorted(s.rsplit("/", 1)[1] for s in layers if s.startswith(f"{parent}/{branch}/"))
    index = branch.split("_")[1]
    return f"{module}.branch{index}" if len(siblings) == 1 else f"{module}.branch{index}.{siblings.index(conv)}"


def _conv_from_torch(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)  # OIHW → HWIO


def checkpoint_weights(fmt: str, raw: dict[str, np.ndarray], layers: dict[str, str], source: str) -> dict:
    """The user's weights under TensorFlow names (scope/weights, scope/BatchNorm/beta …), in TensorFlow layout.

    Raises
    ------
    VGGFace2WeightsError
        Listing missing weights.
    """
    wanted: dict[str, tuple[str, callable]] = {}  # TF name → (key in the file, converter)
    same = np.asarray
    for scope, kind in layers.items():
        if fmt == "keras":
            k = keras_layer(scope)
            wanted[f"{scope}/weights"] = (f"{k}/kernel", same)
            bn = {"beta": f"{k}_BatchNorm/beta", "moving_mean": f"{k}_BatchNorm/moving_mean",
                  "moving_variance": f"{k}_BatchNorm/moving_variance", "gamma": f"{k}_BatchNorm/gamma"}
            bias = f"{k}/bias"
        else:
            p = "last_linear" if kind == "dense" else torch_module(scope, layers)
            conv = f"{p}.weight" if kind in ("bias", "dense") else f"{p}.conv.weight"
            wanted[f"{scope}/weights"] = (conv, np.transpose if kind == "dense" else _conv_from_torch)
            b = "last_bn" if kind == "dense" else f"{p}.bn"
            bn = {"beta": f"{b}.bias", "moving_mean": f"{b}.running_mean", "moving_variance": f"{b}.running_var",
                  "gamma": f"{b}.weight"}
            bias = f"{p}.bias"
        if kind == "bias":
            wanted[f"{scope}/biases"] = (bias, same)
        else:
            for name, key in bn.items():
                wanted[f"{scope}/BatchNorm/{name}"] = (key, same)
    missing = [key for name, (key, _) in wanted.items() if key not in raw and not name.endswith("/gamma")]
    if missing:
        raise VGGFace2WeightsError(
            f"{source}: {len(missing)} of the {len(wanted)} Inception-ResNet-v1 weights are missing "
            f"(e.g. {', '.join(missing[:3])}); is it FaceNet {CHECKPOINT} from facenet-pytorch or keras-facenet?")
    out = {name: convert(raw[key]).astype(np.float32) for name, (key, convert) in wanted.items() if key in raw}
    for scope, kind in layers.items():
        if kind != "bias":
            out.setdefault(f"{scope}/BatchNorm/gamma", np.ones_like(out[f"{scope}/BatchNorm/beta"]))
    return out


def fold_into_graph(nodes: list[TFNode], weights: dict[str, np.ndarray], layers: dict[str, str],
                    source: str) -> list[TFNode]:
    """The graph's nodes with every weight constant replaced by the user's, batch norms folded into the convolutions.

    Raises
    ------
    VGGFace2WeightsError
        When a weight's shape differs from the architecture's.
    """
    consts: dict[str, np.ndarray] = {}
    for scope, kind in layers.items():
        w = weights[f"{scope}/weights"]
        if kind == "bias":
            consts[f"{scope}/weights"], consts[f"{scope}/biases"] = w, weights[f"{scope}/biases"]
            continue
        gamma, beta, mean, var = (weights[f"{scope}/BatchNorm/{n}"] for n in ("gamma", "beta", "moving_mean",
                                                                            "moving_variance"))
        if kind == "dense":  # the graph keeps this batch norm as a FusedBatchNorm node
            consts.update({f"{scope}/weights": w, f"{scope}/BatchNorm/Const": gamma, f"{scope}/BatchNorm/beta": beta,
                           f"{scope}/BatchNorm/moving_mean": mean, f"{scope}/BatchNorm/moving_variance": var})
            continue
        scale = gamma / np.sqrt(var.astype(np.float64) + BN_EPSILON)
        consts[f"{scope}/weights"] = w * scale
        consts[f"{scope}/Conv2D_bn_offset"] = beta - mean * scale
    replaced, out = set(), []
    for node in nodes:
        name = node.name[len(SCOPE):] if node.name.startswith(SCOPE) else None
        if node.op == "Const" and name in consts:
            value, expected = consts[name], node.attrs["value"]
            if value.shape != expected.shape:
                raise VGGFace2WeightsError(f"{source}: {name} has shape {value.shape}; Inception-ResNet-v1 "
                                           f"needs {expected.shape}. Is it FaceNet {CHECKPOINT}?")
            node = dataclasses.replace(node, attrs={**node.attrs, "value": value.astype(np.float32)})
            replaced.add(name)
        out.append(node)
    if replaced != set(consts):
        raise VGGFace2WeightsError(f"{source}: weights {sorted(set(consts) - replaced)[:3]} have no place in the graph")
    return out


def build_model(weights_path: Path, weights_sha256: str) -> tuple[Path, str]:
    """The ONNX model with the user's weights: converted once into the model cache, reused while its checksum holds."""
    path = model_cache_dir() / f"facenet-{CHECKPOINT}-{weights_sha256[:12]}-b{BUILD_VERSION}-c{CONVERTER_VERSION}.onnx"

    def convert(tmp: Path) -> None:
        try:
            fmt, raw = read_weights(weights_path)
        except WeightsFileError as error:
            raise VGGFace2WeightsError(str(error)) from None
        nodes = read_graph_def(verify_shipped_graph())
        layers = graph_layers(nodes)
        weights = checkpoint_weights(fmt, raw, layers, str(weights_path))
        nodes = fold_into_graph(nodes, weights, layers, str(weights_path))
        from facecluster.features.tf2onnx import convert_graph_nodes  # onnx: only to convert, once

        convert_graph_nodes(nodes, tmp, outputs=("embeddings", "bottleneck"), input_size=INPUT_SIZE)

    return cached_model_file(path, convert, "FaceNet model with the VGGFace2 weights")


class VGGFace2Features:
    """FaceNet 512-d (L2-normalised) with checkpoint 20180402-114759, the one the study used through keras-facenet.

    Parameters
    ----------
    weights : str or None
        The weights file; None looks for `FILENAMES` in the model cache folder.
    batch_size : int
        Images per ONNX Runtime call.
    divisor : float
        Pixels are standardised as ``(x - 127.5) / divisor``: 127.5 as keras-facenet (the study),
        128 as Sandberg's training and facenet-pytorch.

    Raises
    ------
    VGGFace2WeightsError
        At construction, when the weights file is missing (one line: where to put it).
    """

    name = "facenet-vggface2"
    dim = 512
    version = 1

    def __init__(self, weights: str | None = None, batch_size: int = 32, divisor: float = 127.5):
        self.weights_path = find_weights(weights)
        self.weights_sha256 = file_sha256(self.weights_path)
        self.batch_size = batch_size
        self.divisor = divisor
        self._session = None
        self.model_sha256: str | None = None

    def cache_identity(self) -> dict:
        return {"extractor": self.name, "version": self.version, "checkpoint": CHECKPOINT,
                "weights_sha256": self.weights_sha256, "build_version": BUILD_VERSION,
                "converter_version": CONVERTER_VERSION, "output": "embeddings", "input_size": INPUT_SIZE,
                "standardization": f"(x-127.5)/{self.divisor:g}"}

    def describe(self) -> dict:
        return {**self.cache_identity(), "dim": self.dim, "training_data": TRAINING_DATA,
                "study_checkpoint": CHECKPOINT, "weights_file": str(self.weights_path),
                "model_sha256": self.model_sha256,
                "note": "keras-facenet returned the embedding before L2 normalisation; this one is normalised"}

    def _load(self):
        if self._session is None:
            import onnxruntime as ort

            path, self.model_sha256 = build_model(self.weights_path, self.weights_sha256)
            options = ort.SessionOptions()
            options.intra_op_num_threads = inference_threads()
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return self._session

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray:
        """Embed 160×160 RGB face crops: float32 N×512, unit norm."""
        crops = check_crops(crops, records)
        if crops.shape[1] != INPUT_SIZE:
            raise ValueError(f"facenet-vggface2 needs {INPUT_SIZE}×{INPUT_SIZE} crops (faces.size = {INPUT_SIZE}), "
                             f"got {crops.shape[1]}")
        out = np.empty((len(crops), self.dim), dtype=np.float32)
        if not len(crops):
            return out
        session = self._load()
        for start in range(0, len(crops), self.batch_size):
            batch = (crops[start: start + self.batch_size].astype(np.float32) - 127.5) / self.divisor
            out[start: start + len(batch)] = session.run(["embeddings"], {"input": batch})[0]
        return out
