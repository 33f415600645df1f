"""Noise-residual statistics and co-occurrences of the whole image at the file's own resolution.

The same 78 values as the ``noise`` family (high-pass residual moments, residual histogram,
spatial and colour co-occurrences; see `facecluster.features.noise`), computed on the decoded
image instead of the resampled face crop: resizing averages neighbouring pixels, which is
exactly the correlation the residuals measure (sensor noise and demosaicing in a photo, the
generator's smoother or more regular texture in a fake). The values are averaged over the
image and its mirror image, so the family does not depend on which way a face looks (the
signed first differences and their co-occurrences would).
"""

from __future__ import annotations

import numpy as np

from facecluster.features.image import MAX_SIDE, ImageFeatures, native_window
from facecluster.features.noise import NoiseFeatures, noise_statistics


class NoiseFullFeatures(ImageFeatures):
    """The ``noise`` family's 78 values on the whole image at native resolution, mirror-averaged.

    Parameters
    ----------
    max_side : int
        A side longer than this is read through a window of this many native pixels around the face.
    """

    name = "noise-full"
    version = 1
    cue = ("high-pass noise residuals and colour co-occurrences of the whole image at its own resolution "
           "(sensor noise, demosaicing, generator texture; also JPEG and greyscale images)")

    def __init__(self, max_side: int = MAX_SIDE):
        super().__init__(max_side=max_side)

    def params(self) -> dict:
        return {**NoiseFeatures().params(), "mirror": "averaged"}

    @property
    def dim(self) -> int:
        return NoiseFeatures().dim

    def _image(self, rgb: np.ndarray, record: np.ndarray | None) -> np.ndarray:
        window = native_window(rgb, record, self.max_side)
        return (noise_statistics(window) + noise_statistics(window[:, ::-1])) / 2
