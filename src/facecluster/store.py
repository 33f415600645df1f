"""Content-addressed feature cache.

An entry's key is the SHA-256 of the image bytes; a table (a folder) holds the entries of
one extractor identity (name, model checksum, preprocessing parameters). So a renamed file
is a hit, a changed file is a miss, and a change of settings never reads stale vectors.

Entries are written in shards (``.npz``: keys + float32 values), each written to a temporary
file and renamed into place, so a killed run leaves only whole shards and resumes from
them. Shards are read with ``allow_pickle=False``: nothing executable is ever loaded. A
shard that fails its zip CRC check is set aside and its entries recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
import zipfile
from pathlib import Path

import numpy as np
import platformdirs

log = logging.getLogger(__name__)


def default_store_dir() -> Path:
    """``$FACECLUSTER_CACHE_DIR/features``, else the user cache directory."""
    base = os.environ.get("FACECLUSTER_CACHE_DIR") or platformdirs.user_cache_dir("facecluster")
    return Path(base) / "features"


def identity_key(identity: dict) -> str:
    """A short stable hash of an extractor identity (JSON, sorted keys)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _atomic_write(path: Path, write) -> None:
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


class FeatureTable:
    """The vectors of one extractor identity, keyed by image content hash."""

    def __init__(self, folder: Path, identity: dict):
        self.folder = folder
        self.identity = identity
        self._index: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._index is None:
            self._index = {}
            for shard in sorted(self.folder.glob("shard-*.npz")):
                try:
                    with np.load(shard, allow_pickle=False) as data:
                        keys, values = data["keys"], data["values"]
                except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
                    log.warning("feature cache shard %s is corrupt (%s); setting it aside, its entries "
                                "will be recomputed", shard, error)
                    shard.replace(shard.with_suffix(".corrupt"))
                    continue
                for key, value in zip(keys.tolist(), values):
                    self._index[key] = value
        return self._index

    def __len__(self) -> int:
        return len(self._load())

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are absent from the result)."""
        index = self._load()
        return {k: index[k] for k in keys if k in index}

    def put(self, keys: list[str], values: np.ndarray) -> None:
        """Add entries as one new shard, written atomically."""
        if not keys:
            return
        values = np.asarray(values, dtype=np.float32)
        if values.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys for {values.shape[0]} vectors")
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "identity.json"
        if not meta.exists():
            _atomic_write(meta, lambda h: h.write(json.dumps(self.identity, indent=2, sort_keys=True).encode()))
        key_array = np.array(keys, dtype="U64")
        shard = self.folder / f"shard-{uuid.uuid4().hex}.npz"
        _atomic_write(shard, lambda h: np.savez(h, keys=key_array, values=values))
        index = self._load()
        for key, value in zip(keys, values):
            index[key] = value


class FeatureStore:
    """A folder of `FeatureTable`s, one per extractor identity."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_store_dir()

    def table(self, name: str, identity: dict) -> FeatureTable:
        """The table for an extractor ``name`` with the given identity."""
        return FeatureTable(self.root / f"{name}-{identity_key(identity)}", identity)
