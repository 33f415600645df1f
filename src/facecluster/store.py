"""Content-addressed feature cache, sharded so it scales past memory.

An entry's key is the SHA-256 of the image bytes; a table (a folder) holds the entries of
one extractor identity (name, model checksum, preprocessing parameters). So a renamed file
is a hit, a changed file is a miss, and a change of settings never reads stale vectors.

Layout of a table folder::

    identity.json                 the extractor identity, for people reading the folder
    shard-<id>.keys.npy           the shard's keys (UTF-8 bytes)
    shard-<id>.values.npy         its vectors, one row per key (memory-mapped on read)
    shard-<id>.json               its manifest: rows, dim, dtype and the CRC-32 of both files
    index.npz                     key hash → (shard, row), sorted (`store_index`); a cache of the manifests

Every file is written to a temporary name, fsynced and renamed into place, and the
manifest is renamed last: a shard exists once its manifest does, so a killed run leaves
only whole shards (plus temporaries, swept after an hour) and resumes from them. Shard
names are random, so any number of processes can write one table at once; the index is
only a cache (rebuilt from the manifests for any shard it does not cover, rewritten
atomically), so when two writers race the last index wins and the next reader adds what
it misses. A shard whose checksum, shape or header is wrong is set aside (``*.corrupt``)
the first time it is read, and its entries are recomputed. Files are read with
``allow_pickle=False``: nothing executable is ever loaded.

A table's values are float32 (features, probes) unless it is opened with ``dtype="uint8"``
(pixels: the face crops of `facecluster.face_crops`) or ``"float64"`` (numbers that must come
back exactly: `facecluster.separation`'s answers); the manifest records the dtype, a
manifest without one (none was written so) is float32, and a shard whose dtype is not its
table's is set aside like any other corrupt shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import platformdirs

from facecluster.errors import FaceclusterError
from facecluster.store_index import KeyIndex

log = logging.getLogger(__name__)

FORMAT = 1
SHARD_ROWS = 16384  # a put larger than this is split; 32 MiB of 512-d float32 per shard
STALE_SECONDS = 3600  # temporaries and manifest-less files older than this are swept
DTYPES = ("float32", "float64", "uint8")  # what a table may hold: vectors, exact numbers, or pixels


def default_store_dir() -> Path:
    """``$FACECLUSTER_CACHE_DIR/features``, else the user cache directory."""
    base = os.environ.get("FACECLUSTER_CACHE_DIR") or platformdirs.user_cache_dir("facecluster")
    return Path(base) / "features"


def identity_key(identity: dict) -> str:
    """A short stable hash of an extractor identity (JSON, sorted keys)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hash_keys(keys) -> np.ndarray:
    """A 64-bit hash of each key (BLAKE2b), the index's sort key."""
    digests = b"".join(hashlib.blake2b(k.encode() if isinstance(k, str) else bytes(k), digest_size=8).digest()
                       for k in keys)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary file in the same folder, fsynced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            crc = zlib.crc32(block, crc)
    return crc


class CorruptShard(FaceclusterError):
    """A shard's files disagree with its manifest."""


class Shard(NamedTuple):
    """One shard of a table, as `FeatureTable.iter_shards` yields it."""

    name: str
    keys: list[str]
    values: np.ndarray  # (rows, dim) of the table's dtype, memory-mapped and read-only


class FeatureTable:
    """The vectors of one extractor identity, keyed by image content hash.

    Parameters
    ----------
    folder : Path
        The table's folder (created on the first `put`).
    identity : dict
        What the vectors depend on; written to ``identity.json``.
    shard_rows : int
        Largest shard a `put` writes; bigger puts are split.
    dtype : {"float32", "float64", "uint8"}
        What the values are: float32 vectors, float64 numbers, or uint8 pixels (a `put` refuses
        anything but uint8 values there rather than wrapping them).
    """

    def __init__(self, folder: Path, identity: dict, shard_rows: int = SHARD_ROWS, dtype: str = "float32"):
        if dtype not in DTYPES:
            raise ValueError(f"a feature table holds {', '.join(DTYPES)} values, not {dtype!r}")
        self.folder = Path(folder)
        self.identity = identity
        self.shard_rows = shard_rows
        self.dtype = np.dtype(dtype)
        self._index: KeyIndex | None = None  # read on first use
        self._manifests: dict[str, dict] = {}
        self._verified: set[str] = set()  # shards whose values passed their checksum here
        self._persisted: set[str] = set()  # shard names the index file on disk covers

    # ---- reading -------------------------------------------------------------------------
    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        return (self.folder / f"{name}.json", self.folder / f"{name}.keys.npy", self.folder / f"{name}.values.npy")

    def _set_aside(self, name: str, error) -> None:
        log.warning("feature cache shard %s/%s is corrupt (%s); setting it aside, its entries will be recomputed",
                    self.folder, name, error)
        for path in self._paths(name):
            try:
                path.replace(path.with_name(path.name + ".corrupt"))
            except FileNotFoundError:
                pass
        if self._index is not None and name in self._index.names:
            self._index.dead.add(self._index.names.index(name))

    def _manifest(self, name: str) -> dict:
        try:
            manifest = json.loads(self._paths(name)[0].read_text(encoding="utf-8"))
            manifest["rows"], manifest["dim"], manifest["keys_crc32"], manifest["values_crc32"]
        except (ValueError, KeyError, TypeError) as error:
            raise CorruptShard(f"unreadable manifest: {error}") from None
        return manifest

    def _read_keys(self, name: str) -> np.ndarray:
        """The shard's keys as bytes, checked against the manifest."""
        manifest = self._manifests[name]
        path = self._paths(name)[1]
        try:
            if _crc32(path) != manifest["keys_crc32"]:
                raise CorruptShard("keys checksum mismatch")
            keys = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise CorruptShard(error) from None
        if keys.shape != (manifest["rows"],) or keys.dtype.kind != "S":
            raise CorruptShard(f"keys of shape {keys.shape}, manifest says {manifest['rows']}")
        return keys

    def _open_values(self, name: str) -> np.ndarray:
        """The shard's vectors, memory-mapped; checksummed the first time this table reads them."""
        manifest = self._manifests[name]
        path = self._paths(name)[2]
        try:
            if name not in self._verified:
                if _crc32(path) != manifest["values_crc32"]:
                    raise CorruptShard("values checksum mismatch")
            values = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise CorruptShard(error) from None
        if values.shape != (manifest["rows"], manifest["dim"]):
            raise CorruptShard(f"values of shape {values.shape}, manifest says ({manifest['rows']}, {manifest['dim']})")
        if values.dtype != self.dtype or manifest.get("dtype", "float32") != self.dtype.name:
            raise CorruptShard(f"values of dtype {values.dtype} (manifest: {manifest.get('dtype', 'float32')}), "
                               f"the table holds {self.dtype.name}")
        self._verified.add(name)
        return values

    def _sweep(self) -> None:
        """Remove temporaries and manifest-less shard files a killed writer left over an hour ago."""
        cutoff = time.time() - STALE_SECONDS
        for path in self.folder.iterdir():
            name = path.name
            orphan = name.startswith("shard-") and name.endswith(".npy") and \
                not (self.folder / (name.split(".")[0] + ".json")).exists()
            if name.startswith(".tmp-") or orphan:
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                except FileNotFoundError:
                    pass

    def _load(self) -> KeyIndex:
        """Read the index file and add every committed shard it does not cover."""
        if self._index is not None:
            return self._index
        self._index = KeyIndex()
        if not self.folder.is_dir():
            return self._index
        self._sweep()
        present = []
        for path in sorted(self.folder.glob("shard-*.json")):
            name = path.name[:-len(".json")]
            try:
                self._manifests[name] = self._manifest(name)
                present.append(name)
            except CorruptShard as error:
                self._set_aside(name, error)
        covered: set[str] = set()
        try:
            self._index, covered = KeyIndex.load(self.folder / "index.npz", self._manifests)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            if (self.folder / "index.npz").exists():
                log.info("rebuilding the index of %s (%s)", self.folder, error)
        for name in present:
            if name not in covered:
                try:
                    self._index.add(name, hash_keys(self._read_keys(name).tolist()), bulk=True)
                except CorruptShard as error:
                    self._set_aside(name, error)
        self._persisted = covered
        if covered != set(present) or len(covered) != len(self._index.names) - len(self._index.dead):
            self._write_index()
        return self._index

    def _write_index(self) -> None:
        """Persist the index (best effort: it is only a cache of the manifests)."""
        try:
            covered: set[str] = set()

            def write(handle):
                covered.update(self._index.save(handle))
            _atomic_write(self.folder / "index.npz", write)
            self._persisted = covered
        except OSError as error:
            log.info("could not write the index of %s (%s)", self.folder, error)

    def __len__(self) -> int:
        """How many distinct keys the table holds."""
        return len(self._load())

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are absent from the result)."""
        index = self._load()
        if not keys or not index.names:
            return {}
        # Candidates (shard, row) per key: usually one; more after a hash collision or a race.
        candidates = index.candidates(hash_keys(keys))
        found: dict[str, np.ndarray] = {}
        while candidates:
            by_shard: dict[int, list[int]] = {}
            for i, options in candidates.items():
                by_shard.setdefault(options[0][0], []).append(i)
            for shard, members in by_shard.items():
                ok = self._fetch(shard, members, keys, candidates, found)
                for i in members:
                    options = candidates[i]
                    if ok and keys[i] in found:
                        del candidates[i]
                        continue
                    options.pop(0)
                    if not options:
                        del candidates[i]
        return found

    def _fetch(self, shard: int, members: list[int], keys, candidates, found) -> bool:
        """Read the rows ``members`` want from one shard; False when the shard is unusable."""
        if shard in self._index.dead:
            return False
        name = self._index.names[shard]
        try:
            shard_keys = self._read_keys(name) if name not in self._verified else \
                np.load(self._paths(name)[1], mmap_mode="r", allow_pickle=False)
            values = self._open_values(name)
        except CorruptShard as error:
            self._set_aside(name, error)
            return False
        rows = np.array([candidates[i][0][1] for i in members])
        order = np.argsort(rows)
        chosen = np.asarray(values[rows[order]])
        stored = shard_keys[rows[order]]
        for k, position in enumerate(order):
            i = members[position]
            if stored[k] == keys[i].encode():
                found[keys[i]] = chosen[k].copy()
        return True

    def iter_shards(self, unique: bool = True) -> Iterator[Shard]:
        """Stream the table shard by shard, in a stable order, each checksummed before use.

        Parameters
        ----------
        unique : bool
            Yield a key once even when racing writers stored it in two shards.
        """
        index = self._load()
        keep_rows = index.first_rows() if unique else None
        for number, name in sorted(enumerate(index.names), key=lambda item: item[1]):
            if number in index.dead:
                continue
            try:
                keys = self._read_keys(name)
                values = self._open_values(name)
            except CorruptShard as error:
                self._set_aside(name, error)
                continue
            if keep_rows is not None and len(keep_rows[number]) < len(keys):
                rows = keep_rows[number]
                keys, values = keys[rows], values[rows]
            if len(keys):
                yield Shard(name, [k.decode() for k in keys.tolist()], values)

    # ---- writing -------------------------------------------------------------------------
    def put(self, keys: list[str], values: np.ndarray) -> None:
        """Add entries as new shards (at most ``shard_rows`` each), each written atomically."""
        if not keys:
            return
        values = np.asarray(values)
        if self.dtype == np.uint8 and values.dtype != np.uint8:
            raise ValueError(f"a uint8 table stores uint8 pixels, not {values.dtype} values")
        values = values.astype(self.dtype, copy=False)
        if values.ndim != 2 or values.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys for vectors of shape {values.shape}")
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "identity.json"
        if not meta.exists():
            _atomic_write(meta, lambda h: h.write(json.dumps(self.identity, indent=2, sort_keys=True).encode()))
        for start in range(0, len(keys), self.shard_rows):
            self._put_shard(list(keys[start:start + self.shard_rows]), values[start:start + self.shard_rows])
        _fsync_dir(self.folder)

    def _put_shard(self, keys: list[str], values: np.ndarray) -> None:
        name = f"shard-{uuid.uuid4().hex}"
        manifest_path, keys_path, values_path = self._paths(name)
        key_array = np.array([k.encode() for k in keys])
        _atomic_write(keys_path, lambda h: np.save(h, key_array, allow_pickle=False))
        _atomic_write(values_path, lambda h: np.save(h, np.ascontiguousarray(values), allow_pickle=False))
        manifest = {"format": FORMAT, "rows": len(keys), "dim": int(values.shape[1]), "dtype": self.dtype.name,
                    "keys_crc32": _crc32(keys_path), "values_crc32": _crc32(values_path)}
        _atomic_write(manifest_path, lambda h: h.write(json.dumps(manifest).encode()))  # the commit point
        if self._index is None:
            return  # nothing read yet: the next read finds the shard through its manifest
        self._manifests[name] = manifest
        self._verified.add(name)
        self._index.add(name, hash_keys(keys))
        uncovered = len(self._index.names) - len(self._index.dead) - len(self._persisted)
        if uncovered > max(64, len(self._persisted) // 4):
            self._write_index()


class FeatureStore:
    """A folder of `FeatureTable`s, one per extractor identity."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_store_dir()

    def table(self, name: str, identity: dict, dtype: str | None = None) -> FeatureTable:
        """The table for an extractor ``name`` with the given identity.

        ``dtype`` (see `FeatureTable`; default float32) other than float32 is recorded in the
        identity, so such a table has a folder of its own and its ``identity.json`` alone
        reopens it with its dtype: no reader of another dtype ever sets its shards aside.
        """
        named = identity.get("dtype")
        if dtype is not None and named is not None and named != dtype:
            raise ValueError(f"the identity of table {name!r} names dtype {named!r}, not {dtype!r}")
        dtype = dtype or named or "float32"
        if dtype != "float32":
            identity = {**identity, "dtype": dtype}
        return FeatureTable(self.root / f"{name}-{identity_key(identity)}", identity, dtype=dtype)
