"""Faces re-cut for pictures (cluster montages, the report's thumbnails), cached by content hash.

A crop's pixels depend on the image bytes, the face's box and landmarks, and how it is cut
(side, margin, box or aligned). The store keeps them in a uint8 table per (size, margin, crop)
whose key is the image's SHA-256 plus a digest of the face geometry, so a re-run reads
``size² × 3`` bytes per face instead of decoding the whole image again; a changed file, a
moved box or another crop setting is a miss, never a stale picture.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from facecluster.images import ImageError, decode_rgb, read_bytes
from facecluster.records import FaceRecord
from facecluster.store import FeatureStore, FeatureTable

log = logging.getLogger(__name__)

#: Bump when the way a crop is cut changes: it keys the cached crops.
CROPS_VERSION = 1


class FaceToCut(NamedTuple):
    """One face to cut: where its image is, its content hash (None: not cached) and its face record."""

    path: Path
    relpath: str
    sha256: str | None
    record: FaceRecord

    @classmethod
    def of(cls, sample, record) -> "FaceToCut":
        """The face of a dataset `Sample`, from its row of face records (``Extraction.records``)."""
        return cls(sample.path, sample.relpath, sample.sha256 or None, FaceRecord.from_array(record))


def crop_table(store: FeatureStore, size: int, margin: float, crop: str) -> FeatureTable:
    """The store's table of ``size``² crops cut with ``margin`` and ``crop`` ("box" or "aligned")."""
    return store.table("face-crops", {"size": int(size), "margin": float(margin), "crop": crop,
                                      "version": CROPS_VERSION}, dtype="uint8")


def crop_key(sha256: str | None, record: FaceRecord) -> str | None:
    """The cache key of one face: the image's hash and a digest of the geometry the crop follows."""
    if not sha256:
        return None
    geometry = hashlib.blake2b(digest_size=8)
    geometry.update(b"found" if record.found else b"none")
    if record.box is not None:
        geometry.update(np.asarray(record.box, dtype=np.float64).tobytes())
    if record.landmarks is not None:
        geometry.update(np.asarray(record.landmarks, dtype=np.float64).tobytes())
    return f"{sha256}-{geometry.hexdigest()}"


def cut_one(face: FaceToCut, size: int, margin: float, crop: str) -> np.ndarray | None:
    """Decode one image and cut its face (``size``², RGB uint8); None when the file is gone or bad."""
    from facecluster.faces import align_face, crop_face  # OpenCV: only when a crop is not cached

    try:
        rgb = decode_rgb(read_bytes(face.path, face.relpath), face.relpath)
    except ImageError as error:
        log.debug("no crop: %s", error)
        return None
    if crop == "aligned":
        return align_face(rgb, face.record, size, margin)
    return crop_face(rgb, face.record, margin, size)


def cut_faces(faces: list[FaceToCut], size: int, margin: float, crop: str = "box",
              store: FeatureStore | None = None) -> list[np.ndarray | None]:
    """The crops of ``faces`` in order (None where an image cannot be read); cached in ``store`` when given.

    Sequential on purpose: `decode_rgb` sets warning filters, which threads would share, and
    threads measured only ~15 % faster on 300 px images. The new crops are stored in one shard.
    """
    table = crop_table(store, size, margin, crop) if store is not None else None
    keys = [crop_key(face.sha256, face.record) if table is not None else None for face in faces]
    cached = table.get([k for k in keys if k]) if table is not None else {}
    crops: list[np.ndarray | None] = []
    new: dict[str, np.ndarray] = {}
    for face, key in zip(faces, keys):
        if key in cached:
            crops.append(cached[key].reshape(size, size, 3))
            continue
        cut = cut_one(face, size, margin, crop)
        if cut is not None:
            cut = np.ascontiguousarray(cut, dtype=np.uint8)
            if key:
                new[key] = cut
        crops.append(cut)
    if new:
        try:
            table.put(list(new), np.stack([c.reshape(-1) for c in new.values()]))
        except OSError as error:  # a read-only or full cache costs the next run time, never this one's pictures
            log.warning("face crops not cached in %s (%s)", table.folder, error)
    return crops
