"""The unsupervised protocol, in the order that keeps it honest.

1. `fit_reducer` and `fit_clusterer` see feature vectors of the train rows and nothing
   else: they take no labels argument at all, so labels cannot reach them.
2. `train_mapping` names each cluster with the majority label of its *train* members.
3. `score_splits` scores every split with that fixed mapping (validation labels are read
   only to score).

`pipeline.run` and `sweep` both go through these functions, and the tests prove the
properties above (a spy estimator, permuted train labels, changed validation labels).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from facecluster.cluster import make_clusterer
from facecluster.config import ReduceConfig
from facecluster.evaluate import (
    NAMING_RULES,
    apply_mapping,
    bootstrap_intervals,
    majority_mapping,
    ranking_scores,
    score,
    silhouette,
)
from facecluster.features.combine import standardize_families
from facecluster.records import USABLE
from facecluster.reduce import make_reducer
from facecluster.stream import fit_transform_chunked

SPLIT_ORDER = ("train", "valid", "test")


FINITE_CHUNK_ROWS = 16384  # rows checked at once: N×D booleans for the whole matrix were 51 MB at 100k × 512


def finite_rows(features: np.ndarray, chunk_rows: int = FINITE_CHUNK_ROWS) -> np.ndarray:
    """Rows whose every feature is finite, checked a chunk of rows at a time (memory: the chunk, not N×D)."""
    out = np.empty(len(features), dtype=bool)
    for start in range(0, len(features), chunk_rows):
        out[start:start + chunk_rows] = np.isfinite(features[start:start + chunk_rows]).all(axis=1)
    return out


def usable_rows(status, features: np.ndarray) -> np.ndarray:
    """Rows that can be reduced and clustered: a usable status and every feature finite."""
    return np.array([s in USABLE for s in status], dtype=bool) & finite_rows(features)


def fit_reducer(features: np.ndarray, usable: np.ndarray, train: np.ndarray, config: ReduceConfig, seed: int = 0,
                blocks=None):
    """Fit the reducer on the train rows' features; return it and every usable row reduced (NaN elsewhere).

    PCA keeps at most as many components as there are train rows and features. With
    ``blocks`` (the column ranges of combined feature families, ``a+b``) each family is
    standardised first (fitted on train, as part of the reducer). With
    ``config.incremental`` every step is fitted chunk by chunk (`fit_transform_chunked`),
    never on a copy of the whole feature matrix. With ``config.typicality`` the train rows get
    `Typicality`'s cross-fitted values, not the final fit's in-sample ones.
    """
    n_components = config.n_components
    if n_components is not None:
        n_components = min(n_components, int(train.sum()), features.shape[1])
        config = config.model_copy(update={"n_components": n_components})
    reducer = make_reducer(config, seed=seed)
    if blocks:
        reducer = standardize_families(reducer, blocks)
    if config.incremental:
        return fit_transform_chunked(reducer, features, train, usable)
    if config.typicality is None:
        reducer.fit(features[train])
        return reducer, reduce_rows(reducer, features, usable)
    # Typicality scores the train rows cross-fitted (its fit_transform), the others with the final fit.
    reduced_train = reducer.fit_transform(features[train])
    reduced = reduce_rows(reducer, features, usable & ~train)
    reduced[train] = reduced_train
    return reducer, reduced


def reduce_rows(reducer, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``features[rows]`` through a fitted reducer; NaN in every other row."""
    width = reducer.transform(np.zeros((1, features.shape[1]), dtype=features.dtype)).shape[1]
    reduced = np.full((len(features), width), np.nan)
    if rows.any():
        reduced[rows] = reducer.transform(features[rows])
    return reduced


def fit_clusterer(reduced: np.ndarray, usable: np.ndarray, train: np.ndarray, algorithm: str,
                  params: dict | None = None, seed: int = 0):
    """Fit a registered clusterer on the train rows; return it and a cluster id per row (-1: unusable or noise).

    scikit-learn runs with one thread here. On 2 free cores its OpenMP and BLAS pools saved
    milliseconds at best (k-means on 100k × 32: 1.54 s threaded, 1.22 s single); with two other
    processes busy they cost up to 117× (k-means on 10k × 8: 4.79 s against 0.04 s).
    See benchmarks/cluster_threads.py.
    """
    with threadpool_limits(limits=1):
        model = make_clusterer(algorithm, params, seed=seed).fit(reduced[train])
        clusters = np.full(len(reduced), -1, dtype=int)
        clusters[usable] = model.predict(reduced[usable])
    if hasattr(model, "labels_"):
        clusters[train] = model.labels_  # the fit's own assignment of train (e.g. HDBSCAN noise)
    return model, clusters


def train_mapping(clusters: np.ndarray, labels: np.ndarray, train: np.ndarray,
                  manual: dict[str, str] | None = None, naming: str = "majority") -> tuple[dict[int, str], str, str]:
    """The cluster → label mapping from train only (or ``manual``), its source, and the default label.

    ``naming`` is a rule of `NAMING_RULES` ("majority", "enrichment"). The default (train's
    majority label) names clusters without train members.
    """
    default = majority_mapping(np.zeros(int(train.sum()), dtype=int), labels[train])[0]
    if manual is not None:
        return {int(k): v for k, v in manual.items()}, "manual", default
    return NAMING_RULES[naming](clusters[train], labels[train]), naming, default


def score_splits(labels: np.ndarray, splits: np.ndarray, usable: np.ndarray, clusters: np.ndarray,
                 mapping: dict[int, str], default: str, reduced: np.ndarray | None = None,
                 n_resamples: int = 1000, seed: int = 0, synthetic: np.ndarray | None = None) -> dict[str, dict]:
    """Scores of every split under a fixed mapping, with silhouette and bootstrap intervals.

    ``usable`` selects the scored rows (usable and labelled). With ``synthetic`` (the per-image
    synthetic score), each split also gets its ROC AUC and average precision ("fake" positive).
    """
    out = {}
    for split in [s for s in SPLIT_ORDER if (usable & (splits == s)).any()]:
        rows = usable & (splits == split)
        predicted = apply_mapping(clusters[rows], mapping, default)
        result = score(labels[rows], predicted, clusters[rows])
        if synthetic is not None:
            result.update(ranking_scores(labels[rows], synthetic[rows]))
        if reduced is not None:
            result["silhouette"] = silhouette(reduced[rows], clusters[rows], seed=seed)
        if n_resamples > 0:
            result["ci"] = bootstrap_intervals(labels[rows], predicted, clusters[rows], n_resamples, seed)
        out[split] = result
    return out


def cross_validated_mapping_score(clusters: np.ndarray, labels: np.ndarray, n_folds: int = 5,
                                  seed: int = 0, naming: str = "majority") -> float | None:
    """Balanced accuracy on train of the ``naming`` rule's mapping, each fold mapped by the other folds.

    The clusters are fitted once on all of train without labels; only the mapping is
    cross-validated. A clustering that wins by memorising (many tiny clusters) gets no
    credit, because a held-out image's cluster is named by other images. Train only.
    """
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels, dtype=object)
    counts = np.unique(labels, return_counts=True)[1]
    if len(counts) < 2:
        return None
    n_folds = int(min(n_folds, counts.min()))
    if n_folds < 2:
        return None
    predicted = np.empty(len(labels), dtype=object)
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    for fit_rows, held_rows in folds.split(clusters.reshape(-1, 1), labels.astype(str)):
        mapping = NAMING_RULES[naming](clusters[fit_rows], labels[fit_rows])
        default = majority_mapping(np.zeros(len(fit_rows), dtype=int), labels[fit_rows])[0]
        predicted[held_rows] = apply_mapping(clusters[held_rows], mapping, default)
    return float(balanced_accuracy_score(labels.astype(str), predicted.astype(str)))
