"""The power spectrum of the whole image at the file's own resolution, and its up-sampling peaks.

Up-sampling in a generator (nearest, bilinear or transposed convolution by 2, repeated) leaves
periodic traces: peaks in the spectrum of the image's high-pass residual at 1/2, 1/4 and 1/8
cycles per pixel of the output (indices N/2, N/4, N/8 of an N-point DFT), and a changed decay
of the spectrum's high end (Frank et al. 2020; Durall et al. 2020; Corvi et al. 2023). A
resized crop moves or removes them, so this family reads the decoded image, never resampled.

Two parts. The azimuthally averaged log power spectrum of the grey image, on fixed bins of
the radius in units of the Nyquist frequency, so images of any size give the same width (the
spectrum is binned, the image is never resized), min–max normalised as in Durall et al. 2019.
Then, at each of the three frequencies, the peak strength in the log power spectra of the
Laplacian residual and of its magnitude: the mean log power at the peak points (on the axes; on
the diagonals) minus the median of their 7×7 neighbourhoods. JPEG's 8×8 block grid puts peaks
at the same frequencies (multiples of 1/8): on files that share one JPEG setting, what differs
is how strong they are.
"""

from __future__ import annotations

import cv2
import numpy as np

from facecluster.features.base import luminance
from facecluster.features.image import MAX_SIDE, ImageFeatures, native_window

#: Up-sampling frequencies, in cycles per pixel (N/2, N/4, N/8 of an N-point DFT).
PEAK_FREQUENCIES = (1 / 2, 1 / 4, 1 / 8)
NEIGHBOURHOOD = 3  # the background of a peak: the (2·3+1)² points around it, the peak left out
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)  # the high-pass residual


def _hann(height: int, width: int) -> np.ndarray:
    return np.outer(np.hanning(height), np.hanning(width))


def radial_log_spectrum(grey: np.ndarray, bins: int) -> np.ndarray:
    """The windowed log power spectrum of a grey image (any H×W) averaged over rings of normalised radius.

    Radius 1 is the Nyquist frequency along each axis (an ellipse for a non-square image, so a
    bin means the same frequency whatever the size); the corners past it and the DC term are left
    out. Bins that no frequency falls in (tiny images) are interpolated from their neighbours.
    """
    height, width = grey.shape
    power = np.abs(np.fft.fft2((grey - grey.mean()) * _hann(height, width))) ** 2
    radius = np.hypot(np.fft.fftfreq(height)[:, None] / 0.5, np.fft.fftfreq(width)[None, :] / 0.5)
    inside = (radius > 0) & (radius <= 1)
    index = np.minimum((radius[inside] * bins).astype(np.int64), bins - 1)
    sums = np.bincount(index, weights=np.log(power[inside] + 1e-8), minlength=bins)
    counts = np.bincount(index, minlength=bins)
    filled = counts > 0
    centres = (np.arange(bins) + 0.5) / bins
    return np.interp(centres, centres[filled], sums[filled] / counts[filled])


def _peak_strengths(signal: np.ndarray) -> list[float]:
    """Axis then diagonal peak strength of ``signal``'s log power spectrum at each up-sampling frequency."""
    height, width = signal.shape
    log_power = np.log(np.abs(np.fft.fft2((signal - signal.mean()) * _hann(height, width))) ** 2 + 1e-8)
    offsets = np.arange(-NEIGHBOURHOOD, NEIGHBOURHOOD + 1)
    around = [(dy, dx) for dy in offsets for dx in offsets if (dy, dx) != (0, 0)]

    def strength(points) -> float:
        values = []
        for y, x in points:
            background = np.median([log_power[(y + dy) % height, (x + dx) % width] for dy, dx in around])
            values.append(log_power[y % height, x % width] - background)
        return float(np.mean(values))

    out = []
    for frequency in PEAK_FREQUENCIES:
        ky, kx = round(frequency * height), round(frequency * width)
        out.append(strength([(0, kx), (0, -kx), (ky, 0), (-ky, 0)]))
        out.append(strength([(ky, kx), (ky, -kx), (-ky, kx), (-ky, -kx)]))
    return out


def peak_strengths(grey: np.ndarray) -> np.ndarray:
    """How far the residual's log power stands above its surroundings at each up-sampling frequency.

    12 values: for the Laplacian residual, then for its magnitude, at 1/2, 1/4, 1/8 cycles per
    pixel, the axis points (±f, 0), (0, ±f) then the diagonal points (±f, ±f), each the mean over
    the points of (log power − median of the 7×7 neighbourhood). The residual's own spectrum shows
    a periodic pattern added to the image (a transposed convolution's checkerboard); its magnitude's
    spectrum shows a periodic *variance*, what interpolation leaves (every other pixel an average
    of its neighbours).
    """
    residual = cv2.filter2D(grey, cv2.CV_64F, LAPLACIAN, borderType=cv2.BORDER_REFLECT)
    return np.array(_peak_strengths(residual) + _peak_strengths(np.abs(residual)))


class SpectrumFullFeatures(ImageFeatures):
    """Radial log power spectrum of the grey image at native resolution, plus up-sampling peak strengths.

    Parameters
    ----------
    bins : int
        Radial bins from just above frequency 0 to Nyquist; the output has ``bins + 12`` values:
        the min–max normalised profile, then the 12 peak strengths of `peak_strengths`.
    max_side : int
        A side longer than this is read through a window of this many native pixels around the face.
    """

    name = "spectrum-full"
    version = 1
    cue = ("frequency content of the whole image at the file's own resolution: up-sampling peaks of generators "
           "at N/2, N/4, N/8 (also the JPEG block grid, resizing and blur the file went through)")

    def __init__(self, bins: int = 64, max_side: int = MAX_SIDE):
        super().__init__(max_side=max_side)
        if bins < 2:
            raise ValueError(f"bins must be at least 2, not {bins}")
        self.bins = bins

    def params(self) -> dict:
        return {"bins": self.bins, "window": "hann", "channel": "luma BT.601", "normalization": "min-max",
                "peaks": [f"1/{round(1 / f)}" for f in PEAK_FREQUENCIES], "residual": "laplacian, and its magnitude",
                "neighbourhood": 2 * NEIGHBOURHOOD + 1}

    @property
    def dim(self) -> int:
        return self.bins + 4 * len(PEAK_FREQUENCIES)

    def _image(self, rgb: np.ndarray, record: np.ndarray | None) -> np.ndarray:
        grey = luminance(native_window(rgb, record, self.max_side))
        profile = radial_log_spectrum(grey, self.bins)
        span = profile.max() - profile.min()
        profile = (profile - profile.min()) / span if span > 0 else np.zeros_like(profile)
        return np.concatenate([profile, peak_strengths(grey)])
