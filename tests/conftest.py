"""Shared fixtures: small synthetic datasets made on the fly, and the real dev set when present."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecluster.report.browser import CHROMIUM

# The marks of a test that opens pages in headless Chromium: skipped, with the reason, without it or
# without playwright (the ``test`` extra). .ci/run installs Debian's chromium.
NEEDS_BROWSER = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: apt-get install chromium (.ci/run does)"),
    pytest.mark.skipif(find_spec("playwright") is None,
                       reason="playwright not installed: pip install 'facecluster[test]'"),
]

SHARED_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "faces-dev"


def synthetic_face(rng: np.random.Generator, label: str, size: int = 96) -> Image.Image:
    """A crude face-like picture: an ellipse with eyes, on a background; fakes are warmer and smoother."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.array([200, 120, 90]) if label == "fake" else np.array([90, 120, 200])
    image = np.ones((size, size, 3)) * base * (0.6 + 0.4 * yy[..., None])
    face = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5) / 0.38) ** 2 < 1
    image[face] = [225, 190, 160]
    for cx in (0.38, 0.62):
        eye = ((xx - cx) / 0.05) ** 2 + ((yy - 0.42) / 0.03) ** 2 < 1
        image[eye] = [30, 30, 30]
    noise = rng.normal(0, 4 if label == "fake" else 18, image.shape)
    return Image.fromarray(np.clip(image + noise, 0, 255).astype(np.uint8))


def make_dataset(root: Path, per_class: dict[str, dict[str, int]], seed: int = 0) -> Path:
    """Write ``{split: {label: n}}`` synthetic JPEGs under ``root/<split>/<label>/``."""
    rng = np.random.default_rng(seed)
    for split, labels in per_class.items():
        for label, n in labels.items():
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                synthetic_face(rng, label).save(folder / f"img_{k:03d}.jpg", quality=90)
    return root


def write_csv(root: Path, rows: list[list[str]]) -> Path:
    """Write ``root/data.csv`` (path,label,split) listing ``rows``; the CSV keeps their order."""
    import csv

    with open(root / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return root / "data.csv"


def csv_rows(root: Path) -> list[list[str]]:
    """[relative path, label, split] of every JPEG under ``root/<split>/<label>/``, sorted."""
    return sorted([p.relative_to(root).as_posix(), p.parent.name, p.parent.parent.name] for p in root.rglob("*.jpg"))


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """12 train and 6 valid images per label."""
    return make_dataset(tmp_path / "data", {"train": {"real": 12, "fake": 12}, "valid": {"real": 6, "fake": 6}})


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache; models converted once per test session."""
    shared = tmp_path_factory.getbasetemp() / "facecluster-cache"
    monkeypatch.setenv("FACECLUSTER_CACHE_DIR", str(shared))
    return shared


@pytest.fixture
def dev_dataset() -> Path:
    """The real dev set in ../shared/datasets, or a skip saying why."""
    if not (SHARED_DEV / "train").is_dir():
        pytest.skip(f"real dev images not found at {SHARED_DEV} (they sit in ../shared/datasets beside the clone)")
    return SHARED_DEV


class TinyColourFeatures:
    """A fast stand-in extractor for tests: per-channel mean and standard deviation of the crop."""

    name = "tiny"

    def __init__(self, config=None):
        self.config = config

    def cache_identity(self) -> dict:
        return {"extractor": self.name, "version": 1}

    def describe(self) -> dict:
        return {**self.cache_identity(), "checkpoint": None, "study_checkpoint": None}

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray:
        pixels = crops.reshape(len(crops), -1, 3).astype(np.float32) / 255
        return np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)


@pytest.fixture
def tiny_extractor(monkeypatch):
    """Register the ``tiny`` extractor (mean and spread of colour) for the duration of a test."""
    from facecluster import features

    monkeypatch.setitem(features.EXTRACTORS, "tiny", TinyColourFeatures)
    return "tiny"


def pytest_collection_modifyitems(items):
    """The two-node Ray tests first: a process that ran a local Ray instance and shut it down cannot
    join another cluster afterwards (Ray Data keeps the first session's state; its tasks then fail
    with OwnerDiedError), so they must join before any test starts a local one."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/integration/test_ray_two_nodes.py") else 1)


def image_rows(out: Path) -> list[dict]:
    """A run's image table (images.parquet, read by the one loader) as one dict per image, in the run's order."""
    from facecluster.image_table import load_image_table, table_entries

    return table_entries(load_image_table(out))


def four_blobs(n: int = 400, n_train: int = 300):
    """Features of four Gaussian blobs in 3-D whose label is one blob against the other three, so a
    GMM's seeds land in different optima and the ones that split that blob off score best.
    Returns features, labels and splits (the first ``n_train`` rows train, the rest valid)."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [4, 4, 0]], dtype=float)
    blob = rng.integers(4, size=n)
    features = (centres[blob] + rng.normal(scale=1.4, size=(n, 3))).astype(np.float32)
    labels = np.where(blob == 0, "fake", "real").astype(object)
    splits = np.where(np.arange(n) < n_train, "train", "valid").astype(object)
    return features, labels, splits


def truncated(n=400, dim=60, seed=0):
    """Rows of an anisotropic Gaussian; every other one drawn with its scale shrunk to 0.75 (as a generator's
    truncation pulls samples towards the average), labelled 1."""
    rng = np.random.default_rng(seed)
    scale = np.geomspace(5.0, 0.2, dim)
    fake = np.arange(n) % 2 == 1
    X = rng.normal(size=(n, dim)) * scale * np.where(fake, 0.75, 1.0)[:, None]
    return (X + 3.0).astype(np.float32), fake.astype(int)
