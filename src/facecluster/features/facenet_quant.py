"""Reduced-precision FaceNet: an int8 model made by ONNX Runtime's static quantisation.

The recipe, measured on the dev faces (see ``benchmarks/fidelity.py``):

- weights int8 per output channel (symmetric), activations uint8 with ranges calibrated on
  real face crops (a percentile of each tensor's values, not its extremes, so one
  outlier does not waste the 256 levels);
- convolutions, their ReLUs and max-pooling run in int8 (a convolution then writes straight
  into the next one's uint8 input: one rounding, not two); concatenations and the residual
  additions stay fp32; the first convolution (it reads the raw image), the bottleneck
  projection, its batch norm and the L2 normalisation stay fp32, as do any layers listed as
  sensitive in the calibration file.

The calibration (tensor ranges and the list of layers kept in fp32) is computed once by
`calibrate` from crops that facecluster itself cut from the dev images, and ships with
the package as ``data/facenet-int8-calibration.json``, so every machine builds the same
int8 model without the images. The int8 model is written once into the model cache next
to the fp32 one, with its SHA-256 beside it.

bf16 is not offered: ONNX Runtime's CPU provider has no bf16 convolution or matrix
multiply (``Conv``/``MatMul`` with bf16 inputs are rejected when the session is built),
even on CPUs with AVX-512 BF16.
"""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from facecluster.errors import ConfigError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
CALIBRATION_FILE = Path(__file__).with_name("data") / "facenet-int8-calibration.json"
#: Bump when the recipe below changes, so stale cached int8 models are not reused.
QUANTIZER_VERSION = 2
#: Node name prefixes that always stay in fp32: the projection to 512-d and the L2 norm.
FP32_TAIL = ("InceptionResnetV1/Bottleneck", "embeddings")


class PrecisionError(ConfigError):
    """A precision this installation cannot run; the message says what to use instead."""


def check_precision(precision: str) -> None:
    """Refuse unknown precisions and bf16 with a message that names the alternative.

    Raises
    ------
    PrecisionError
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision {precision!r} is unknown; choose one of {PRECISIONS}")
    if precision == "bf16":
        raise PrecisionError("precision 'bf16' is not available: ONNX Runtime's CPU provider has no bf16 "
                             "convolution kernels; use 'int8' (faster, fidelity measured) or 'fp32'")


def fp32_nodes(model, extra: list[str] = ()) -> list[str]:
    """Names of the nodes kept in fp32: the first convolution, the tail, and those starting with ``extra``."""
    first_conv = next(node.name for node in model.graph.node if node.op_type == "Conv")
    prefixes = (*FP32_TAIL, *extra)
    return [first_conv, *(node.name for node in model.graph.node if node.name.startswith(prefixes))]


#: Operators run in int8. Quantising ReLU lets each convolution write its output straight into the
#: next one's uint8 range (one rounding instead of two); MaxPool commutes with the quantisation.
#: Concat and Add stay fp32: quantising them added error for little speed.
QUANTIZED_OPS = ("Conv", "Relu", "MaxPool")
_CALIBRATED_OPS = ("Conv", "Relu", "MaxPool", "Concat", "AveragePool", "Add", "Mul", "MatMul")


def _calibrated_tensors(model) -> list[str]:
    """Every tensor the quantiser may ask a range for: inputs and outputs of the ops it handles."""
    names = set()
    for node in model.graph.node:
        if node.op_type in _CALIBRATED_OPS:
            names.update(node.output)
            if node.op_type in ("Conv", "MatMul"):
                names.add(node.input[0])
    return sorted(names)


def calibrate(fp32_path: Path, crops: np.ndarray, percentile: float = 99.999, batch_size: int = 16,
              bins: int = 2048) -> dict:
    """Activation ranges for the int8 model, measured on real face crops.

    Each tensor's range runs from its smallest value (or 0) to the ``percentile`` of its
    values over all crops, read from a histogram: one rare outlier must not stretch the 256
    levels over values that never occur.

    Parameters
    ----------
    fp32_path : Path
        The fp32 ONNX model (`facenet_model.ensure_onnx_model`).
    crops : numpy.ndarray
        uint8 RGB face crops, ``[N, 160, 160, 3]``, as facecluster cuts them.

    Returns
    -------
    dict
        ``{"ranges": {tensor: [low, high]}, ...}``, the content of the calibration file.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(fp32_path))
    tensors = _calibrated_tensors(model)
    known = {output.name for output in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in tensors if name not in known)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def batches():
        for start in range(0, len(crops), batch_size):
            batch = crops[start:start + batch_size].astype(np.float32)
            yield session.run(tensors, {"input": (batch - 127.5) / 128.0})

    low = {name: 0.0 for name in tensors}
    high = {name: 0.0 for name in tensors}
    for values in batches():  # first pass: the extremes, which fix the histograms' bins
        for name, value in zip(tensors, values):
            low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
    counts = {name: np.zeros(bins) for name in tensors}
    for values in batches():
        for name, value in zip(tensors, values):
            counts[name] += np.histogram(value, bins=bins, range=(low[name], max(high[name], low[name] + 1e-6)))[0]
    ranges = {}
    for name in tensors:
        cumulative = np.cumsum(counts[name]) / max(counts[name].sum(), 1)
        edges = np.linspace(low[name], max(high[name], low[name] + 1e-6), bins + 1)
        top = float(edges[min(bins, int(np.searchsorted(cumulative, percentile / 100)) + 1)])
        ranges[name] = [low[name], max(top, low[name] + 1e-6)]
    return {"method": f"histogram: min (or 0) to percentile {percentile}", "images": int(len(crops)),
            "ranges": ranges}


def _tensors_data(table: dict):
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        TensorData,
        TensorsData,
    )

    return TensorsData(CalibrationMethod.MinMax, {
        name: TensorData(lowest=np.array(low, dtype=np.float32), highest=np.array(high, dtype=np.float32))
        for name, (low, high) in table["ranges"].items()})


def quantize_int8(fp32_path: Path, out_path: Path, table: dict) -> None:
    """Write the int8 model for ``fp32_path`` to ``out_path``, with the ranges in ``table``.

    Raises
    ------
    PrecisionError
        If the installed onnxruntime is too old to take precomputed ranges.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise PrecisionError("precision 'int8' needs onnxruntime>=1.32: pip install -U onnxruntime")
    model = onnx.load(str(fp32_path))  # given as a model, not a path: nothing is written beside the cached file
    excluded = fp32_nodes(model, table.get("fp32_nodes", []))
    with tempfile.TemporaryDirectory(prefix="facecluster-quantize-") as folder:
        cache = Path(folder) / "ranges.json"
        save_tensors_data(_tensors_data(table), cache)
        quantize_static(
            model, str(out_path), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            calibration_cache_path=str(cache),
        )


def load_calibration(path: Path = CALIBRATION_FILE) -> dict:
    """The shipped calibration table (see `calibrate`)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PrecisionError(f"{path} is missing; reinstall facecluster or run benchmarks/calibrate.py") from None


def ensure_int8_model(fp32_path: Path, fp32_sha256: str, calibration: Path = CALIBRATION_FILE) -> tuple[Path, str]:
    """The int8 model next to the fp32 one, quantised once and reused while its checksum holds.

    Returns
    -------
    path : Path
    sha256 : str
    """
    from facecluster.features.facenet_model import cached_model_file

    table = load_calibration(calibration)
    path = fp32_path.with_name(f"{fp32_path.stem}-int8-q{QUANTIZER_VERSION}-{table_digest(table)}.onnx")

    def quantize(tmp: Path) -> None:
        if table.get("fp32_model_sha256") not in (None, fp32_sha256):
            logger.warning("the int8 calibration was measured on another fp32 model (%s); using it anyway",
                           table["fp32_model_sha256"][:12])
        quantize_int8(fp32_path, tmp, table)

    return cached_model_file(path, quantize, "int8 FaceNet model")


def table_digest(table: dict) -> str:
    """A short hash of a calibration table (it names the int8 model file)."""
    import hashlib

    text = json.dumps(table, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
