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

from facecluster.faces import align_face, crop_face
from facecluster.images import ImageError, decode_rgb, read_bytes
from facecluster.records import FaceRecord

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


def face_thumbnail(root: Path, entry: dict, margin: float, size: int = THUMBNAIL_SIZE,
                   crop: str = "box") -> str | None:
    """The face of one image as a JPEG data URI, cut as the run cut it; None if the file is gone or bad.

    ``crop`` is the run's ``faces.crop``: ``"aligned"`` warps the face onto the alignment
    template by its landmarks (a box crop when the entry has none, as the run did).
    """
    try:
        rgb = decode_rgb(read_bytes(root / entry["path"], entry["path"]), entry["path"])
    except ImageError as error:
        log.debug("no thumbnail: %s", error)
        return None
    record = face_record_of(entry)
    cut = align_face(rgb, record, size, margin) if crop == "aligned" else crop_face(rgb, record, margin, size)
    return jpeg_data_uri(cut)


def face_thumbnails(root: Path, entries: list[dict], wanted: np.ndarray, margin: float,
                    size: int = THUMBNAIL_SIZE, crop: str = "box") -> list[str | None]:
    """Thumbnails for the entries where ``wanted`` is true, None elsewhere.

    Sequential on purpose: `decode_rgb` sets warning filters, which threads would share, and
    threads measured only ~15 % faster on 300 px images.
    """
    return [face_thumbnail(root, entry, margin, size, crop) if keep else None for entry, keep in zip(entries, wanted)]


def file_data_uri(path: Path, quality: int = 82) -> str | None:
    """An image file (e.g. a PNG montage) re-encoded as a JPEG data URI; None if it cannot be read."""
    try:
        with Image.open(path, formats=("PNG", "JPEG")) as image:  # our own figures; nothing else is parsed
            return jpeg_data_uri(image, quality)
    except (OSError, ValueError) as error:
        log.warning("%s: cannot embed (%s)", path, error)
        return None
