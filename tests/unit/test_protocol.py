"""Proofs that the unsupervised protocol keeps labels away from what it fits.

Labels may be read in two places only: the cluster → label mapping (train labels) and the
scores. These tests run the real pipeline (`facecluster.run`) on a CSV dataset, so the row
order is fixed while the labels change.
"""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_info

from facecluster import cluster, protocol
from facecluster.engines.local import LocalEngine
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.store import FeatureStore
from tests.conftest import csv_rows, image_rows, make_dataset, write_csv

fit_calls: list[dict] = []


class SpyClusterer(KMeans):
    """KMeans that records what ``fit`` was given."""

    def fit(self, X, y=None, sample_weight=None):
        fit_calls.append({"X": np.array(X, copy=True), "y": y,
                          "threads": [pool["num_threads"] for pool in threadpool_info()]})
        return super().fit(X, sample_weight=sample_weight)


class SpyReducer:
    """Wraps the real reducer and records what ``fit`` was given."""

    def __init__(self, inner):
        self.inner = inner

    def fit(self, X, y=None):
        fit_calls.append({"X": np.array(X, copy=True), "y": y, "reducer": True})
        self.inner.fit(X)
        return self

    def transform(self, X):
        return self.inner.transform(X)

    @property
    def steps(self):
        return self.inner.steps

    @property
    def named_steps(self):
        return self.inner.named_steps


@pytest.fixture
def spies(monkeypatch):
    fit_calls.clear()
    monkeypatch.setitem(cluster.CLUSTERERS, "spy", lambda random_state=0, **p: SpyClusterer(random_state=random_state, n_init=3, **p))
    real_make_reducer = protocol.make_reducer
    monkeypatch.setattr(protocol, "make_reducer", lambda config, seed=0: SpyReducer(real_make_reducer(config, seed)))
    return fit_calls


@pytest.fixture
def csv_data(tmp_path):
    root = make_dataset(tmp_path / "images", {"train": {"real": 14, "fake": 14}, "valid": {"real": 8, "fake": 8}})
    return root, csv_rows(root)


def _run(root, rows, out, tiny_extractor, cache):
    config = build_config("study", {
        "faces": {"detector": "none"},
        "features": {"extractor": tiny_extractor},
        "reduce": {"n_components": 3, "standardize": True},
        "evaluation": {"bootstrap_resamples": 50},
        "audit": {"enabled": False},
        "methods": {"spy": {"algorithm": "spy", "params": {"n_clusters": 4}},
                    "birch": {"algorithm": "birch", "params": {"n_clusters": 4, "threshold": 0.1}},
                    "gmm": {"algorithm": "gmm", "params": {"n_clusters": "auto", "k_range": [2, 5]}}},
    })
    results = run(write_csv(root, rows), config, out, store=FeatureStore(cache), engine=LocalEngine(workers=0),
                  progress=False)
    return {**results, "images": image_rows(out)}  # the image table's rows, where the tests below look


def _clusters(results):
    return {name: [image["clusters"][name] for image in results["images"]] for name in results["methods"]}


def _predictions(results, name):
    mapping = results["methods"][name]["mapping"]
    return [mapping.get(str(image["clusters"][name])) for image in results["images"]]


def test_fit_gets_train_features_only_and_never_labels(spies, csv_data, tiny_extractor, tmp_path):
    root, rows = csv_data
    results = _run(root, rows, tmp_path / "run", tiny_extractor, tmp_path / "cache")
    reducer_calls = [c for c in spies if c.get("reducer")]
    cluster_calls = [c for c in spies if not c.get("reducer")]
    assert len(reducer_calls) == 1 and len(cluster_calls) == 1
    assert all(call["y"] is None for call in spies)
    n_train = sum(1 for row in rows if row[2] == "train")
    assert reducer_calls[0]["X"].shape == (n_train, 6)  # the tiny extractor's 6 features, train rows only
    assert cluster_calls[0]["X"].shape == (n_train, 3)  # reduced train rows only
    assert results["methods"]["spy"]["mapping_source"] == "majority"


def test_permuted_train_labels_give_identical_clusters(spies, csv_data, tiny_extractor, tmp_path):
    root, rows = csv_data
    first = _run(root, rows, tmp_path / "a", tiny_extractor, tmp_path / "cache")
    rng = np.random.default_rng(0)
    train = [i for i, row in enumerate(rows) if row[2] == "train"]
    shuffled = [list(row) for row in rows]
    for i, label in zip(train, rng.permutation([rows[i][1] for i in train])):
        shuffled[i][1] = label
    assert [r[1] for r in shuffled] != [r[1] for r in rows]
    second = _run(root, shuffled, tmp_path / "b", tiny_extractor, tmp_path / "cache")
    assert _clusters(first) == _clusters(second)
    assert first["methods"]["spy"]["scores"] != second["methods"]["spy"]["scores"]  # the labels did change


def test_valid_labels_never_change_the_mapping_or_valid_predictions(spies, csv_data, tiny_extractor, tmp_path):
    root, rows = csv_data
    first = _run(root, rows, tmp_path / "a", tiny_extractor, tmp_path / "cache")
    flipped = [[p, {"real": "fake", "fake": "real"}[label] if split == "valid" else label, split] for p, label, split in rows]
    second = _run(root, flipped, tmp_path / "b", tiny_extractor, tmp_path / "cache")
    for name in first["methods"]:
        assert first["methods"][name]["mapping"] == second["methods"][name]["mapping"]
        assert _predictions(first, name) == _predictions(second, name)
        assert first["methods"][name]["scores"]["train"]["accuracy"] == second["methods"][name]["scores"]["train"]["accuracy"]
        valid_before = first["methods"][name]["scores"]["valid"]["accuracy"]
        assert second["methods"][name]["scores"]["valid"]["accuracy"] == pytest.approx(1 - valid_before)


def test_results_carry_intervals_silhouette_purity_and_the_supervised_ceiling(csv_data, tiny_extractor, tmp_path, spies):
    root, rows = csv_data
    results = _run(root, rows, tmp_path / "run", tiny_extractor, tmp_path / "cache")
    for method in results["methods"].values():
        valid = method["scores"]["valid"]
        assert {"purity", "silhouette", "ci"} <= set(valid)
        low, high = valid["ci"]["balanced_accuracy"]
        assert low <= valid["balanced_accuracy"] <= high
    assert results["methods"]["gmm"]["auto_n_clusters"]["criterion"] == "bic"
    assert set(results["methods"]["gmm"]["auto_n_clusters"]["scores"]) == {"2", "3", "4", "5"}
    assert set(results["supervised"]) == {"logistic_regression", "linear_svm"}
    # The synthetic fakes are warmer: a linear classifier on colour statistics separates them.
    assert results["supervised"]["logistic_regression"]["valid"]["balanced_accuracy"] > 0.9


def test_cross_validated_mapping_gives_no_credit_for_memorising():
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array(["real", "fake"], dtype=object), 200)
    one_per_image = np.arange(200)
    assert protocol.cross_validated_mapping_score(one_per_image, labels) == pytest.approx(0.5)
    informative = np.where(labels == "fake", 1, 0)
    assert protocol.cross_validated_mapping_score(informative, labels) == 1.0


def test_clusterers_fit_with_one_thread(spies):
    # Thread pools oversubscribe a shared machine (benchmarks/cluster_threads.py): every pool is capped at 1.
    X = np.random.default_rng(0).normal(size=(60, 2))
    rows = np.ones(60, dtype=bool)
    protocol.fit_clusterer(X, rows, rows, "spy", {"n_clusters": 2})
    assert spies[-1]["threads"] and set(spies[-1]["threads"]) == {1}


def test_finite_rows_checks_chunk_by_chunk_with_the_same_answer_as_the_whole_matrix():
    from facecluster.protocol import finite_rows, usable_rows

    rng = np.random.default_rng(0)
    features = rng.normal(size=(1000, 7)).astype(np.float32)
    features[[0, 13, 999], [3, 0, 6]] = [np.nan, np.inf, -np.inf]
    expected = np.isfinite(features).all(axis=1)
    for chunk_rows in (1, 13, 1000, 5000):
        assert (finite_rows(features, chunk_rows=chunk_rows) == expected).all()
    assert finite_rows(np.empty((0, 7), dtype=np.float32)).shape == (0,)
    status = ["ok"] * 999 + ["unreadable"]
    assert (usable_rows(status, features) == expected & (np.arange(1000) < 999)).all()
