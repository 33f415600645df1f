"""5-point alignment: the landmarks land on the template, whatever the pose and scale; box crops unchanged."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facecluster.config import FacesConfig
from facecluster.faces import alignment_framing, alignment_template, align_face, crop_face, cut_face
from facecluster.resolve import build_config


def dots_image(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Black picture with a white dot (radius 3 px, placed to 1/16 px) at each point."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    for x, y in points:
        centre = (int(round(x * 16)), int(round(y * 16)))
        cv2.circle(image, centre, 3 * 16, (255, 255, 255), -1, lineType=cv2.LINE_AA, shift=4)
    return image


def dot_centres(image: np.ndarray) -> np.ndarray:
    """Centroids of the bright blobs, ordered like the template (nearest template point)."""
    grey = image[..., 0].astype(np.float64)
    count, labels = cv2.connectedComponents((grey > 40).astype(np.uint8))
    centres = []
    for k in range(1, count):
        ys, xs = np.nonzero(labels == k)
        weights = grey[ys, xs]
        centres.append([np.average(xs, weights=weights), np.average(ys, weights=weights)])
    return np.array(centres)


def record_for(points: np.ndarray, width: int, height: int) -> np.ndarray:
    record = np.full(18, np.nan, np.float32)
    record[0], record[1] = 1, 0.99
    xs, ys = points[:, 0], points[:, 1]
    record[2:6] = [xs.min() - 20, ys.min() - 30, xs.max() - xs.min() + 40, ys.max() - ys.min() + 50]
    record[6:16] = points.reshape(-1)
    record[16:18] = width, height
    return record


def similar(points: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    angle = np.deg2rad(angle_deg)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T + np.array(shift)


@pytest.mark.parametrize("angle, scale, margin", [(0, 1.0, 0.0), (25, 2.7, 0.2), (-15, 0.6, 0.4)])
def test_alignment_puts_the_landmarks_on_the_template(angle, scale, margin):
    size = 160
    template = alignment_template(size, margin)
    width, height = 900, 880
    points = similar(template - size / 2, angle, scale, (width / 2, height / 2))
    aligned = align_face(dots_image(points, (width, height)), record_for(points, width, height), size, margin)
    assert aligned.shape == (size, size, 3) and aligned.dtype == np.uint8
    found = dot_centres(aligned)
    assert len(found) == 5
    nearest = np.linalg.norm(found[:, None, :] - template[None, :, :], axis=2).min(axis=0)
    assert nearest.max() < 1.0  # pixels


def test_template_is_arcface_scaled_and_margin_shrinks_it_about_the_centre():
    np.testing.assert_allclose(alignment_template(112)[0], [38.2946, 51.6963], atol=1e-4)
    tight, loose = alignment_template(160), alignment_template(160, margin=0.5)
    assert np.ptp(loose[:, 0]) == pytest.approx(np.ptp(tight[:, 0]) / 1.5, rel=1e-6)
    assert tight[0, 0] < tight[1, 0] and tight[0, 1] < tight[3, 1]  # left eye left of right eye, above the mouth


def test_without_a_face_or_landmarks_alignment_falls_back_to_the_box_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    no_face = np.full(18, np.nan, np.float32)
    no_face[0], no_face[16:18] = 0, (200, 120)
    np.testing.assert_array_equal(align_face(image, no_face, 64), crop_face(image, no_face, 0.0, 64))


def test_alignment_is_deterministic_and_differs_from_the_box_crop_for_a_tilted_face():
    template = alignment_template(160)
    points = similar(template, 30, 1.5, (100, 60))
    image = dots_image(points, (400, 400))
    record = record_for(points, 400, 400)
    first, second = align_face(image, record, 160), align_face(image, record, 160)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, crop_face(image, record, 0.0, 160))


def test_cut_face_follows_the_crop_setting_and_box_stays_the_default():
    assert FacesConfig().crop == "box" and build_config("study").faces.crop == "box"
    template = alignment_template(96)
    points = similar(template, 10, 2.0, (80, 50))
    image = dots_image(points, (360, 360))
    record = record_for(points, 360, 360)
    box = FacesConfig(size=96, margin=0.1)
    aligned = FacesConfig(size=96, margin=0.1, crop="aligned")
    np.testing.assert_array_equal(cut_face(image, record, box), crop_face(image, record, 0.1, 96))
    np.testing.assert_array_equal(cut_face(image, record, aligned), align_face(image, record, 96, 0.1))
    assert cut_face(image, record, aligned, size=48).shape == (48, 48, 3)


def test_alignment_framing_measures_padding_and_shrinking():
    size = 100
    template = alignment_template(size)
    small = record_for(similar(template - size / 2, 0, 1.0, (300, 300)), 600, 600)  # well inside the image
    framing = alignment_framing(small, size)
    assert framing["outside_fraction"] == 0.0
    assert framing["source_pixels_per_crop_pixel"] == pytest.approx(1.0, rel=1e-3)
    big = record_for(similar(template - size / 2, 0, 4.0, (200, 200)), 380, 380)  # the crop spans 0…400 px
    framing = alignment_framing(big, size)
    assert framing["source_pixels_per_crop_pixel"] == pytest.approx(4.0, rel=1e-3)
    assert framing["outside_fraction"] == pytest.approx(1 - (380 / 400) ** 2, abs=0.01)
    tight = alignment_framing(big, size, margin=-0.5)
    assert tight["outside_fraction"] == 0.0 and tight["source_pixels_per_crop_pixel"] == pytest.approx(2.0, rel=1e-3)
    no_face = np.full(18, np.nan, np.float32)
    no_face[0] = 0
    assert alignment_framing(no_face, size) is None
