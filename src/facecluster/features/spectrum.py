"""Azimuthally averaged log power spectrum of the grey face crop (Durall et al. 2019).

GAN up-sampling leaves its mark in the high frequencies; averaging the 2-D log power
spectrum over circles gives a 1-D profile from the lowest to the highest frequency that
does not depend on the face's orientation. Resizing and JPEG weaken the cue (Dzanic et
al. 2020): the face crop is resampled before it gets here.
"""

from __future__ import annotations

import numpy as np

from facecluster.features.base import HandcraftedFeatures, luminance

WINDOWS = ("hann", "none")


def radial_profile(grey: np.ndarray, bins: int, window: str = "hann") -> np.ndarray:
    """The log power spectrum of a square grey image averaged over rings, on ``bins`` radii in [0, 1].

    Radius 1 is the Nyquist frequency along an axis (the corners beyond it are left out), so
    the profile has the same meaning for any crop size. A Hann window (default) keeps the
    jump between opposite edges of the crop from leaking into every frequency.
    """
    size = grey.shape[0]
    image = grey - grey.mean()
    if window == "hann":
        taper = np.hanning(size)
        image = image * np.outer(taper, taper)
    power = np.abs(np.fft.fftshift(np.fft.fft2(image))) ** 2
    log_power = np.log(power + 1e-8)
    centre = size // 2
    yy, xx = np.indices(power.shape)
    ring = np.rint(np.hypot(yy - centre, xx - centre)).astype(int)
    inside = ring <= centre
    sums = np.bincount(ring[inside], weights=log_power[inside], minlength=centre + 1)
    counts = np.bincount(ring[inside], minlength=centre + 1)
    profile = sums / np.maximum(counts, 1)
    return np.interp(np.linspace(0.0, 1.0, bins), np.linspace(0.0, 1.0, centre + 1), profile)


class SpectrumFeatures(HandcraftedFeatures):
    """1-D azimuthal average of the log power spectrum, min–max normalised as in Durall et al.

    Parameters
    ----------
    bins : int
        Points of the profile, from frequency 0 to Nyquist.
    window : {"hann", "none"}
        Taper applied to the crop before the FFT.
    """

    name = "spectrum"
    version = 1
    cue = "frequency content of the face crop (up-sampling traces of generators; also resizing, JPEG, blur)"

    def __init__(self, bins: int = 80, window: str = "hann"):
        if bins < 2:
            raise ValueError(f"bins must be at least 2, not {bins}")
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, not {window!r}")
        self.bins = bins
        self.window = window

    def params(self) -> dict:
        return {"bins": self.bins, "window": self.window, "channel": "luma BT.601", "normalization": "min-max"}

    @property
    def dim(self) -> int:
        return self.bins

    def _one(self, crop: np.ndarray, record: np.ndarray | None) -> np.ndarray:
        profile = radial_profile(luminance(crop), self.bins, self.window)
        span = profile.max() - profile.min()
        return (profile - profile.min()) / span if span > 0 else np.zeros_like(profile)
