"""8×8 block DCT statistics of the whole image, on the file's own block grid.

The ``dct`` family's 128 values (see `facecluster.features.dct`), computed on the decoded image
at its own resolution with the tiles starting at its top-left pixel, which is where a JPEG's
blocks are: the coefficients are then (close to) the quantised values the file stores, so the
family reads the file's compression history (the last quantisation and what came before it)
as much as what a generator left. A window of a large image keeps the grid (its corner is
on a multiple of the block).
"""

from __future__ import annotations

import numpy as np

from facecluster.features.base import luminance
from facecluster.features.dct import dct_statistics
from facecluster.features.image import MAX_SIDE, ImageFeatures, native_window


class DCTFullFeatures(ImageFeatures):
    """Per-frequency mean and std of log(1 + |DCT coefficient|) over the image's own 8×8 blocks.

    Parameters
    ----------
    block : int
        Side of the square tiles (JPEG's is 8): ``2 * block**2`` values.
    max_side : int
        A side longer than this is read through a window of this many native pixels around the face.
    """

    name = "dct-full"
    version = 1
    cue = ("block DCT statistics of the whole image on the file's own 8×8 grid: mostly the JPEG compression "
           "history (quantisation, earlier compressions), also the generator's up-sampling grid")

    def __init__(self, block: int = 8, max_side: int = MAX_SIDE):
        super().__init__(max_side=max_side)
        if block < 2:
            raise ValueError(f"block must be at least 2, not {block}")
        self.block = block

    def params(self) -> dict:
        return {"block": self.block, "channel": "luma BT.601", "statistics": "mean,std of log1p|coef|",
                "grid": "the image's own, from its top-left pixel"}

    @property
    def dim(self) -> int:
        return 2 * self.block * self.block

    def _image(self, rgb: np.ndarray, record: np.ndarray | None) -> np.ndarray:
        window = native_window(rgb, record, self.max_side, align=self.block)
        return dct_statistics(luminance(window), self.block)
