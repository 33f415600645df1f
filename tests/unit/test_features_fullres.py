"""Families that read the decoded image at its own resolution: the families, and the one mechanism that runs them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facecluster.config import FeaturesConfig
from facecluster.features import CUES, EXTRACTORS, make_extractor
from facecluster.features.image import image_reader, native_window, reads_crops, reads_image, transform_rows
from facecluster.features.spectrum_full import PEAK_FREQUENCIES
from tests.unit.test_features_handcrafted import batch, jpeg, photo, records

FULL = ["spectrum-full", "dct-full", "noise-full"]
PEAKS = 4 * len(PEAK_FREQUENCIES)


def vector(name: str, rgb: np.ndarray, record=None) -> np.ndarray:
    return make_extractor(FeaturesConfig(extractor=name)).image_features(rgb, record)


def rectangle(seed: int, height: int, width: int) -> np.ndarray:
    return cv2.resize(photo(seed, max(height, width)), (width, height), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", FULL)
def test_registered_deterministic_and_as_wide_for_every_image_size(name):
    extractor = make_extractor(FeaturesConfig(extractor=name))
    assert name in EXTRACTORS and CUES[name] in ("generator-artifact", "processing-history")
    assert extractor.reads_image and extractor.cache_identity()["reads"] == "image"
    image = photo(0, 256)
    first, second = extractor.image_features(image, records(1)[0]), extractor.image_features(image.copy())
    assert first.dtype == np.float32 and first.shape == (extractor.dim,) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)  # the face record does not enter a whole-image vector
    for height, width in ((300, 300), (97, 131), (480, 200)):
        other = extractor.image_features(rectangle(1, height, width))
        assert other.shape == (extractor.dim,) and np.isfinite(other).all()
    assert not np.allclose(first, extractor.image_features(photo(1, 256)))


@pytest.mark.parametrize("name", ["spectrum-full", "noise-full"])
def test_invariant_to_brightness_offset_and_horizontal_flip(name):
    image = photo(2, 256)  # 30…220: a shift of 20 clips nothing
    reference = vector(name, image)
    np.testing.assert_allclose(vector(name, image + np.uint8(20)), reference, atol=1e-4)
    np.testing.assert_allclose(vector(name, image[:, ::-1].copy()), reference, atol=1e-4)


def test_spectrum_full_sees_a_faint_periodic_pattern_at_its_frequency():
    image = photo(3, 256).astype(np.float64)
    columns = np.arange(256)
    pattern = np.where(columns % 4 < 2, 1.5, -1.5)[None, :, None]  # period 4 along x: 1/4 cycle per pixel
    plain, patterned = vector("spectrum-full", image.astype(np.uint8)), vector(
        "spectrum-full", np.clip(np.rint(image + pattern), 0, 255).astype(np.uint8))
    quarter_axis = -PEAKS + 2  # the residual's axis peak at 1/4
    assert patterned[quarter_axis] > plain[quarter_axis] + 1.5
    half_axis = -PEAKS
    assert abs(patterned[half_axis] - plain[half_axis]) < 1.5  # not at 1/2, where nothing was added


def test_spectrum_full_sees_the_jpeg_grid_and_a_4x_interpolation():
    native = photo(4, 256)
    magnitude_eighth = -2 * len(PEAK_FREQUENCIES) + 4  # |residual|'s axis peak at 1/8
    magnitude_quarter = -2 * len(PEAK_FREQUENCIES) + 2
    assert vector("spectrum-full", jpeg(native, 75))[magnitude_eighth] > vector("spectrum-full", native)[magnitude_eighth] + 1
    upsampled = cv2.resize(photo(4, 64), (256, 256), interpolation=cv2.INTER_LINEAR)
    assert vector("spectrum-full", upsampled)[magnitude_quarter] > vector("spectrum-full", native)[magnitude_quarter] + 1


def test_noise_full_is_the_noise_family_on_the_whole_image_mirror_averaged():
    from facecluster.features.noise import noise_statistics

    image = photo(5, 200)
    expected = (noise_statistics(image) + noise_statistics(image[:, ::-1])) / 2
    np.testing.assert_allclose(vector("noise-full", image), expected, rtol=1e-5, atol=1e-6)
    crop_family = make_extractor(FeaturesConfig(extractor="noise")).transform(image[None], records(1))[0]
    assert np.all(np.abs(crop_family - noise_statistics(image)) < 1e-4)  # the same 78 values as `noise`


def test_a_large_image_is_read_through_a_native_window_around_the_face():
    rows, cols = np.indices((3000, 2000))
    rgb = np.stack([rows % 256, rows // 256, cols // 8], axis=-1).astype(np.uint8)  # each pixel says where it is
    face = records(1)[0].copy()
    face[2:6] = [1500, 1000, 200, 200]  # box x, y, w, h: centre (1600, 1100)
    window = native_window(rgb, face, max_side=1024, align=8)
    assert window.shape == (1024, 1024, 3) and np.shares_memory(window, rgb)  # a view of the pixels, not resampled
    top = int(window[0, 0, 0]) + 256 * int(window[0, 0, 1])
    assert top == 1100 - 512 - (1100 - 512) % 8  # centred on the face, on the 8-px grid
    assert int(window[0, 0, 2]) * 8 == 2000 - 1024  # clipped at the right edge
    centred = native_window(rgb, None, max_side=1024)  # no face: the image's centre
    assert int(centred[0, 0, 0]) + 256 * int(centred[0, 0, 1]) == 1500 - 512
    assert native_window(rgb[:300, :300], face).shape == (300, 300, 3)


def test_an_image_family_refuses_crops_alone_with_a_clear_message():
    extractor = make_extractor(FeaturesConfig(extractor="spectrum-full"))
    with pytest.raises(ValueError, match="reads the decoded image.*image_features"):
        extractor.transform(batch(2), records(2))
    with pytest.raises(ValueError, match=r"uint8 RGB of shape \[H, W, 3\]"):
        extractor.image_features(photo(0).astype(np.float32))


def test_a_combination_takes_image_columns_from_the_image_vectors_and_the_rest_from_the_crops():
    extractor = make_extractor(FeaturesConfig(extractor="spectrum+noise-full+geometry+spectrum-full"))
    assert reads_image(extractor) and reads_crops(extractor)
    assert not reads_image(make_extractor(FeaturesConfig(extractor="spectrum+dct")))
    assert not reads_crops(make_extractor(FeaturesConfig(extractor="noise-full+spectrum-full")))
    images = [photo(seed, 256) for seed in range(3)]
    crops = np.stack([cv2.resize(image, (160, 160), interpolation=cv2.INTER_AREA) for image in images])
    reader = image_reader(extractor)
    assert [f.name for f in reader.families] == ["noise-full", "spectrum-full"]
    image_vectors = np.stack([reader.image_features(image) for image in images])
    combined = transform_rows(extractor, crops, records(3), image_vectors)
    blocks = {name: (start, stop) for name, start, stop in extractor.blocks}
    for name, expected in [("spectrum", make_extractor(FeaturesConfig(extractor="spectrum")).transform(crops, records(3))),
                           ("noise-full", np.stack([vector("noise-full", image) for image in images])),
                           ("spectrum-full", np.stack([vector("spectrum-full", image) for image in images]))]:
        start, stop = blocks[name]
        np.testing.assert_array_equal(combined[:, start:stop], expected)
    assert image_reader(make_extractor(FeaturesConfig(extractor="spectrum+dct"))) is None
    with pytest.raises(ValueError, match="reads the decoded image"):
        extractor.transform(crops, records(3))


# --- in the engines ----------------------------------------------------------------------------------


def test_local_engine_computes_image_families_on_the_decoded_file_in_its_workers(tiny_dataset, tmp_path):
    from facecluster.config import DatasetConfig, FacesConfig
    from facecluster.dataset import discover
    from facecluster.engines.local import LocalEngine
    from facecluster.images import decode_rgb, read_bytes
    from facecluster.store import FeatureStore

    (tiny_dataset / "train" / "real" / "img_000.jpg").write_bytes(b"not a jpeg")
    samples = discover(tiny_dataset, DatasetConfig()).samples
    faces = FacesConfig(detector="none")  # no face anywhere: the whole-image vectors must still be there
    name = "spectrum+spectrum-full"
    extract = lambda store, workers, crop="box": LocalEngine(workers=workers, chunk_size=8).extract(  # noqa: E731
        samples, faces.model_copy(update={"crop": crop}), make_extractor(FeaturesConfig(extractor=name)),
        FeatureStore(store), progress=False)
    in_workers, inline = extract(tmp_path / "a", 2), extract(tmp_path / "b", 0)
    np.testing.assert_array_equal(in_workers.features, inline.features)
    bad = [s.relpath for s in samples].index("train/real/img_000.jpg")
    assert in_workers.status[bad] == "not_an_image" and np.isnan(in_workers.features[bad]).all()
    assert set(in_workers.status) - {"not_an_image"} == {"no_face"}
    spectrum_full = make_extractor(FeaturesConfig(extractor="spectrum-full"))
    for i in (1, 20):
        rgb = decode_rgb(read_bytes(samples[i].path, samples[i].relpath))  # 96 px, not the 160-px crop
        np.testing.assert_allclose(in_workers.features[i, 80:], spectrum_full.image_features(rgb), atol=1e-6)
    assert in_workers.computed["features"] == len(samples) - 1

    again = extract(tmp_path / "a", 2)
    assert again.computed == {"faces": 0, "features": 0}
    assert extract(tmp_path / "a", 0, crop="aligned").computed["features"] == len(samples) - 1  # crops changed
    image_only = LocalEngine(workers=0).extract(samples, faces, spectrum_full, FeatureStore(tmp_path / "c"),
                                                progress=False)
    aligned = LocalEngine(workers=0).extract(samples, faces.model_copy(update={"crop": "aligned"}), spectrum_full,
                                             FeatureStore(tmp_path / "c"), progress=False)
    assert aligned.computed["features"] == 0  # the crop does not enter a whole-image family: shared
    np.testing.assert_array_equal(aligned.features, image_only.features)
    np.testing.assert_array_equal(image_only.features, in_workers.features[:, 80:])


def test_a_run_with_an_image_family_and_a_crop_family(tiny_dataset, tmp_path):
    from facecluster.pipeline import run
    from facecluster.resolve import build_config
    from facecluster.store import FeatureStore

    config = build_config(None, {"faces": {"detector": "none"}, "features": {"extractor": "noise-full+geometry"},
                                 "methods": {"kmeans": {"algorithm": "kmeans", "params": {"n_clusters": 2}}}})
    results = run(tiny_dataset, config, tmp_path / "out", store=FeatureStore(tmp_path / "store"), progress=False)
    assert results["features"]["dim"] == 78 + 15
    assert [b["family"] for b in results["features"]["blocks"]] == ["noise-full", "geometry"]
    from tests.conftest import image_rows

    assert all(image["status"] == "no_face" and image["clusters"]["kmeans"] is not None
               for image in image_rows(tmp_path / "out"))
