"""FaceNet takes crops of any side: other sizes are resized to its 160 input first."""

import cv2
import numpy as np

from facecluster.features.facenet import FaceNetFeatures


def test_larger_crops_are_embedded_as_their_160_px_resize():
    rng = np.random.default_rng(0)
    large = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    small = np.stack([cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA) for crop in large])
    facenet = FaceNetFeatures(batch_size=2)
    np.testing.assert_array_equal(facenet.transform(large, None), facenet.transform(small, None))
    assert facenet.transform(large[:0], None).shape == (0, 512)
