"""Read weights files a user supplies (PyTorch ``.pt`` state dicts, Keras ``.h5``) without running their code.

A ``.pt`` file is a pickle (inside a zip since PyTorch 1.6, bare before): unpickling it
with `pickle` could run anything. `read_torch_state_dict` unpickles with a restricted
`pickle.Unpickler` that resolves only the handful of names a state dict of tensors needs
(an ordered dict, the tensor rebuild functions, the storage types) to our own numpy
stand-ins and refuses everything else; tensor bytes are read straight into numpy arrays.
PyTorch itself is not needed. Keras ``.h5`` files are plain HDF5, read with ``h5py``.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from facecluster.errors import FaceclusterError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's magic number before the zip format
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class WeightsFileError(FaceclusterError, ValueError):
    """A weights file cannot be read; the message names the file and why."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """numpy stand-in for ``torch._utils._rebuild_tensor(_v2)``: a copy of the strided view."""
    if isinstance(storage, _Pending):
        return _LazyTensor(storage.key, (storage_offset, size, stride))
    size, stride = tuple(int(v) for v in size), tuple(int(v) for v in stride)
    if len(size) != len(stride) or min((*size, *stride, storage_offset), default=0) < 0:
        raise WeightsFileError(f"a tensor with size {size}, stride {stride} and offset {storage_offset} is malformed")
    if not size:
        return np.array(storage[storage_offset])
    needed = storage_offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if min(size) > 0 and needed > storage.size or storage_offset > storage.size:
        raise WeightsFileError(f"a tensor of shape {size} reaches past its storage of {storage.size} values")
    base = storage[storage_offset:]
    return np.lib.stride_tricks.as_strided(base, size, [s * base.itemsize for s in stride]).copy()


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names of `_ALLOWED`, to numpy stand-ins; tensors' bytes come from ``load_storage``."""

    def __init__(self, data: bytes | io.BytesIO, source: str, load_storage):
        super().__init__(data if isinstance(data, io.BytesIO) else io.BytesIO(data))
        self.source = source
        self.load_storage = load_storage

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise WeightsFileError(
            f"{self.source}: refers to {module}.{name}, which a state dict of tensors never needs; not "
            "loading it (save the weights with torch.save(model.state_dict(), path))")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise WeightsFileError(f"{self.source}: unsupported storage reference {pid!r:.80}")
        return self.load_storage(pid)


def _check_state_dict(result, source: str) -> dict[str, np.ndarray]:
    if isinstance(result, dict) and isinstance(result.get("state_dict"), dict):
        result = result["state_dict"]
    if not isinstance(result, dict) or not all(isinstance(v, np.ndarray) for v in result.values()):
        raise WeightsFileError(f"{source}: not a state dict of tensors (name → tensor)")
    return {str(k): v for k, v in result.items()}


def _read_zip_state_dict(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise WeightsFileError(f"{path}: a zip without exactly one data.pkl; not a PyTorch file")
        prefix = pickles[0][: -len("data.pkl")]
        big_endian = f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() == b"big"
        storages: dict[str, np.ndarray] = {}

        def load_storage(pid):
            _, storage_type, key, _location, *_ = pid
            if key not in storages:
                member = f"{prefix}data/{key}"
                if member not in names:
                    raise WeightsFileError(f"{path}: tensor data {member} is missing")
                dtype = storage_type.dtype.newbyteorder(">") if big_endian else storage_type.dtype
                storages[key] = np.frombuffer(archive.read(member), dtype=dtype).astype(storage_type.dtype)
            return storages[key]

        return _check_state_dict(_RestrictedUnpickler(archive.read(pickles[0]), str(path), load_storage).load(),
                                 str(path))


def _read_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The pre-1.6 format: magic, protocol, system info, the object, storage keys, then raw storages."""
    stream = io.BytesIO(path.read_bytes())
    storages: dict[str, np.dtype] = {}

    def remember(pid):
        _, storage_type, key, _location, _numel, *view = pid
        if view and view[0] is not None:
            raise WeightsFileError(f"{path}: storage views are not supported; re-save it with a recent PyTorch")
        storages.setdefault(str(key), storage_type.dtype)
        return _Pending(str(key))

    def load(load_storage=remember):
        return _RestrictedUnpickler(stream, str(path), load_storage).load()  # consecutive pickles, one stream

    if load() != LEGACY_MAGIC:
        raise WeightsFileError(f"{path}: neither a zip nor a legacy PyTorch file (wrong magic number)")
    load()  # protocol version
    system = load()
    if isinstance(system, dict) and not system.get("little_endian", True):
        raise WeightsFileError(f"{path}: big-endian legacy PyTorch files are not supported")
    result = load()
    arrays = {}
    for key in load():
        dtype = storages[str(key)]
        (numel,) = struct.unpack("<q", stream.read(8))
        raw = stream.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise WeightsFileError(f"{path}: truncated tensor data")
        arrays[str(key)] = np.frombuffer(raw, dtype=dtype)
    if isinstance(result, dict):
        result = {k: v.build(arrays) if isinstance(v, _LazyTensor) else v for k, v in result.items()}
    return _check_state_dict(result, str(path))


class _Pending:
    """A legacy-format storage: its bytes come after the pickle."""

    def __init__(self, key: str):
        self.key = key


class _LazyTensor:
    """A tensor on a `_Pending` storage, built once the storages are read."""

    def __init__(self, key, args):
        self.key, self.args = key, args

    def build(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return _rebuild_tensor(arrays[self.key], *self.args)


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict (zip or legacy ``.pt``) as name → numpy array, without PyTorch or arbitrary unpickling.

    Raises
    ------
    WeightsFileError
        When the file is not a state dict of tensors, or refers to anything else.
    """
    path = Path(path)
    try:
        return _read_zip_state_dict(path) if zipfile.is_zipfile(path) else _read_legacy_state_dict(path)
    except WeightsFileError as error:
        message = str(error)
        raise WeightsFileError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, struct.error) as error:
        raise WeightsFileError(f"{path}: not a readable PyTorch file ({type(error).__name__}: {error})") from None


def read_keras_h5(path: str | Path) -> dict[str, np.ndarray]:
    """The weights of a Keras 2 HDF5 file (``model.save`` or ``save_weights``) as ``"layer/weight"`` → array.

    The weight name loses its ``:0`` suffix: ``Conv2d_1a_3x3/kernel``, ``Bottleneck_BatchNorm/beta``.

    Raises
    ------
    WeightsFileError
        When h5py is missing (naming the extra) or the file is not HDF5.
    """
    path = Path(path)
    try:
        import h5py
    except ImportError:
        raise WeightsFileError(f"{path}: reading Keras .h5 weights needs h5py: "
                               "pip install 'facecluster[vggface2]' (or pip install h5py)") from None
    weights: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            root = handle["model_weights"] if "model_weights" in handle else handle

            def visit(name, item):
                if isinstance(item, h5py.Dataset):
                    parts = name.split("/")
                    weights[f"{parts[0]}/{parts[-1].split(':')[0]}"] = np.asarray(item[()])

            root.visititems(visit)
    except OSError as error:
        raise WeightsFileError(f"{path}: not a readable HDF5 file ({error})") from None
    return weights


def read_weights(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """``("keras", weights)`` for an HDF5 file, ``("torch", weights)`` for a PyTorch file (by content, not name).

    Raises
    ------
    WeightsFileError
        When the file is missing or neither format.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise WeightsFileError(f"{path}: cannot read it ({error.strerror})") from None
    if head == HDF5_MAGIC:
        return "keras", read_keras_h5(path)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return "torch", read_torch_state_dict(path)
    raise WeightsFileError(f"{path}: neither a PyTorch .pt nor a Keras .h5 file")
