"""The key index of a feature table: key hash → (shard, row), kept as sorted arrays.

16 bytes an entry (a 64-bit key hash, a shard number, a row), searched with binary search:
a million keys take 16 MB, not the hundreds a dict of strings would. Entries added one
shard at a time (a run writing as it goes) wait in a small dict and are merged into the
arrays when that dict passes a quarter of them, so adding stays cheap. A hash may appear
more than once (two keys with one hash, or one key written twice by racing writers); the
caller checks the real key in the shard.
"""

from __future__ import annotations

import numpy as np

_EMPTY = (np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.int32))


def _sorted(hashes, shards, rows):
    if not hashes:
        return _EMPTY
    h, s, r = np.concatenate(hashes), np.concatenate(shards), np.concatenate(rows)
    order = np.argsort(h, kind="stable")
    return h[order].astype(np.uint64), s[order].astype(np.int32), r[order].astype(np.int32)


class KeyIndex:
    """Where each key hash lives: shard numbers index ``names``; set-aside shards are ``dead``."""

    def __init__(self):
        self.names: list[str] = []
        self.dead: set[int] = set()
        self._arrays = _EMPTY
        self._bulk: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending: dict[int, tuple[int, int]] = {}
        self._filtered: set[int] = set()  # dead shards already dropped from the arrays

    def add(self, name: str, hashes: np.ndarray, bulk: bool = False) -> int:
        """Index a shard whose rows have ``hashes``; ``bulk`` when many shards are added before a look-up."""
        self.names.append(name)
        number = len(self.names) - 1
        if bulk:
            self._bulk.append((hashes, np.full(len(hashes), number, np.int32), np.arange(len(hashes), dtype=np.int32)))
            return number
        for row, key_hash in enumerate(hashes.tolist()):
            self._pending[key_hash] = (number, row)
        if len(self._pending) > max(65536, len(self._arrays[0]) // 4):
            self._merge()
        return number

    def add_arrays(self, names: list[str], hashes, shards, rows) -> None:
        """Start from a saved index (before any `add`)."""
        self.names = list(names)
        self._bulk.append((hashes, shards, rows))

    def _merge(self) -> None:
        parts = [self._arrays] + self._bulk
        if self._pending:
            h = np.fromiter(self._pending.keys(), np.uint64, len(self._pending))
            s, r = np.array(list(self._pending.values()), np.int32).reshape(-1, 2).T
            parts.append((h, s, r))
        if len(parts) > 1:
            self._arrays = _sorted(*zip(*parts))
        self._bulk, self._pending = [], {}

    def live(self):
        """The sorted arrays (hashes, shards, rows) without the dead shards."""
        self._merge()
        if self.dead - self._filtered:
            h, s, r = self._arrays
            keep = ~np.isin(s, list(self.dead))
            self._arrays = (h[keep], s[keep], r[keep])
            self._filtered = set(self.dead)
        return self._arrays

    def __len__(self) -> int:
        """Distinct hashes among the live shards."""
        return int(len(np.unique(self.live()[0])))

    def candidates(self, wanted: np.ndarray) -> dict[int, list[tuple[int, int]]]:
        """For each position in ``wanted`` with a match, its (shard, row) candidates."""
        h, s, r = self.live()
        starts = np.searchsorted(h, wanted, side="left")
        ends = np.searchsorted(h, wanted, side="right")
        return {i: [(int(s[j]), int(r[j])) for j in range(a, b)]
                for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())) if b > a}

    def first_rows(self) -> dict[int, np.ndarray]:
        """Per shard, the rows that hold the first copy of their key (sorted)."""
        h, s, r = self.live()
        first = np.ones(len(h), dtype=bool)
        first[1:] = h[1:] != h[:-1]
        order = np.argsort(s[first], kind="stable")
        kept_s, kept_r = s[first][order], r[first][order]
        bounds = np.searchsorted(kept_s, np.arange(len(self.names) + 1))
        return {i: np.sort(kept_r[bounds[i]:bounds[i + 1]]) for i in range(len(self.names))}

    def save(self, handle) -> set[str]:
        """Write the live index as ``.npz`` to ``handle``; returns the shard names it covers."""
        h, s, r = self.live()
        names = np.array(self.names, dtype="U64") if self.names else np.zeros(0, "U64")
        np.savez(handle, names=names, hashes=h, shards=s, rows=r)
        return {n for i, n in enumerate(self.names) if i not in self.dead}

    @classmethod
    def load(cls, path, manifests: dict[str, dict]) -> tuple[KeyIndex, set[str]]:
        """A saved index, checked against the shard manifests; returns it and the shards it covers.

        Raises
        ------
        OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile
            The file is missing, unreadable or inconsistent: rebuild from the manifests.
        """
        with np.load(path, allow_pickle=False) as data:
            names, h, s, r = data["names"].tolist(), data["hashes"], data["shards"], data["rows"]
        if not (len(h) == len(s) == len(r)) or h.dtype != np.uint64:
            raise ValueError("index arrays of different lengths or types")
        if len(s) and (s.min() < 0 or s.max() >= len(names) or r.min() < 0):
            raise ValueError("index points outside its shards")
        sizes = np.array([manifests[n]["rows"] if n in manifests else np.iinfo(np.int32).max for n in names] or [0])
        if len(r) and np.any(r >= sizes[s]):
            raise ValueError("index points past the end of a shard")
        index = cls()
        index.add_arrays(names, h, s.astype(np.int32), r.astype(np.int32))
        index.dead = {i for i, n in enumerate(names) if n not in manifests}  # shards set aside since
        return index, {n for n in names if n in manifests}
