"""What the hand-made feature families share: input checks, luminance, identity and description."""

from __future__ import annotations

import numpy as np

#: ITU-R BT.601 luma weights (R, G, B), as JPEG uses.
LUMA = np.array([0.299, 0.587, 0.114])


def check_crops(crops: np.ndarray, records: np.ndarray | None = None) -> np.ndarray:
    """``crops`` as an array after checking it is uint8 N×S×S×3 (and matches ``records``).

    Raises
    ------
    ValueError
        Naming the shape and dtype expected.
    """
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[3] != 3 or crops.shape[1] != crops.shape[2]:
        raise ValueError(f"crops must be uint8 RGB of shape [N, S, S, 3], got {crops.dtype} {crops.shape}")
    if records is not None and len(records) != len(crops):
        raise ValueError(f"{len(crops)} crops but {len(records)} face records; give one record per crop")
    return crops


def luminance(rgb: np.ndarray) -> np.ndarray:
    """The grey level (0–255, float64) of an RGB uint8 image."""
    rgb = rgb.astype(np.float64)
    return rgb[..., 0] * LUMA[0] + rgb[..., 1] * LUMA[1] + rgb[..., 2] * LUMA[2]  # no BLAS: see noise.py


class HandcraftedFeatures:
    """Base of the families computed image by image with numpy: identity, description, batching.

    A subclass sets ``name``, ``version`` (bump it whenever its output changes: it keys the
    cache), ``cue`` (what the family looks at, for the report), implements ``params()``,
    ``dim`` and ``_one(crop, record)``.
    """

    name = "handcrafted"
    version = 1
    cue = ""

    def params(self) -> dict:
        """Every parameter the output depends on."""
        return {}

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def cache_identity(self) -> dict:
        return {"extractor": self.name, "version": self.version, **self.params()}

    def describe(self) -> dict:
        return {**self.cache_identity(), "dim": self.dim, "cue": self.cue}

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray:
        """Features of each crop: float32 N×``dim``."""
        crops = check_crops(crops, records)
        out = np.empty((len(crops), self.dim), dtype=np.float32)
        for i, crop in enumerate(crops):
            out[i] = self._one(crop, None if records is None else records[i])
        return out

    def _one(self, crop: np.ndarray, record: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"
