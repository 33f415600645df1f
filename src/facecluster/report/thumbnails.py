"""Small JPEG data URIs for the page: face thumbnails re-cut from the originals, and montage files.

Nothing here recomputes a result: the face boxes and landmarks come from results.json (an aligned
run's thumbnails are aligned as its crops were), and a face that can no
longer be cut (the original moved or changed) gets no thumbnail rather than stopping the report.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from facecluster.face_crops import FaceToCut, cut_faces
from facecluster.records import FaceRecord
from facecluster.store import FeatureStore

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 80
THUMBNAIL_QUALITY = 72


def jpeg_data_uri(image: np.ndarray | Image.Image, quality: int = THUMBNAIL_QUALITY) -> str:
    """An RGB image as a ``data:image/jpeg;base64,...`` URI."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def face_record_of(entry: dict) -> FaceRecord:
    """The face record `crop_face` expects, rebuilt from an ``images[]`` entry of results.json."""
    face = entry.get("face")
    if not face:
        return FaceRecord(found=False)
    landmarks = face.get("landmarks")
    return FaceRecord(found=True, confidence=float(face.get("confidence", np.nan)),
                      box=tuple(float(v) for v in face["box"]),
                      landmarks=None if landmarks is None else np.asarray(landmarks, dtype=np.float32).reshape(5, 2))


def face_to_cut(root: Path, entry: dict) -> FaceToCut:
    """What `cut_faces` needs to cut the face of one ``images[]`` entry of results.json."""
    return FaceToCut(root / entry["path"], entry["path"], entry.get("sha256"), face_record_of(entry))


def face_thumbnail(root: Path, entry: dict, margin: float, size: int = THUMBNAIL_SIZE,
                   crop: str = "box", *, store: FeatureStore | None = None) -> str | None:
    """The face of one image as a JPEG data URI, cut as the run cut it; None if the file is gone or bad.

    ``crop`` is the run's ``faces.crop``: ``"aligned"`` warps the face onto the alignment
    template by its landmarks (a box crop when the entry has none, as the run did). With a
    ``store``, the crop is read from (or added to) its face-crop table (`facecluster.face_crops`).
    """
    return face_thumbnails(root, [entry], np.ones(1, dtype=bool), margin, size, crop, store=store)[0]


def face_thumbnails(root: Path, entries: list[dict], wanted: np.ndarray, margin: float,
                    size: int = THUMBNAIL_SIZE, crop: str = "box", *,
                    store: FeatureStore | None = None) -> list[str | None]:
    """Thumbnails for the entries where ``wanted`` is true, None elsewhere (crops cached in ``store``)."""
    rows = np.flatnonzero(wanted).tolist()
    crops = cut_faces([face_to_cut(root, entries[i]) for i in rows], size, margin, crop, store=store)
    thumbs: list[str | None] = [None] * len(entries)
    for i, cut in zip(rows, crops):
        thumbs[i] = None if cut is None else jpeg_data_uri(cut)
    return thumbs


def file_data_uri(path: Path, quality: int = 82) -> str | None:
    """An image file (e.g. a PNG montage) re-encoded as a JPEG data URI; None if it cannot be read."""
    try:
        with Image.open(path, formats=("PNG", "JPEG")) as image:  # our own figures; nothing else is parsed
            return jpeg_data_uri(image, quality)
    except (OSError, ValueError) as error:
        log.warning("%s: cannot embed (%s)", path, error)
        return None
