"""The eye-physiology family: shapes, determinism, flip invariance, model checksums, faces without eyes."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facecluster.config import FeaturesConfig
from facecluster.errors import ModelFileError
from facecluster.features import CUES, EXTRACTORS, make_extractor
from facecluster.features.eye_models import EyeLandmarker, model_folder
from facecluster.features.eyes import COLUMNS, NO_READING_SCORE, EyeFeatures

FFHQ = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "faces-ffhq"


def drawn_face(size: int = 256, irises=((70, 110, 60), (70, 110, 60)), highlights=(True, True)) -> np.ndarray:
    """A drawn frontal face: skin, two open eyes (sclera, iris, pupil, optional highlight), brows, nose, mouth."""
    img = np.full((size, size, 3), (200, 200, 205), np.uint8)
    s = size / 256

    def at(x, y):
        return int(x * s), int(y * s)

    cv2.ellipse(img, at(128, 135), at(80, 105), 0, 0, 360, (225, 185, 160), -1)
    for cx, colour, highlight in zip((95, 161), irises, highlights):
        centre = at(cx, 118)
        cv2.ellipse(img, centre, at(18, 8), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(img, centre, int(7 * s), colour, -1)
        cv2.circle(img, centre, int(3 * s), (15, 15, 15), -1)
        if highlight:
            cv2.circle(img, (centre[0] + int(2 * s), centre[1] - int(2 * s)), max(1, int(1.5 * s)), (255, 255, 255), -1)
        cv2.ellipse(img, at(cx, 104), at(20, 5), 0, 180, 360, (90, 60, 40), -1)
    cv2.ellipse(img, at(128, 160), at(8, 18), 0, 0, 360, (205, 160, 140), -1)
    cv2.ellipse(img, at(128, 200), at(28, 8), 0, 0, 360, (170, 80, 80), -1)
    return img


@pytest.fixture(scope="module")
def eyes() -> EyeFeatures:
    return EyeFeatures()


def column(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, COLUMNS.index(name)]


def test_registered_as_physiological():
    assert CUES["eyes"] == "physiological"
    extractor = make_extractor(FeaturesConfig(extractor="eyes"))
    assert isinstance(extractor, EyeFeatures) and extractor.dim == len(COLUMNS) == 10
    assert "eyes" in EXTRACTORS and extractor.describe()["columns"] == list(COLUMNS)


def test_shapes_finite_and_deterministic(eyes):
    rng = np.random.default_rng(0)
    crops = np.stack([drawn_face(), np.full((256, 256, 3), 128, np.uint8),
                      rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)])
    first = eyes.transform(crops, None)
    assert first.shape == (3, 10) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, EyeFeatures().transform(crops, None))
    assert eyes.transform(crops[:0], None).shape == (0, 10)


def test_drawn_face_is_read(eyes):
    features = eyes.transform(drawn_face()[None], None)
    assert column(features, "eyes_read")[0] == 1.0 and column(features, "highlights_found")[0] == 1.0
    assert column(features, "highlight_iou")[0] > 0.3  # the same highlight, drawn at the same place
    assert column(features, "iris_radius_ratio")[0] > 0.9


@pytest.mark.parametrize("face", [
    drawn_face(),
    drawn_face(irises=((70, 110, 60), (40, 60, 150))),  # eyes of two colours
    drawn_face(highlights=(True, False)),  # a highlight in one eye only
    drawn_face(size=160),
], ids=["symmetric", "two-colours", "one-highlight", "160px"])
def test_unchanged_by_a_horizontal_flip(eyes, face):
    features = eyes.transform(np.stack([face, face[:, ::-1]]), None)
    assert column(features, "eyes_read")[0] == 1.0
    np.testing.assert_array_equal(features[0], features[1])


def test_sees_irises_of_two_colours_and_a_missing_highlight(eyes):
    same, two_colours, one_highlight = eyes.transform(np.stack([
        drawn_face(), drawn_face(irises=((70, 110, 60), (40, 60, 150))), drawn_face(highlights=(True, False))]), None)
    colour = COLUMNS.index("iris_colour_difference")
    assert two_colours[colour] > same[colour] + 10
    assert one_highlight[COLUMNS.index("highlights_found")] == 0.5
    assert one_highlight[COLUMNS.index("highlight_iou")] == 0.0
    score = COLUMNS.index("physical_consistency")
    assert same[score] > two_colours[score] and same[score] > one_highlight[score]


def test_crop_without_eyes_is_flagged_with_defined_values(eyes):
    rng = np.random.default_rng(1)
    crops = np.stack([np.full((256, 256, 3), 128, np.uint8), rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)])
    features = eyes.transform(crops, None)
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(column(features, "eyes_read"), [0.0, 0.0])
    np.testing.assert_array_equal(column(features, "physical_consistency"), [NO_READING_SCORE] * 2)
    assert (column(features, "face_probability") < 0.5).all()


@pytest.fixture
def model_copy(tmp_path) -> Path:
    for path in model_folder().glob("*.tflite"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_a_changed_model_file_is_refused_naming_it(model_copy):
    EyeLandmarker(folder=model_copy)  # the unchanged copies load
    target = model_copy / "iris_landmark.tflite"
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as error:
        EyeLandmarker(folder=model_copy)
    message = str(error.value)
    assert str(target) in message and "SHA-256" in message and "reinstall" in message and "\n" not in message


def test_a_missing_model_file_is_refused_naming_it(model_copy):
    (model_copy / "face_landmark.tflite").unlink()
    with pytest.raises(ModelFileError, match="face_landmark.tflite: model file missing"):
        EyeLandmarker(folder=model_copy)


@pytest.mark.integration
def test_real_faces_unchanged_by_a_flip(eyes):
    files = sorted((FFHQ / "train" / "real").glob("*.jpg"))[:3] + sorted((FFHQ / "train" / "fake").glob("*.jpg"))[:3]
    if not files:
        pytest.skip(f"{FFHQ} is absent: the faces-ffhq dataset is not on this machine")
    faces = np.stack([cv2.imread(str(path))[:, :, ::-1] for path in files])
    direct = eyes.transform(faces, None)
    flipped = eyes.transform(np.ascontiguousarray(faces[:, :, ::-1]), None)
    assert column(direct, "eyes_read").sum() >= 4  # most FFHQ faces have readable eyes
    np.testing.assert_array_equal(direct, flipped)
