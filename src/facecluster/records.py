"""What one image becomes: its face record and its status word. Every layer above reads them from here.

A face record is packed as float32[`RECORD_SIZE`] in the feature store, in `Extraction.records`
and in the batches the engines pass around::

    0       found (1.0) or not (0.0); NaN for an image that could not be read
    1       detector confidence
    2:6     box: x, y, width, height in image pixels
    6:16    5 landmarks (x, y): left eye, right eye, nose, mouth left, mouth right
    16, 17  image width, height in pixels

Only this module knows the positions: others use `FaceRecord` or the named accessors below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OK = "ok"  #: a face was found and embedded
NO_FACE = "no_face"  #: no face was found; features come from the whole image
USABLE = (OK, NO_FACE)  #: statuses whose features can be reduced and clustered

RECORD_SIZE = 18  #: found, confidence, box (4), landmarks (10), image width, height
_FOUND, _CONFIDENCE = 0, 1
_BOX = slice(2, 6)
_LANDMARKS = slice(6, 16)
_WIDTH, _HEIGHT = 16, 17


def empty_records(n: int) -> np.ndarray:
    """``n`` packed records, all NaN (what an image that was never read has)."""
    return np.full((n, RECORD_SIZE), np.nan, dtype=np.float32)


@dataclass(frozen=True)
class FaceRecord:
    """One image's face, unpacked.

    ``box`` is (x, y, width, height) in image pixels, as the detector gives it (its corners are
    `corners`); ``box`` and ``landmarks`` are None when they were not recorded.
    """

    found: bool
    confidence: float = float("nan")
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None  # (5, 2) float32: x, y
    image_width: float = float("nan")
    image_height: float = float("nan")

    @property
    def corners(self) -> tuple[float, float, float, float] | None:
        """The box as (x0, y0, x1, y1)."""
        if self.box is None:
            return None
        x, y, w, h = self.box
        return x, y, x + w, y + h

    def to_array(self) -> np.ndarray:
        """The packed float32[`RECORD_SIZE`] form."""
        row = np.full(RECORD_SIZE, np.nan, dtype=np.float32)
        row[_FOUND] = 1.0 if self.found else 0.0
        row[_CONFIDENCE] = self.confidence
        if self.box is not None:
            row[_BOX] = self.box
        if self.landmarks is not None:
            row[_LANDMARKS] = np.asarray(self.landmarks, dtype=np.float32).reshape(-1)
        row[_WIDTH], row[_HEIGHT] = self.image_width, self.image_height
        return row

    @classmethod
    def from_array(cls, row: np.ndarray) -> FaceRecord:
        """Unpack one packed record (an unread image, all NaN, is ``found=False``)."""
        row = np.asarray(row, dtype=np.float32)
        if row.shape != (RECORD_SIZE,):
            raise ValueError(f"a face record has {RECORD_SIZE} values, not {row.shape}")
        box = row[_BOX]
        points = row[_LANDMARKS]
        return cls(found=bool(row[_FOUND] > 0), confidence=float(row[_CONFIDENCE]),
                   box=None if np.isnan(box).all() else tuple(float(v) for v in box),
                   landmarks=None if np.isnan(points).all() else points.reshape(5, 2).copy(),
                   image_width=float(row[_WIDTH]), image_height=float(row[_HEIGHT]))


def found(records: np.ndarray) -> np.ndarray:
    """Per packed record (N×`RECORD_SIZE`): was a face found (False for unread images)."""
    return np.asarray(records)[:, _FOUND] > 0


def face_columns(records: np.ndarray) -> dict[str, np.ndarray]:
    """Per packed record (N×`RECORD_SIZE`), column-wise: ``found``, ``confidence`` (NaN without a
    face), ``box`` (N×4: x, y, width, height; NaN when not recorded) and ``landmarks`` (N×10: x, y
    per point; NaN when not recorded)."""
    records = np.asarray(records, dtype=np.float32).reshape(-1, RECORD_SIZE)
    found_rows = records[:, _FOUND] > 0
    return {"found": found_rows, "confidence": np.where(found_rows, records[:, _CONFIDENCE], np.nan),
            "box": np.where(found_rows[:, None], records[:, _BOX], np.nan),
            "landmarks": np.where(found_rows[:, None], records[:, _LANDMARKS], np.nan)}
