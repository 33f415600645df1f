"""The supervised ceiling: classifiers trained WITH the train labels, scored beside the clusters.

This is deliberately apart from the unsupervised path (reduce → cluster → map): nothing here
is used to fit, choose or map a clustering. It answers "how separable are real and fake in
these features at all?", so an unsupervised score can be read against what a linear
classifier on the same features reaches.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from facecluster.evaluate import score

SUPERVISED_MODELS = ("logistic_regression", "linear_svm")
#: At most this many train rows per label fit the ceiling (a seeded sample beyond): the ceiling's
#: memory stays bounded at any size (100k images held 1.7 GB fitting on all), and below it nothing changes.
MAX_TRAIN_PER_LABEL = 10_000


def bounded_rows(rows: np.ndarray, labels: np.ndarray, per_label: int = MAX_TRAIN_PER_LABEL,
                 seed: int = 0) -> np.ndarray:
    """``rows`` (a mask) with each label kept to at most ``per_label`` rows, drawn with ``seed``; in row order."""
    rng = np.random.default_rng(seed)
    kept = []
    for label in sorted({str(v) for v in labels[rows]}):
        members = np.flatnonzero(rows & (labels.astype(str) == label))
        kept.append(members if len(members) <= per_label else rng.choice(members, per_label, replace=False))
    return np.sort(np.concatenate(kept)) if kept else np.array([], dtype=int)


def make_classifier(model: str, seed: int = 0):
    """A standardise-then-classify pipeline: ``logistic_regression`` or ``linear_svm``.

    Raises
    ------
    ValueError
        For an unknown model name.
    """
    if model == "logistic_regression":
        classifier = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=seed)
    elif model == "linear_svm":
        classifier = LinearSVC(C=0.1, class_weight="balanced", max_iter=5000, random_state=seed)
    else:
        raise ValueError(f"unknown supervised model {model!r}; choose one of {list(SUPERVISED_MODELS)}")
    return make_pipeline(StandardScaler(), classifier)


def supervised_ceiling(features: np.ndarray, labels: np.ndarray, splits: np.ndarray, usable: np.ndarray | None = None,
                       models: tuple[str, ...] = SUPERVISED_MODELS, seed: int = 0) -> dict[str, dict[str, dict]]:
    """Train each model on the train rows with their labels (at most `MAX_TRAIN_PER_LABEL` per label); score every split.

    Parameters
    ----------
    features : ndarray (N, D)
        The feature vectors (before any reduction).
    labels, splits : ndarray (N,)
        True label and split of each row.
    usable : ndarray of bool (N,), optional
        Rows that have features; others are ignored.

    Returns
    -------
    dict
        ``{model: {split: scores}}`` with the same score keys as the clusters' (the
        "clusters" of ARI/NMI/purity are the predicted labels), or ``{}`` when train holds
        a single class.
    """
    labels = np.asarray(labels, dtype=object)
    splits = np.asarray(splits, dtype=object)
    usable = np.ones(len(labels), dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    train = usable & (splits == "train")
    if len(set(labels[train])) < 2:
        return {}
    fit_rows = bounded_rows(train, labels, seed=seed)
    out: dict[str, dict[str, dict]] = {}
    for model in models:
        classifier = make_classifier(model, seed)
        # One BLAS thread: small fits gain nothing from a pool, and oversubscribe a busy machine.
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(features[fit_rows], labels[fit_rows])
        out[model] = {}
        for split in [s for s in ("train", "valid", "test") if (usable & (splits == s)).any()]:
            rows = usable & (splits == split)
            predicted = classifier.predict(features[rows]).astype(object)
            out[model][split] = score(labels[rows], predicted, predicted.astype(str))
    return out
