"""spectrum, dct, noise and geometry: shapes, determinism, and the invariances each should or should not have."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facecluster.config import FeaturesConfig
from facecluster.features import EXTRACTORS, make_extractor
from facecluster.features.dct import block_dct, dct_matrix
from facecluster.features.geometry import GeometryFeatures
from facecluster.features.noise import NoiseFeatures
from facecluster.features.spectrum import SpectrumFeatures, radial_profile

HANDCRAFTED = ["spectrum", "dct", "noise", "geometry"]


def photo(seed: int, size: int = 160, grey: bool = False) -> np.ndarray:
    """A textured face-like picture in 30…220 (no clipping under small brightness shifts)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.normal(0, 1, (size, size, 3)), (0, 0), 3)
    image = 125 + 25 * base / base.std() + rng.normal(0, 6, (size, size, 3))
    centre = (size // 2 + int(rng.integers(-5, 6)), size // 2 + int(rng.integers(-5, 6)))
    cv2.ellipse(image, centre, (size // 3, size * 2 // 5), 0, 0, 360, (170, 140, 120), -1)
    for side in (-1, 1):
        cv2.circle(image, (centre[0] + side * size // 7, centre[1] - size // 10), size // 30, (60, 50, 40), -1)
    image += rng.normal(0, 4, image.shape)
    if grey:
        image[:] = image.mean(axis=2, keepdims=True)
    return np.clip(np.rint(image), 30, 220).astype(np.uint8)


def batch(n: int = 4, **kwargs) -> np.ndarray:
    return np.stack([photo(seed, **kwargs) for seed in range(n)])


def records(n: int, found: bool = True) -> np.ndarray:
    rec = np.zeros((n, 18), np.float32)
    if found:
        rec[:, 0], rec[:, 1] = 1, 0.99
        rec[:, 2:6] = [60, 70, 120, 150]
        rec[:, 6:16] = [100, 120, 160, 118, 130, 150, 105, 185, 155, 183]
        rec[:, 16:18] = [300, 300]
    return rec


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def features(name: str, crops: np.ndarray, rec: np.ndarray | None = None) -> np.ndarray:
    return make_extractor(FeaturesConfig(extractor=name)).transform(crops, records(len(crops)) if rec is None else rec)


@pytest.mark.parametrize("name", HANDCRAFTED)
def test_shape_dtype_finite_and_deterministic(name):
    extractor = make_extractor(FeaturesConfig(extractor=name))
    crops = batch(3)
    first, second = extractor.transform(crops, records(3)), extractor.transform(crops.copy(), records(3))
    assert first.shape == (3, extractor.dim) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)
    assert extractor.transform(crops[:0], records(0)).shape == (0, extractor.dim)
    identity = extractor.cache_identity()
    assert identity["extractor"] == name and "version" in identity
    assert extractor.describe()["dim"] == extractor.dim


@pytest.mark.parametrize("name", ["spectrum", "dct", "noise"])
def test_pixel_families_see_the_pixels_and_keep_their_width_across_crop_sizes(name):
    a, b = features(name, batch(2))
    assert not np.allclose(a, b)
    assert features(name, batch(2, size=96)).shape[1] == features(name, batch(2)).shape[1]


@pytest.mark.parametrize("name", HANDCRAFTED)
def test_bad_crops_are_refused_with_the_expected_shape(name):
    with pytest.raises(ValueError, match=r"uint8 RGB of shape \[N, S, S, 3\]"):
        features(name, batch(2).astype(np.float32))
    with pytest.raises(ValueError, match="one record per crop"):
        features(name, batch(2), records(3))


def test_registry_lists_every_family():
    assert {"facenet", "facenet-bottleneck", "facenet-vggface2", "dlib", *HANDCRAFTED} <= set(EXTRACTORS)
    with pytest.raises(ValueError, match="'nope' unknown"):
        make_extractor(FeaturesConfig(extractor="spectrum+nope"))


# --- spectrum -------------------------------------------------------------------------------------


def test_spectrum_is_normalised_and_invariant_to_flips_and_brightness():
    crops = batch(3)
    profile = features("spectrum", crops)
    assert profile.min() == 0 and profile.max() == 1
    np.testing.assert_allclose(features("spectrum", crops[:, :, ::-1].copy()), profile, atol=1e-5)
    np.testing.assert_allclose(features("spectrum", crops + np.uint8(15)), profile, atol=1e-5)


def test_spectrum_drops_at_high_frequencies_after_blur_and_changes_after_jpeg():
    crops = batch(3)
    profile = features("spectrum", crops)
    blurred = features("spectrum", np.stack([cv2.GaussianBlur(c, (0, 0), 1.5) for c in crops]))
    assert (blurred[:, -30:].mean(axis=1) < 0.5 * profile[:, -30:].mean(axis=1)).all()
    recompressed = features("spectrum", np.stack([jpeg(c, 20) for c in crops]))
    assert np.abs(recompressed - profile).max(axis=1).min() > 0.02


def test_radial_profile_of_a_pure_tone_peaks_at_its_frequency():
    size = 128
    x = np.arange(size)
    tone = np.tile(np.cos(2 * np.pi * 16 * x / size), (size, 1)) * 50 + 128  # 16 cycles: radius 16 / 64
    profile = radial_profile(tone, bins=65, window="none")
    assert int(np.argmax(profile[1:])) + 1 == 16


# --- dct --------------------------------------------------------------------------------------------


def test_block_dct_is_the_orthonormal_dct_of_each_tile():
    matrix = dct_matrix(8)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(8), atol=1e-12)
    grey = np.random.default_rng(0).uniform(0, 255, (16, 24))
    tiles = block_dct(grey)
    assert tiles.shape == (6, 8, 8)
    np.testing.assert_allclose(tiles[1], cv2.dct(grey[0:8, 8:16] - 128.0), atol=1e-9)


def test_dct_ignores_flips_and_brightness_except_in_dc_but_sees_jpeg():
    crops = batch(3)
    stats = features("dct", crops)
    np.testing.assert_allclose(features("dct", crops[:, :, ::-1].copy()), stats, atol=1e-5)
    shifted = features("dct", crops + np.uint8(15))
    ac = np.ones(128, bool)
    ac[[0, 64]] = False  # the DC coefficient's mean and std
    np.testing.assert_allclose(shifted[:, ac], stats[:, ac], atol=1e-5)
    assert not np.allclose(shifted[:, 0], stats[:, 0])
    compressed = features("dct", np.stack([jpeg(c, 15) for c in crops]))
    assert (compressed[:, 63] < stats[:, 63] - 0.3).all()  # the highest frequency is quantised away


# --- noise ------------------------------------------------------------------------------------------


def test_noise_grows_with_added_noise_and_ignores_brightness():
    crops = batch(3)
    stats = features("noise", crops)
    rng = np.random.default_rng(1)
    noisy = np.clip(crops + rng.normal(0, 8, crops.shape), 0, 255).astype(np.uint8)
    assert (features("noise", noisy)[:, 0] > stats[:, 0] + 0.3).all()  # log(1 + std) of the median residual
    np.testing.assert_allclose(features("noise", crops + np.uint8(15)), stats, atol=5e-4)


def test_noise_colour_statistics_tell_greyscale_from_colour():
    colour, grey = features("noise", batch(2)), features("noise", batch(2, grey=True))
    correlations, chroma = slice(48, 51), slice(51, 53)
    np.testing.assert_allclose(grey[:, correlations], 1.0, atol=1e-6)
    np.testing.assert_allclose(grey[:, chroma], 0.0, atol=1e-6)
    assert (colour[:, correlations] < 0.99).all() and (colour[:, chroma] > 0.1).all()
    assert NoiseFeatures().dim == 78 and "greyscale" in NoiseFeatures().cue


# --- geometry ---------------------------------------------------------------------------------------


def test_geometry_reads_records_not_pixels():
    crops = batch(3)
    rec = records(3)
    rng = np.random.default_rng(2)
    noisy = np.clip(crops + rng.normal(0, 20, crops.shape), 0, 255).astype(np.uint8)
    first = features("geometry", crops, rec)
    np.testing.assert_array_equal(features("geometry", noisy, rec), first)
    np.testing.assert_allclose(first[0, :2], [100 / 300, 120 / 300], rtol=1e-6)  # left eye
    np.testing.assert_allclose(first[0, 10:14], [60 / 300, 70 / 300, 120 / 300, 150 / 300], rtol=1e-6)
    assert first[0, 14] == 1.0


def test_geometry_is_relative_to_the_image_size_and_never_nan():
    rec = records(2)
    doubled = rec.copy()
    doubled[:, 2:18] *= 2  # the same picture at twice the resolution
    np.testing.assert_allclose(features("geometry", batch(2), doubled), features("geometry", batch(2), rec), rtol=1e-6)
    missing = np.full((2, 18), np.nan, np.float32)
    missing[:, 0], missing[:, 16:18] = 0, 300
    out = features("geometry", batch(2), missing)
    np.testing.assert_array_equal(out, 0.0)


def test_geometry_says_it_is_a_cue_of_the_generation_pipeline():
    description = GeometryFeatures().describe()
    assert "generation pipeline" in description["cue"] and "not of realness" in description["caution"]


def test_spectrum_rejects_bad_parameters():
    with pytest.raises(ValueError, match="window"):
        SpectrumFeatures(window="gauss")
    with pytest.raises(ValueError, match="bins"):
        SpectrumFeatures(bins=1)
