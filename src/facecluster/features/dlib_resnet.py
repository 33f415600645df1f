"""dlib's ResNet face descriptor (128-d), an identity embedding trained apart from FaceNet.

Optional: ``pip install 'facecluster[dlib]'`` (``dlib-bin`` and ``face-recognition-models``,
which ships the weights). The ``.dat`` files are located with `importlib.util.find_spec`
rather than by importing ``face_recognition_models``, whose import needs ``pkg_resources``.

The 5-point shape predictor finds the landmarks inside the face crop (the face is assumed
to fill its centre, as the crops of `facecluster.faces` do with the default margin), then
dlib aligns the face itself (`get_face_chip` convention, 150×150, padding 0.25) and embeds it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from facecluster.errors import MissingExtraError
from facecluster.features.base import check_crops
from facecluster.features.facenet_model import file_sha256

EXTRA = "pip install 'facecluster[dlib]'  (dlib-bin and face-recognition-models)"
SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
RESNET_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def dlib_model_files() -> dict[str, Path]:
    """Paths of the shape predictor and ResNet files inside ``face_recognition_models``.

    Raises
    ------
    MissingExtraError
        When the package or one of its files is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"the 'dlib' features need face-recognition-models: {EXTRA}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = {"shape_predictor": folder / SHAPE_MODEL, "resnet": folder / RESNET_MODEL}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise MissingExtraError(f"{', '.join(missing)} missing; reinstall: {EXTRA}")
    return files


def import_dlib():
    """The ``dlib`` module, or an error naming the extra to install."""
    try:
        import dlib
    except ImportError as error:
        raise MissingExtraError(f"the 'dlib' features need dlib: {EXTRA}") from error
    return dlib


class DlibFeatures:
    """128-d dlib ResNet descriptors of face crops.

    Parameters
    ----------
    face_fraction : float
        Share of the crop's side the face box is assumed to span, centred (1 / (1 + margin)
        for the crops of `facecluster.faces`; 1 / 1.2 with the default margin 0.2).
    """

    name = "dlib"
    version = 1
    dim = 128

    def __init__(self, face_fraction: float = 1 / 1.2):
        if not 0.2 <= face_fraction <= 1.0:
            raise ValueError(f"face_fraction must be in [0.2, 1], not {face_fraction}")
        self.face_fraction = face_fraction
        self._models = None

    def _load(self):
        if self._models is None:
            dlib = import_dlib()
            files = dlib_model_files()
            self._models = (dlib, dlib.shape_predictor(str(files["shape_predictor"])),
                            dlib.face_recognition_model_v1(str(files["resnet"])),
                            {k: file_sha256(p) for k, p in files.items()})
        return self._models

    def cache_identity(self) -> dict:
        return {"extractor": self.name, "version": self.version, "model": RESNET_MODEL,
                "shape_predictor": SHAPE_MODEL, "face_fraction": round(self.face_fraction, 6),
                "chip": {"size": 150, "padding": 0.25}, "num_jitters": 0}

    def describe(self) -> dict:
        info = {**self.cache_identity(), "dim": self.dim, "cue": "identity (dlib ResNet, trained for face recognition)"}
        if self._models is not None:
            info["model_sha256"] = self._models[3]
        return info

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray:
        """Descriptors of face crops (uint8 N×S×S×3 RGB): float32 N×128."""
        crops = check_crops(crops, records)
        out = np.empty((len(crops), self.dim), dtype=np.float32)
        if not len(crops):
            return out
        dlib, predictor, resnet, _ = self._load()
        size = crops.shape[1]
        inset = int(round(size * (1 - self.face_fraction) / 2))
        box = dlib.rectangle(inset, inset, size - 1 - inset, size - 1 - inset)
        for i, crop in enumerate(crops):
            crop = np.ascontiguousarray(crop)
            out[i] = np.asarray(resnet.compute_face_descriptor(crop, predictor(crop, box)), dtype=np.float32)
        return out
