"""The packed face record: one layout, read and written only through records.py."""

import numpy as np
import pytest

from facecluster.faces import Detection, face_record
from facecluster.records import RECORD_SIZE, FaceRecord, empty_records, found


def test_a_detection_packs_and_unpacks_to_the_same_values():
    points = np.arange(10, dtype=np.float32).reshape(5, 2) + 40
    rgb = np.zeros((120, 90, 3), dtype=np.uint8)
    row = face_record(rgb, Detection((10.5, 20.25, 30.0, 40.0), 0.875, points))
    assert row.dtype == np.float32 and row.shape == (RECORD_SIZE,)
    face = FaceRecord.from_array(row)
    assert face.found and face.confidence == 0.875
    assert face.box == (10.5, 20.25, 30.0, 40.0) and face.corners == (10.5, 20.25, 40.5, 60.25)
    np.testing.assert_array_equal(face.landmarks, points)
    assert (face.image_width, face.image_height) == (90, 120)
    np.testing.assert_array_equal(face.to_array(), row)


def test_no_face_and_unread_images_are_not_found():
    row = face_record(np.zeros((8, 6, 3), dtype=np.uint8), None)
    face = FaceRecord.from_array(row)
    assert not face.found and face.box is None and face.landmarks is None
    assert (face.image_width, face.image_height) == (6, 8)
    np.testing.assert_array_equal(face.to_array(), row)  # NaN where nothing was recorded
    records = empty_records(3)
    records[1] = FaceRecord(found=True, box=(0, 0, 1, 1)).to_array()
    records[2] = row
    assert found(records).tolist() == [False, True, False]
    assert not FaceRecord.from_array(records[0]).found


def test_a_record_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="18"):
        FaceRecord.from_array(np.zeros(17, dtype=np.float32))
