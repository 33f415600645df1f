"""Face crops for montages and thumbnails, cached by content hash in the feature store's uint8 tables."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from facecluster import face_crops
from facecluster.face_crops import FaceToCut, crop_key, crop_table, cut_faces
from facecluster.faces import align_face, crop_face
from facecluster.images import decode_rgb
from facecluster.records import FaceRecord
from facecluster.report.thumbnails import face_thumbnail, face_thumbnails, jpeg_data_uri
from facecluster.store import FeatureStore
from tests.conftest import synthetic_face

BOX = FaceRecord(found=True, confidence=0.99, box=(20.0, 16.0, 56.0, 64.0))
LANDMARKS = np.array([[36, 40], [60, 38], [48, 52], [39, 66], [58, 65]], dtype=np.float32)


def images(tmp_path, n=3):
    rng = np.random.default_rng(0)
    faces = []
    for i in range(n):
        path = tmp_path / f"face{i}.jpg"
        synthetic_face(rng, ("real", "fake")[i % 2]).save(path, format="JPEG")
        faces.append(FaceToCut(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), BOX))
    return faces


@pytest.fixture
def counted(monkeypatch):
    """How many crops were cut from their images (the rest came from the store)."""
    calls = []
    real = face_crops.cut_one

    def counting(face, *args):
        calls.append(face.relpath)
        return real(face, *args)

    monkeypatch.setattr(face_crops, "cut_one", counting)
    return calls


def test_a_rerun_reads_the_same_pixels_from_the_store_without_decoding(tmp_path, counted):
    faces, store = images(tmp_path), FeatureStore(tmp_path / "cache")
    first = cut_faces(faces, 32, 0.2, "box", store=store)
    assert len(counted) == 3
    expected = crop_face(decode_rgb(faces[1].path.read_bytes()), BOX, 0.2, 32)
    np.testing.assert_array_equal(first[1], expected)
    again = cut_faces(faces, 32, 0.2, "box", store=FeatureStore(tmp_path / "cache"))
    assert len(counted) == 3  # nothing decoded the second time
    for a, b in zip(first, again):
        assert b.dtype == np.uint8 and b.shape == (32, 32, 3)
        np.testing.assert_array_equal(a, b)


def test_every_setting_that_changes_the_pixels_is_a_miss(tmp_path, counted):
    faces, store = images(tmp_path, 1), FeatureStore(tmp_path / "cache")
    cut_faces(faces, 32, 0.2, "box", store=store)
    cut_faces(faces, 48, 0.2, "box", store=store)  # size
    cut_faces(faces, 32, 0.3, "box", store=store)  # margin
    aligned = [faces[0]._replace(record=FaceRecord(found=True, confidence=0.99, box=BOX.box, landmarks=LANDMARKS))]
    got = cut_faces(aligned, 32, 0.2, "aligned", store=store)  # crop mode and landmarks
    np.testing.assert_array_equal(got[0], align_face(decode_rgb(faces[0].path.read_bytes()), aligned[0].record, 32, 0.2))
    moved = [faces[0]._replace(record=FaceRecord(found=True, confidence=0.99, box=(21.0, 16.0, 56.0, 64.0)))]
    cut_faces(moved, 32, 0.2, "box", store=store)  # another box for the same image
    assert len(counted) == 5
    assert crop_key(faces[0].sha256, BOX) != crop_key(faces[0].sha256, moved[0].record)
    assert crop_key("a" * 64, BOX) != crop_key("b" * 64, BOX)  # another image (its bytes changed)


def test_unreadable_and_unhashed_images_are_cut_but_never_cached(tmp_path, counted):
    faces, store = images(tmp_path, 2), FeatureStore(tmp_path / "cache")
    gone = faces[0]._replace(path=tmp_path / "gone.jpg")
    unhashed = faces[1]._replace(sha256=None)
    assert cut_faces([gone, unhashed], 32, 0.2, store=store)[0] is None
    assert cut_faces([gone, unhashed], 32, 0.2, store=store)[1] is not None
    assert len(counted) == 4
    assert len(crop_table(store, 32, 0.2, "box")) == 0


def test_without_a_store_nothing_is_written(tmp_path):
    faces = images(tmp_path, 1)
    assert cut_faces(faces, 32, 0.2)[0].shape == (32, 32, 3)
    assert not (tmp_path / "cache").exists()


def test_report_thumbnails_are_the_same_cached_or_not(tmp_path, counted):
    faces = images(tmp_path)
    entries = [{"path": f.relpath, "sha256": f.sha256, "face": {"confidence": 0.99, "box": list(BOX.box)}}
               for f in faces]
    wanted = np.array([True, False, True])
    store = FeatureStore(tmp_path / "cache")
    plain = face_thumbnails(tmp_path, entries, wanted, 0.2)
    cold = face_thumbnails(tmp_path, entries, wanted, 0.2, store=store)
    warm = face_thumbnails(tmp_path, entries, wanted, 0.2, store=store)
    assert plain == cold == warm and plain[1] is None
    assert len(counted) == 4  # 2 without the store, 2 the first time with it, none the second
    assert face_thumbnail(tmp_path, entries[0], 0.2, store=store) == plain[0]
    assert plain[0] == jpeg_data_uri(crop_face(decode_rgb(faces[0].path.read_bytes()), BOX, 0.2, 80))
