"""Read frozen TensorFlow ``GraphDef`` files without TensorFlow.

The protobuf wire format is decoded by hand: a frozen graph only needs a
handful of messages (``GraphDef``, ``NodeDef``, ``AttrValue``, ``TensorProto``,
``TensorShapeProto``), and field numbers are stable across TensorFlow
versions. Tensors come back as numpy arrays.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from facecluster.errors import FaceclusterError

logger = logging.getLogger(__name__)

__all__ = ["GraphDefError", "TFNode", "read_graph_def", "parse_graph_def", "DTYPES"]

# TensorFlow DataType enum -> numpy dtype (only the ones frozen graphs use).
DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.float64),
    3: np.dtype(np.int32),
    4: np.dtype(np.uint8),
    5: np.dtype(np.int16),
    6: np.dtype(np.int8),
    9: np.dtype(np.int64),
    10: np.dtype(np.bool_),
    19: np.dtype(np.float16),
}
_STRING_DTYPE = 7

# Wire types.
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


class GraphDefError(FaceclusterError, ValueError):
    """The bytes are not a readable TensorFlow GraphDef."""


@dataclass
class TFNode:
    """One node of a TensorFlow graph.

    Attributes
    ----------
    name, op : str
        Node name and operation type (``"Conv2D"``, ``"Const"``, ...).
    inputs : list of str
        Input references as stored (``"node"``, ``"node:1"``, ``"^ctrl"``).
    attrs : dict
        Attribute name -> decoded value: ``int``, ``float``, ``bool``,
        ``bytes``, a numpy dtype (for ``type`` attrs), a shape as a list of
        ints (-1 = unknown), a numpy array (for tensors) or a list of these.
    """

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise GraphDefError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field_number, wire_type, value)`` for one message's bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _FIXED32:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise GraphDefError(f"unsupported wire type {wire} for field {number}")
        if pos > end or number == 0:
            raise GraphDefError("truncated or corrupt message")
        yield number, wire, value


def _signed(value: int) -> int:
    """Reinterpret a varint as a two's-complement int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _repeated_varints(wire: int, value: Any) -> list[int]:
    """Decode a repeated varint field entry, packed or not."""
    if wire == _VARINT:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(_signed(item))
    return out


def _repeated_fixed(wire: int, value: Any, fmt: str) -> list[float]:
    """Decode a repeated float/double entry, packed or not."""
    data = bytes(value)
    return list(struct.unpack(f"<{len(data) // struct.calcsize(fmt)}{fmt}", data))


def _parse_shape(buf: memoryview) -> list[int] | None:
    dims: list[int] = []
    for number, _, value in _fields(buf):
        if number == 2:  # dim
            size = 0
            for dnum, _, dval in _fields(value):
                if dnum == 1:
                    size = _signed(dval)
            dims.append(size)
        elif number == 3 and value:  # unknown_rank
            return None
    return dims


def _parse_tensor(buf: memoryview) -> np.ndarray:
    dtype_enum, shape, content = 1, [], None
    values: list[Any] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            dtype_enum = value
        elif number == 2:
            shape = _parse_shape(value) or []
        elif number == 4:
            content = bytes(value)
        elif number == 5:
            values += _repeated_fixed(wire, value, "f")
        elif number == 6:
            values += _repeated_fixed(wire, value, "d")
        elif number in (7, 10, 11, 13, 16, 17):  # int/int64/bool/half/uint32/uint64
            values += _repeated_varints(wire, value)
        elif number == 8:
            values.append(bytes(value))
    if dtype_enum == _STRING_DTYPE:
        return np.array(values, dtype=object).reshape(shape) if shape else np.array(values, dtype=object)
    if dtype_enum not in DTYPES:
        raise GraphDefError(f"unsupported tensor dtype enum {dtype_enum}")
    dtype = DTYPES[dtype_enum]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dtype=dtype.newbyteorder("<")).astype(dtype)
    elif dtype == np.float16:
        arr = np.array(values, dtype=np.uint16).view(np.float16)
    else:
        arr = np.array(values, dtype=dtype)
    if arr.size == count:
        return arr.reshape(shape)
    if arr.size == 1 or (arr.size == 0 and count > 0):
        # TF stores a splat as a single value (or none for all-zero).
        fill = arr[0] if arr.size else dtype.type(0)
        return np.full(shape, fill, dtype=dtype)
    raise GraphDefError(f"tensor has {arr.size} values for shape {shape}")


def _parse_list(buf: memoryview) -> list[Any]:
    out: list[Any] = []
    for number, wire, value in _fields(buf):
        if number == 2:
            out.append(bytes(value))
        elif number == 3:
            out += _repeated_varints(wire, value)
        elif number == 4:
            out += _repeated_fixed(wire, value, "f")
        elif number == 5:
            out += [bool(v) for v in _repeated_varints(wire, value)]
        elif number == 6:
            out += [DTYPES.get(v, v) for v in _repeated_varints(wire, value)]
        elif number == 7:
            out.append(_parse_shape(value))
        elif number == 8:
            out.append(_parse_tensor(value))
    return out


def _parse_attr(buf: memoryview) -> Any:
    result: Any = None
    for number, wire, value in _fields(buf):
        if number == 1:
            result = _parse_list(value)
        elif number == 2:
            result = bytes(value)
        elif number == 3:
            result = _signed(value)
        elif number == 4:
            result = struct.unpack("<f", bytes(value))[0]
        elif number == 5:
            result = bool(value)
        elif number == 6:
            result = DTYPES.get(value, value)
        elif number == 7:
            result = _parse_shape(value)
        elif number == 8:
            result = _parse_tensor(value)
        elif number == 9:
            result = bytes(value).decode()
    return result


def _parse_node(buf: memoryview) -> TFNode:
    node = TFNode(name="", op="")
    for number, _, value in _fields(buf):
        if number == 1:
            node.name = bytes(value).decode()
        elif number == 2:
            node.op = bytes(value).decode()
        elif number == 3:
            node.inputs.append(bytes(value).decode())
        elif number == 5:  # map<string, AttrValue> entry
            key, attr = "", None
            for enum, _, evalue in _fields(value):
                if enum == 1:
                    key = bytes(evalue).decode()
                elif enum == 2:
                    attr = _parse_attr(evalue)
            node.attrs[key] = attr
    if not node.name or not node.op:
        raise GraphDefError("node without a name or op")
    return node


def parse_graph_def(data: bytes) -> list[TFNode]:
    """Decode serialised ``GraphDef`` bytes into a list of nodes, in file order.

    Raises
    ------
    GraphDefError
        If the bytes are truncated, corrupt or hold no nodes.
    """
    buf = memoryview(data)
    try:
        nodes = [_parse_node(value) for number, wire, value in _fields(buf) if number == 1 and wire == _LEN]
    except (GraphDefError, UnicodeDecodeError, struct.error, ValueError) as exc:
        raise GraphDefError(f"not a valid TensorFlow GraphDef: {exc}") from exc
    if not nodes:
        raise GraphDefError("not a valid TensorFlow GraphDef: no nodes found")
    return nodes


def read_graph_def(path: str | Path) -> list[TFNode]:
    """Read a frozen ``GraphDef`` (``.pb``) file into a list of :class:`TFNode`.

    Raises
    ------
    GraphDefError
        If the file is not a readable GraphDef; the message names the file.
    """
    path = Path(path)
    try:
        nodes = parse_graph_def(path.read_bytes())
    except GraphDefError as exc:
        raise GraphDefError(f"{path}: {exc}") from exc
    logger.debug("read %d nodes from %s", len(nodes), path)
    return nodes
