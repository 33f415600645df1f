"""Families that read the decoded image at the file's own resolution, and how an engine runs them.

A crop family sees the S×S face crop, which has been resampled: the highest frequencies of the
file, where generators leave their periodic up-sampling traces (Frank et al. 2020; Corvi et al.
2023), are gone before it looks. An *image family* instead declares ``reads_image = True`` and
computes one vector per decoded image with ``image_features(rgb, record)``, where the image is
decoded (the engine's worker), on the image at the file's own resolution, never resampled. Its
``transform(crops, records, image_vectors)`` passes those vectors on; a combination
(`facecluster.features.combine.CombinedFeatures`) fills its crop families' columns from the crops
and its image families' columns from the vectors.

Every engine does the same three things, whatever the extractor:

1. ``reader = image_reader(extractor)``: None for an extractor of crop families only, otherwise a
   small picklable object holding just the image families, sent to the workers;
2. in the worker, right after decoding: ``vector = reader.image_features(rgb, record)``;
3. where the crops are embedded: ``transform_rows(extractor, crops, records, image_vectors)``.

An image without a face still has a vector (the families read the whole image); an image that
cannot be decoded has none, like every family.
"""

from __future__ import annotations

import numpy as np

from facecluster.features.base import HandcraftedFeatures
from facecluster.records import FaceRecord

#: Images larger than this (either side) are read through a window of this many native pixels,
#: centred on the face: a whole-image FFT of a 100-megapixel photo would need gigabytes.
MAX_SIDE = 1024


def reads_image(extractor) -> bool:
    """True when ``extractor`` (or a member of a combination) reads the decoded image."""
    return bool(getattr(extractor, "reads_image", False))


def reads_crops(extractor) -> bool:
    """True when ``extractor`` (or a member of a combination) reads the face crops."""
    return any(not reads_image(m) for m in getattr(extractor, "members", [extractor]))


def check_image(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` as an array after checking it is a uint8 H×W×3 image.

    Raises
    ------
    ValueError
        Naming the shape and dtype expected.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"a decoded image must be uint8 RGB of shape [H, W, 3], got {rgb.dtype} {rgb.shape}")
    return rgb


def native_window(rgb: np.ndarray, record: np.ndarray | None, max_side: int = MAX_SIDE,
                  align: int = 1) -> np.ndarray:
    """The image itself, or for a side longer than ``max_side`` a window of native pixels centred on the face.

    Never resampled. Without a found face the window is centred on the image. ``align`` puts the
    window's corner on a multiple of it (8 keeps a JPEG's block grid where it was).
    """
    height, width = rgb.shape[:2]
    if height <= max_side and width <= max_side:
        return rgb
    centre_y, centre_x = height / 2, width / 2
    if record is not None:
        face = FaceRecord.from_array(record)
        if face.found and face.box is not None and np.isfinite(face.box).all():
            x, y, w, h = (float(v) for v in face.box)
            centre_x, centre_y = x + w / 2, y + h / 2

    def start(centre: float, side: int) -> int:
        first = int(np.clip(round(centre - max_side / 2), 0, max(0, side - max_side)))
        return first - first % align

    top, left = start(centre_y, height), start(centre_x, width)
    return rgb[top:top + max_side, left:left + max_side]


class ImageFeatures(HandcraftedFeatures):
    """Base of the families computed on the decoded image at its own resolution.

    A subclass sets ``name``, ``version``, ``cue``, implements ``params()``, ``dim`` and
    ``_image(rgb, record)`` (one vector of width ``dim`` for an image of any size).
    """

    reads_image = True

    def __init__(self, max_side: int = MAX_SIDE):
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32 px, not {max_side}")
        self.max_side = max_side

    def cache_identity(self) -> dict:
        return {**super().cache_identity(), "reads": "image", "max_side": self.max_side}

    def describe(self) -> dict:
        return {**super().describe(),
                "reads": f"the decoded image at the file's own resolution, never resampled (a {self.max_side}-px "
                         "window of native pixels around the face when a side is longer)"}

    def image_features(self, rgb: np.ndarray, record: np.ndarray | None = None) -> np.ndarray:
        """The family's vector (float32, ``dim``) of one decoded image and its face record."""
        return np.asarray(self._image(check_image(rgb), record), dtype=np.float32)

    def _image(self, rgb: np.ndarray, record: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def transform(self, crops: np.ndarray, records: np.ndarray, image_vectors: np.ndarray | None = None) -> np.ndarray:
        """The vectors ``image_features`` gave for these rows (N×``dim``); the crops only fix N.

        Raises
        ------
        ValueError
            Without ``image_vectors``: this family cannot be computed from crops.
        """
        if image_vectors is None:
            raise ValueError(f"{self.name} reads the decoded image at its own resolution, not the face crops: "
                             "compute each image's vector with image_features(rgb, record), as the engines do")
        image_vectors = np.asarray(image_vectors, dtype=np.float32)
        if image_vectors.shape != (len(crops), self.dim):
            raise ValueError(f"{self.name}: expected {len(crops)}×{self.dim} image vectors, got {image_vectors.shape}")
        return image_vectors


class ImageReader:
    """The image families of an extractor, in column order: what a worker runs on each decoded image."""

    def __init__(self, families: list):
        self.families = families
        self.dim = sum(family.dim for family in families)

    def image_features(self, rgb: np.ndarray, record: np.ndarray | None = None) -> np.ndarray:
        """The families' vectors of one decoded image, concatenated (float32, ``dim``)."""
        return np.concatenate([family.image_features(rgb, record) for family in self.families]).astype(np.float32)


def image_reader(extractor) -> ImageReader | None:
    """What of ``extractor`` runs on each decoded image, or None when it only reads crops."""
    families = [m for m in getattr(extractor, "members", [extractor]) if reads_image(m)]
    return ImageReader(families) if families else None


def transform_rows(extractor, crops: np.ndarray, records: np.ndarray, image_vectors: np.ndarray | None) -> np.ndarray:
    """The extractor's vectors for these rows, from their crops and (for image families) their image vectors."""
    if image_vectors is None:
        return extractor.transform(crops, records)
    return extractor.transform(crops, records, image_vectors=image_vectors)
