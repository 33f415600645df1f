"""The YuNet detector: finds real faces, maps its box back to the full image, and fails gracefully."""

from __future__ import annotations

import numpy as np
import pytest

from facecluster.config import FacesConfig
from facecluster.faces import FaceDetectCNN, YuNetDetector, crop_face, locate_face, make_detector
from facecluster.images import decode_rgb, read_bytes

pytest.importorskip("yuface", reason="the yunet detector needs the yuface package (facecluster[yunet])")

DEV_IMAGES = ["train/fake/fake_1.jpg", "train/real/real_1.jpg", "valid/fake/fake_100.jpg", "valid/real/real_101.jpg"]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def dev_image(root, name):
    path = root / name
    if not path.is_file():
        pytest.skip(f"{path} is not in this copy of the dev set")
    return decode_rgb(read_bytes(path, name), name)


@pytest.fixture(scope="module")
def detector():
    return YuNetDetector()


def test_finds_the_face_in_dev_images_with_landmarks_inside(dev_dataset, detector):
    config = FacesConfig(detector="yunet")
    for name in DEV_IMAGES:
        rgb = dev_image(dev_dataset, name)
        record = locate_face(rgb, detector, config)
        assert record[0] == 1, name
        x, y, w, h = record[2:6]
        assert 0.1 * rgb.shape[1] < w <= rgb.shape[1] and h > 0.1 * rgb.shape[0], name
        points = record[6:16].reshape(5, 2)
        assert np.all((points[:, 0] >= x - 2) & (points[:, 0] <= x + w + 2)), name
        assert points[0, 0] < points[1, 0] and points[2, 1] < points[3, 1], name  # eyes left→right, nose above mouth


def test_box_from_the_downscaled_copy_matches_full_size_detection(dev_dataset, detector):
    full_size = YuNetDetector(detect_side=4096)
    for name in DEV_IMAGES:
        rgb = dev_image(dev_dataset, name)
        small, large = detector.detect(rgb), full_size.detect(rgb)
        best_small = max(small, key=lambda d: d.area)
        best_large = max(large, key=lambda d: d.area)
        assert iou(best_small.box, best_large.box) > 0.6, name


def test_downscaled_detection_is_mapped_to_the_original_pixels(dev_dataset, detector):
    rgb = dev_image(dev_dataset, DEV_IMAGES[0])
    bigger = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)  # the same picture at twice the size
    box = max(detector.detect(rgb), key=lambda d: d.area).box
    box2 = max(detector.detect(bigger), key=lambda d: d.area).box
    assert iou(np.array(box) * 2, box2) > 0.8


@pytest.mark.parametrize("shape", [(300, 300, 3), (1, 1, 3), (40, 700, 3)])
def test_blank_images_give_no_face_and_a_centre_crop(detector, shape):
    config = FacesConfig(detector="yunet")
    rgb = np.full(shape, 128, dtype=np.uint8)
    record = locate_face(rgb, detector, config)
    assert record[0] == 0
    assert crop_face(rgb, record, config.margin, config.size).shape == (160, 160, 3)


def test_the_native_call_gives_the_rows_yuface_gives(dev_dataset, detector):
    """The detector calls libfacedetection itself (yuface's detect leaks its result buffer): same faces."""
    from yuface import yuface as native

    assert isinstance(detector._detect, FaceDetectCNN)
    images = [dev_image(dev_dataset, name)[:, :, ::-1] for name in DEV_IMAGES]
    images = [np.ascontiguousarray(bgr) for bgr in images] + [np.ascontiguousarray(bgr[::4, ::4]) for bgr in images]
    images += [np.full(shape, 128, dtype=np.uint8) for shape in [(300, 300, 3), (1, 1, 3), (40, 700, 3)]]
    for bgr in images:
        ours, theirs = detector._detect(bgr), native.detect(bgr)
        assert ours.dtype == theirs.dtype == np.int16 and ours.shape == theirs.shape, bgr.shape
        # Columns 0-14 are the face; the 16th is unused (uninitialised in yuface's buffer).
        assert np.array_equal(ours[:, :15], theirs[:, :15]), bgr.shape
    assert len(detector._detect(images[0])) >= 1


def test_each_detector_has_its_own_default_confidence():
    assert FacesConfig(detector="mtcnn").confidence_threshold == 0.9
    assert FacesConfig(detector="yunet").confidence_threshold == 0.5
    assert FacesConfig(detector="yunet", min_confidence=0.8).confidence_threshold == 0.8
    assert isinstance(make_detector(FacesConfig(detector="yunet", detect_side=200)), YuNetDetector)
