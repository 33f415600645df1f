"""MediaPipe's face mesh and iris models, verified and run with OpenCV: where the eyes and irises are.

The two TFLite files ship in the package (``features/data/mediapipe/``, copied unchanged from the
mediapipe 0.10.21 wheel by ``scripts/fetch_mediapipe_models.py``; Apache-2.0, see the NOTICE there).
Each file's SHA-256 is checked against the pin below before ``cv2.dnn.readNetFromTFLite`` loads it
(by path: OpenCV 5.0's in-memory overload ignores the engine argument). OpenCV's classic engine is
used: the new one exposes only the first output of each graph, and the face mesh's face
probability is the second.

The face mesh (192×192 input) runs on the whole crop **and on its mirror image**, and the two
readings are averaged after mirroring the second back (each eye point with its mirror partner):
the eye points of a mirrored face are then exactly the mirror of the face's own, so everything
computed from them is unchanged by a horizontal flip. The iris model reads a 64×64 patch around
each eye, as MediaPipe cuts it (centred between the eye corners, 2.3 corner distances wide, turned
so the corners are level); it is trained on the eye on the image's left, so the other eye is read
from the mirrored crop, as MediaPipe mirrors its patch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from facecluster.errors import ModelFileError

#: file name → pinned SHA-256 (mediapipe 0.10.21, mediapipe/modules/…)
MODEL_SHA256 = {
    "face_landmark.tflite": "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    "iris_landmark.tflite": "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
}
REINSTALL = "reinstall facecluster (`pip install --force-reinstall facecluster`) or re-make it with scripts/fetch_mediapipe_models.py"

MESH_SIDE = 192
IRIS_SIDE = 64
#: MediaPipe's eye patch: this many eye-corner distances wide
EYE_PATCH_SCALE = 2.3
#: The 16 face-mesh points around the eye on the crop's left (outer corner 33, inner corner 133,
#: then the lower lid, then the upper lid) and, in the same order, their mirror partners on the right.
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
OUTER, INNER = 0, 8  # positions of the corners in LEFT_EYE / RIGHT_EYE


def model_folder() -> Path:
    """Where the packaged MediaPipe files are."""
    return Path(str(resources.files("facecluster.features") / "data" / "mediapipe"))


def verified_model_path(name: str, folder: Path | None = None) -> Path:
    """The path of a packaged model after checking its bytes against `MODEL_SHA256`.

    Raises
    ------
    ModelFileError
        When the file is missing or differs, naming the file and the fix.
    """
    path = (folder or model_folder()) / name
    try:
        data = path.read_bytes()
    except OSError:
        raise ModelFileError(f"{path}: model file missing; {REINSTALL}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != MODEL_SHA256[name]:
        raise ModelFileError(f"{path}: SHA-256 {actual} is not the pinned {MODEL_SHA256[name]}; {REINSTALL}")
    return path


@dataclass(frozen=True)
class EyeReading:
    """One eye in crop pixels (continuous coordinates: pixel ``i`` spans ``[i, i + 1)``).

    ``contour`` is the iris model's 16 points around the eye opening, in a loop (outer corner, lower
    lid, inner corner, upper lid); ``iris`` its 5 iris points, centre first, then 4 on the iris edge.
    """

    contour: np.ndarray  # (16, 2)
    iris: np.ndarray  # (5, 2)

    @property
    def iris_centre(self) -> np.ndarray:
        return self.iris[0]

    @property
    def iris_radius(self) -> float:
        return float(np.mean(np.linalg.norm(self.iris[1:] - self.iris[0], axis=1)))

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.contour[INNER] - self.contour[OUTER]))


def _mirror_x(points: np.ndarray, side: float) -> np.ndarray:
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = side - out[..., 0]
    return out


def _patch_matrix(corner_a: np.ndarray, corner_b: np.ndarray) -> np.ndarray:
    """2×3 map from crop pixel indices to the 64×64 eye patch's (the corners level, ``a`` on the left)."""
    centre = (corner_a + corner_b) / 2
    delta = corner_b - corner_a
    side = max(EYE_PATCH_SCALE * float(np.hypot(*delta)), 1e-3)
    angle = np.arctan2(delta[1], delta[0])
    scale = IRIS_SIDE / side
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    linear = np.array([[cos, sin], [-sin, cos]])  # rotate by -angle, then scale
    # continuous coordinates are indices + 0.5 on both sides
    offset = linear @ (0.5 - centre) + IRIS_SIDE / 2 - 0.5
    return np.column_stack([linear, offset])


class EyeLandmarker:
    """Face mesh + iris models: the two eyes of each face crop, and how sure the mesh is it saw a face.

    Parameters
    ----------
    folder : Path, optional
        Where the two ``.tflite`` files are (default: the packaged ones); they are checked
        against their pinned SHA-256 before loading either way.
    """

    def __init__(self, folder: Path | None = None):
        engine = cv2.dnn.ENGINE_CLASSIC
        self._mesh = cv2.dnn.readNetFromTFLite(str(verified_model_path("face_landmark.tflite", folder)), engine=engine)
        self._iris = cv2.dnn.readNetFromTFLite(str(verified_model_path("iris_landmark.tflite", folder)), engine=engine)
        self._mesh_outputs = list(self._mesh.getUnconnectedOutLayersNames())
        self._iris_outputs = list(self._iris.getUnconnectedOutLayersNames())

    def _run_mesh(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """468 points (in 192-px units) and the face probability of each 192×192 RGB float image."""
        points, probability = [], []
        for image in images:  # the graph is frozen at batch 1
            self._mesh.setInput(np.ascontiguousarray(image.transpose(2, 0, 1)[None]))
            outputs = dict(zip(self._mesh_outputs, self._mesh.forward(self._mesh_outputs)))
            mesh = next(v for v in outputs.values() if v.size == 468 * 3).reshape(468, 3)[:, :2]
            logit = float(next(v for v in outputs.values() if v.size == 1).ravel()[0])
            points.append(mesh)
            probability.append(1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50))))
        return np.asarray(points, dtype=np.float64), np.asarray(probability)

    def _run_iris(self, patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The eye opening (16 points in a loop) and the 5 iris points, in 64-px units, of one 64×64 RGB float patch."""
        self._iris.setInput(np.ascontiguousarray(patch.transpose(2, 0, 1)[None]))
        outputs = dict(zip(self._iris_outputs, self._iris.forward(self._iris_outputs)))
        iris = next(v for v in outputs.values() if v.size == 15).reshape(5, 3)[:, :2]
        contour = next(v for v in outputs.values() if v.size == 71 * 3).reshape(71, 3)[:16, :2]
        # the model's first 16 points: lower lid outer → inner corner (9), then upper lid outer → inner (7)
        loop = np.concatenate([contour[:9], contour[9:16][::-1]])
        return loop.astype(np.float64), iris.astype(np.float64)

    def eye_contours(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Both eye contours (16×2 face-mesh points) and the face probability, each eye from both readings.

        The left eye is given in the crop's pixels, the right eye **in the mirrored crop's** (where it
        is a left eye too). Each averages the face mesh on the crop and on the mirrored crop, written
        so that mirroring the crop swaps the two results exactly.
        """
        side = crop.shape[0]
        interpolation = cv2.INTER_AREA if side > MESH_SIDE else cv2.INTER_LINEAR
        views = [cv2.resize(np.ascontiguousarray(view), (MESH_SIDE, MESH_SIDE), interpolation=interpolation)
                 for view in (crop, crop[:, ::-1])]
        (direct, mirrored), probability = self._run_mesh(np.stack(views).astype(np.float32) / 255.0)
        left = (direct[list(LEFT_EYE)] + _mirror_x(mirrored[list(RIGHT_EYE)], MESH_SIDE)) / 2
        right = (mirrored[list(LEFT_EYE)] + _mirror_x(direct[list(RIGHT_EYE)], MESH_SIDE)) / 2
        scale = side / MESH_SIDE
        return left * scale, right * scale, (probability[0] + probability[1]) / 2

    def read_left_eye(self, image: np.ndarray, contour: np.ndarray) -> EyeReading:
        """The eye opening and iris of the eye on an image's left, given its face-mesh contour (16×2)."""
        matrix = _patch_matrix(contour[OUTER], contour[INNER])
        patch = cv2.warpAffine(image, matrix, (IRIS_SIDE, IRIS_SIDE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        opening, iris = self._run_iris(patch)
        inverse = cv2.invertAffineTransform(matrix)
        # patch → image, continuous coordinates
        opening, iris = ((points - 0.5) @ inverse[:, :2].T + inverse[:, 2] + 0.5 for points in (opening, iris))
        return EyeReading(contour=opening, iris=iris)

    def read_eyes(self, crop: np.ndarray) -> tuple[EyeReading, EyeReading, float]:
        """Both eyes of one uint8 RGB crop and the face probability.

        The left eye (as seen in the crop) is in the crop's pixels; the right eye in the pixels of
        the mirrored crop ``crop[:, ::-1]``, where the iris model sees it as the left eye it was
        trained on. Mirroring the crop therefore swaps the two readings exactly.
        """
        left_contour, right_contour, probability = self.eye_contours(crop)
        image = crop.astype(np.float32) / 255.0
        left = self.read_left_eye(image, left_contour)
        right = self.read_left_eye(np.ascontiguousarray(image[:, ::-1]), right_contour)
        return left, right, float(probability)
