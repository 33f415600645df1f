"""Statistics of high-pass noise residuals and of colour co-occurrences.

A camera leaves sensor noise and demosaicing correlations between colour channels; a
generator leaves its own, smoother or more regular, residual. The family measures the
residuals of four high-pass filters (a 3×3 median, first and second differences, and
the 5×5 "KV" kernel of the SRM rich models, Fridrich & Kodovsky 2012), a histogram of the
median residual, the co-occurrence of neighbouring quantised residuals, and how the
residuals of the three colour channels go together (Nataraj et al. 2019 use colour
co-occurrence matrices). The colour part sees greyscale images at once (their channels are
identical): on a dataset where only one class has greyscale pictures, that is a shortcut.
"""

from __future__ import annotations

import cv2
import numpy as np

from facecluster.features.base import HandcraftedFeatures, luminance

#: SRM "KV" 5×5 high-pass kernel (divided by 12).
KV_KERNEL = np.array([[-1, 2, -2, 2, -1],
                      [2, -6, 8, -6, 2],
                      [-2, 8, -12, 8, -2],
                      [2, -6, 8, -6, 2],
                      [-1, 2, -2, 2, -1]], dtype=np.float64) / 12.0
HISTOGRAM_EDGES = np.arange(-5.5, 6.0, 1.0)  # 11 bins of the median residual, -5 … 5 grey levels
TRUNCATION = 2  # quantised residuals are clipped to -2 … 2: 5 levels, 25 pairs


def _median_residual(channel: np.ndarray) -> np.ndarray:
    """The channel minus its 3×3 median."""
    smooth = cv2.medianBlur(channel.astype(np.float32), 3)
    return channel - smooth


def _residuals(grey: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "median": _median_residual(grey),
        "first": np.concatenate([np.diff(grey, axis=1).ravel(), np.diff(grey, axis=0).ravel()]),
        "second": np.concatenate([np.diff(grey, 2, axis=1).ravel(), np.diff(grey, 2, axis=0).ravel()]),
        "kv": cv2.filter2D(grey, cv2.CV_64F, KV_KERNEL, borderType=cv2.BORDER_REFLECT)[2:-2, 2:-2],
    }


def _moments(values: np.ndarray) -> list[float]:
    """log(1 + std), skewness and excess kurtosis (0 for a constant)."""
    values = values.ravel()
    centred = values - values.mean()
    std = centred.std()
    if std < 1e-9:
        return [0.0, 0.0, 0.0]
    z = centred / std
    z2 = z * z
    return [float(np.log1p(std)), float(np.mean(z2 * z)), float(np.mean(z2 * z2) - 3.0)]


def _quantise(values: np.ndarray) -> np.ndarray:
    return (np.clip(np.rint(values), -TRUNCATION, TRUNCATION) + TRUNCATION).astype(np.int64)


def co_occurrence(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Joint histogram (normalised, 25 values) of two arrays of quantised residuals (0 … 4)."""
    levels = 2 * TRUNCATION + 1
    counts = np.bincount((first * levels + second).ravel(), minlength=levels * levels).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    # elementwise sums, not BLAS dot products: BLAS threads crawl on a busy machine
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denominator) if denominator > 1e-9 else 1.0


def noise_statistics(rgb: np.ndarray) -> np.ndarray:
    """The 78 noise values (layout in `NoiseFeatures`) of a uint8 RGB image of any size (at least 3×3)."""
    grey = luminance(rgb)
    residuals = _residuals(grey)
    moments = [m for residual in residuals.values() for m in _moments(residual)]
    histogram, _ = np.histogram(np.clip(residuals["median"], -5, 5), bins=HISTOGRAM_EDGES)
    histogram = histogram / max(histogram.sum(), 1)
    q = _quantise(np.diff(grey, axis=1))
    qv = _quantise(np.diff(grey, axis=0))
    spatial = (co_occurrence(q[:, :-1], q[:, 1:]) + co_occurrence(qv[:-1, :], qv[1:, :])) / 2

    colour_values = rgb.astype(np.float64)
    red, green, blue = (_median_residual(colour_values[..., c]) for c in range(3))
    correlations = [_correlation(red, green), _correlation(green, blue), _correlation(red, blue)]
    chroma = [np.log1p(_median_residual((colour_values[..., c] - colour_values[..., 1]) / 2 + 128).std())
              for c in (0, 2)]
    colour = co_occurrence(_quantise(np.diff(colour_values[..., 0], axis=1)),
                           _quantise(np.diff(colour_values[..., 1], axis=1)))
    return np.concatenate([moments, histogram, spatial, correlations, chroma, colour])


class NoiseFeatures(HandcraftedFeatures):
    """Noise-residual moments, residual histogram, spatial and colour co-occurrences (78 values).

    Layout: for each residual (median, first, second, kv) log(1 + std), skewness, kurtosis
    (12); the median residual's histogram on -5 … 5 (11); the horizontal+vertical
    co-occurrence of the quantised first difference of the luminance (25); the correlation of
    the median residuals of R–G, G–B, R–B (3); log(1 + std) of the residuals of (R−G)/2 and (B−G)/2
    (2); the co-occurrence of the quantised R and G first differences at the same pixel (25).
    """

    name = "noise"
    version = 1
    cue = ("high-pass noise residuals and colour co-occurrences (sensor noise, demosaicing, generator "
           "smoothness; also JPEG, resizing, and greyscale images)")

    def params(self) -> dict:
        return {"filters": ["median3", "diff1", "diff2", "srm-kv"], "histogram": [-5, 5],
                "truncation": TRUNCATION, "channel": "luma BT.601 + RGB"}

    @property
    def dim(self) -> int:
        return 12 + 11 + 25 + 3 + 2 + 25

    def _one(self, crop: np.ndarray, record: np.ndarray | None) -> np.ndarray:
        return noise_statistics(crop)
