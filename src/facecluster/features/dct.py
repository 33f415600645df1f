"""Statistics of 8×8 block DCT coefficients of the luminance (after Frank et al. 2020).

GAN up-sampling leaves a regular grid in the DCT spectrum; JPEG works on 8×8 blocks of
the same transform. For each of the 64 frequencies the family keeps the mean and the
standard deviation, over the crop's blocks, of log(1 + |coefficient|).
"""

from __future__ import annotations

import numpy as np

from facecluster.features.base import HandcraftedFeatures, luminance


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``dct_matrix(n) @ x`` is the DCT of a length-n vector."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


def block_dct(grey: np.ndarray, block: int = 8) -> np.ndarray:
    """2-D DCT of every whole ``block``×``block`` tile of a grey image: shape (tiles, block, block).

    The tiles start at the top-left corner; rows and columns past the last whole tile are left out.
    """
    rows, cols = grey.shape[0] // block, grey.shape[1] // block
    tiles = grey[: rows * block, : cols * block].reshape(rows, block, cols, block).swapaxes(1, 2)
    tiles = tiles.reshape(-1, block, block) - 128.0
    matrix = dct_matrix(block)
    return matrix @ tiles @ matrix.T


def dct_statistics(grey: np.ndarray, block: int = 8) -> np.ndarray:
    """Per frequency, the mean then the std over the tiles of log(1 + |DCT coefficient|): ``2 * block**2`` values."""
    magnitudes = np.log1p(np.abs(block_dct(grey, block))).reshape(-1, block ** 2)
    return np.concatenate([magnitudes.mean(axis=0), magnitudes.std(axis=0)])


class DCTFeatures(HandcraftedFeatures):
    """Per-frequency mean and standard deviation of log(1 + |DCT coefficient|) over 8×8 blocks.

    Parameters
    ----------
    block : int
        Side of the square tiles (JPEG's is 8). The output has ``2 * block**2`` values:
        the means (row-major frequencies), then the standard deviations.
    """

    name = "dct"
    version = 1
    cue = "block DCT coefficient statistics of the luminance (generator up-sampling grid; also JPEG history)"

    def __init__(self, block: int = 8):
        if block < 2:
            raise ValueError(f"block must be at least 2, not {block}")
        self.block = block

    def params(self) -> dict:
        return {"block": self.block, "channel": "luma BT.601", "statistics": "mean,std of log1p|coef|"}

    @property
    def dim(self) -> int:
        return 2 * self.block * self.block

    def _one(self, crop: np.ndarray, record: np.ndarray | None) -> np.ndarray:
        if crop.shape[0] < self.block:
            raise ValueError(f"crops of {crop.shape[0]} px are smaller than one {self.block}-px DCT block")
        return dct_statistics(luminance(crop), self.block)
