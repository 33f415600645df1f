"""Processing-history probes: they fire on synthetic re-encodes and resizes, not on clean images; the audit's verdict."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from facecluster.audit import audit
from facecluster.dataset import discover
from facecluster.history import DETECTED_STRENGTH, probe_file, probe_image, resampling_factors
from facecluster.history_checks import FOLLOW_AUC, follows_history, probe_label_checks
from facecluster.resolve import build_config


def texture(seed: int, size: int = 256) -> Image.Image:
    """Smooth coloured noise: content without any periodic trace."""
    rng = np.random.default_rng(seed)
    base = np.stack([gaussian_filter(rng.normal(0, 1, (size, size)), s) for s in (2, 2.5, 3)], -1)
    base = 128 + 60 * base / base.std() + rng.normal(0, 3, (size, size, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def saved(image: Image.Image, fmt: str = "JPEG", **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    buffer.seek(0)
    return Image.open(buffer)


def re_encoded(seed: int) -> Image.Image:
    """A 192-px JPEG (quality 50) enlarged to 256 px (W₀/W = 0.75) and saved again (quality 90)."""
    first = saved(texture(seed, 192), quality=50).convert("RGB")
    return saved(first.resize((256, 256), Image.Resampling.BICUBIC), quality=90)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_grid_probe_finds_an_earlier_jpeg_grid_after_resizing(seed):
    probes = probe_image(re_encoded(seed))
    assert probes["earlier_grid_strength"] >= DETECTED_STRENGTH
    assert probes["earlier_grid_period"] == pytest.approx(8 / 0.75, abs=0.1)
    assert probes["earlier_grid_scale"] == pytest.approx(4 / 3, abs=0.02)
    assert probes["jpeg_quality"] == 90


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_clean_image_has_no_earlier_grid_and_no_resampling(seed):
    probes = probe_image(saved(texture(seed), quality=90))
    assert probes["earlier_grid_strength"] < DETECTED_STRENGTH
    assert probes["resampling_strength"] < DETECTED_STRENGTH
    assert probes["double_jpeg_strength"] < 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_the_resampling_probe_estimates_a_known_resize(seed):
    # 205 → 256 px is a resize by 1.249: interpolation repeats at |1/1.249 − 1| = 0.199 cycles/px
    probes = probe_image(saved(texture(seed, 205).resize((256, 256), Image.Resampling.BILINEAR), "PNG"))
    assert probes["resampling_strength"] >= DETECTED_STRENGTH
    assert probes["resampling_frequency"] == pytest.approx(1 - 205 / 256, abs=0.004)
    assert min(abs(f - 256 / 205) for f in resampling_factors(probes["resampling_frequency"])) < 0.01
    # a resize alone is no JPEG grid, and a PNG has no last JPEG
    assert probes["earlier_grid_strength"] < DETECTED_STRENGTH
    assert np.isnan(probes["jpeg_quality"]) and np.isnan(probes["double_jpeg_strength"])


def test_resampling_factors_are_the_ones_with_that_frequency():
    factors = resampling_factors(0.25)
    assert 1.3333 in factors and 0.8 in factors
    assert all(abs(1 / f - round(1 / f) - 0.25) < 1e-3 or abs(round(1 / f) - 1 / f - 0.25) < 1e-3 for f in factors)
    assert resampling_factors(float("nan")) == []


def test_double_compression_shows_only_when_the_first_quantiser_was_coarser():
    single = probe_image(saved(texture(3), quality=90))["double_jpeg_strength"]
    double = probe_image(saved(saved(texture(3), quality=50).convert("RGB"), quality=90))["double_jpeg_strength"]
    assert double > 0.5 > 0.1 > single


def test_probes_are_deterministic_and_a_bad_file_gets_one_line(tmp_path):
    path = tmp_path / "a.jpg"
    re_encoded(4).save(path, quality=85)
    first, error = probe_file(path, "a.jpg")
    again, _ = probe_file(path, "a.jpg")
    assert error is None and json.dumps(first) == json.dumps(again)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    probes, error = probe_file(tmp_path / "bad.jpg", "bad.jpg")
    assert probes is None and "bad.jpg" in error and len(error.splitlines()) == 1


def _synthetic_probes(n=200, seed=0):
    rng = np.random.default_rng(seed)
    history = rng.random(n) < 0.5  # which files were re-encoded: independent of the labels
    labels = np.where(rng.random(n) < 0.5, "fake", "real").astype(object)
    splits = np.where(np.arange(n) < 140, "train", "valid").astype(object)
    probes = {name: rng.normal(0, 1, n) for name in ("jpeg_quality", "jpeg_grid_strength", "resampling_strength",
                                                     "double_jpeg_strength")}
    probes["earlier_grid_strength"] = np.where(history, 2.0, 0.5) + rng.normal(0, 0.3, n)
    return probes, labels, splits, history


def test_the_verdict_fires_when_clusters_follow_a_probe():
    probes, labels, splits, history = _synthetic_probes()
    clusters = history.astype(int)  # cluster 1 = the re-encoded files
    named = np.where(clusters == 1, "fake", "real").astype(object)
    result = follows_history("kmeans", clusters, named, probes, labels, splits, {})
    assert result["flag"] and result["followed_probe"] == "earlier_grid_strength"
    assert result["auc"] >= 0.95 and result["within_label_auc"] >= 0.95
    assert "these clusters follow processing history (earlier-JPEG-grid probe AUC" in result["message"]
    assert result["probes"]["earlier_grid_strength"]["cluster_auc"]["valid"] >= 0.85


def test_the_verdict_stays_quiet_when_clusters_do_not_follow_any_probe():
    probes, labels, splits, _ = _synthetic_probes()
    clusters = (labels == "fake").astype(int)  # clusters follow the labels, which the probes do not
    named = np.where(clusters == 1, "fake", "real").astype(object)
    result = follows_history("kmeans", clusters, named, probes, labels, splits, {})
    assert not result["flag"] and result["auc"] < FOLLOW_AUC
    assert "do not follow processing history" in result["message"]
    assert not any(c["flag"] for c in probe_label_checks(probes, labels, splits))


def test_the_audit_flags_history_that_differs_by_label_and_clusters_that_follow_it(tmp_path):
    for split, count in (("train", 14), ("valid", 6)):
        for label in ("real", "fake"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for k in range(count):
                seed = 1000 * (split == "valid") + 100 * (label == "fake") + k
                image = re_encoded(seed) if label == "real" else saved(texture(seed), quality=90)
                image.convert("RGB").save(folder / f"img_{k:02d}.jpg", quality=90)
    dataset = discover(tmp_path)
    fake = np.array([s.label == "fake" for s in dataset.samples])
    clusterings = {"by-label": {"clusters": fake.astype(int),
                                "named": np.where(fake, "fake", "real").astype(object)}}
    result = audit(dataset, build_config(), clusterings=clusterings)
    flagged = {c["check"] for c in result["checks"] if c["flag"]}
    assert {"history:earlier_grid_strength", "history:clusters:by-label"} <= flagged
    follow = result["history"]["clusterings"][0]
    # enlarged files carry both traces: the grid and the resampling
    assert follow["followed_probe"] in ("earlier_grid_strength", "resampling_strength")
    assert "confounded" in follow["message"]
    assert result["history"]["n_probed"] == 40
    json.dumps(result)  # audit.json and results.json hold it


def test_a_probe_that_differs_by_label_is_flagged_with_its_auc_per_split_in_one_direction():
    probes, labels, splits, _ = _synthetic_probes()
    probes["double_jpeg_strength"] = np.where(labels == "real", 0.4, 0.0) + np.random.default_rng(1).normal(0, 0.1, 200)
    check = {c["probe"]: c for c in probe_label_checks(probes, labels, splits)}["double_jpeg_strength"]
    assert check["flag"] and check["direction"] == "lower" and check["auc"] > 0.95
    assert all(value > 0.95 for value in check["auc_by_split"].values())
    assert check["distribution"]["train"]["real"]["median"] > check["distribution"]["train"]["fake"]["median"]


def test_probes_are_cached_by_content_hash_and_a_rerun_reads_no_file_twice(tmp_path, monkeypatch):
    from facecluster import history_checks
    from facecluster.store import FeatureStore
    from tests.conftest import make_dataset

    dataset = discover(make_dataset(tmp_path / "data", {"train": {"real": 3, "fake": 3}}))
    rows = np.arange(len(dataset.samples))
    store = FeatureStore(tmp_path / "cache")
    calls = []

    def counting(path, name):
        calls.append(name)
        return probe_file(path, name)

    monkeypatch.setattr(history_checks, "probe_file", counting)
    first, _ = history_checks.read_probes(dataset, rows, store)
    assert len(calls) == 6
    again, _ = history_checks.read_probes(dataset, rows, store)
    assert len(calls) == 6  # every probe from the store
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])  # the same values, cold or warm
