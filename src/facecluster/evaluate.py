"""Turn clusters into real/fake predictions and score them against the truth.

The mapping from cluster to label is learnt from train only (each cluster takes the
majority label of its train members) or given by hand, as the study did by eye. A cluster
that has no train members, or that the user did not name, takes train's majority label.

The naming rules accept a partial label vector: ``None`` marks a row nobody labelled, which
is not used (`facecluster.labelling` names clusters from a few chosen labels this way). A
cluster without a labelled member gets no name, so it takes the default label.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    balanced_accuracy_score,
    confusion_matrix,
    normalized_mutual_info_score,
)

from facecluster.config import LABELS


def labelled_rows(labels: np.ndarray) -> np.ndarray:
    """Rows that carry a label (``None`` marks an unlabelled row)."""
    return np.array([label is not None for label in np.asarray(labels, dtype=object)], dtype=bool)


def _labelled_only(clusters: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=object)
    known = labelled_rows(labels)
    if not known.any():
        raise ValueError("no labelled rows to name the clusters from (every label is None)")
    return np.asarray(clusters)[known], labels[known]


def majority_mapping(clusters: np.ndarray, labels: np.ndarray) -> dict[int, str]:
    """Each cluster's majority label among its labelled members (ties go to the overall majority)."""
    clusters, labels = _labelled_only(clusters, labels)
    overall = Counter(labels.tolist()).most_common(1)[0][0]
    mapping = {}
    for cluster in np.unique(clusters):
        counts = Counter(labels[clusters == cluster].tolist())
        best = max(counts.values())
        tied = [label for label, n in counts.items() if n == best]
        mapping[int(cluster)] = overall if overall in tied else sorted(tied)[0]
    return mapping


def enrichment_mapping(clusters: np.ndarray, labels: np.ndarray) -> dict[int, str]:
    """Name a cluster "fake" when its share of fakes exceeds the share among all ``labels``, else "real".

    This is the naming that maximises balanced accuracy on ``labels``: balanced accuracy is
    a sum over clusters, a cluster named fake adding f_c/F − r_c/R (its fakes over all fakes
    minus its reals over all reals), which is positive exactly when f_c/n_c > F/N. The
    majority rule instead needs f_c/n_c > 1/2, so with few fakes every cluster is "real".
    A cluster exactly at the prior takes the overall majority label. Only labelled rows count,
    the prior included.
    """
    clusters, labels = _labelled_only(clusters, labels)
    overall = Counter(labels.tolist()).most_common(1)[0][0]
    prior = float(np.mean(labels == "fake"))
    mapping = {}
    for cluster in np.unique(clusters):
        share = float(np.mean(labels[clusters == cluster] == "fake"))
        mapping[int(cluster)] = "fake" if share > prior else ("real" if share < prior else overall)
    return mapping


NAMING_RULES = {"majority": majority_mapping, "enrichment": enrichment_mapping}


def apply_mapping(clusters: np.ndarray, mapping: dict[int, str], default: str) -> np.ndarray:
    """Predicted labels for cluster ids; unknown ids get ``default``."""
    return np.array([mapping.get(int(c), default) for c in clusters], dtype=object)


def score(truth: np.ndarray, predicted: np.ndarray, clusters: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, ARI, NMI, purity and the confusion matrix (rows truth, columns predicted)."""
    truth = np.asarray(truth, dtype=object)
    predicted = np.asarray(predicted, dtype=object)
    matrix = confusion_matrix(truth, predicted, labels=list(LABELS))
    return {
        "n": int(len(truth)),
        "accuracy": float(accuracy_score(truth, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)) if len(set(truth)) > 1 else None,
        "ari": float(adjusted_rand_score(truth, clusters)),
        "nmi": float(normalized_mutual_info_score(truth, clusters)),
        "purity": purity(truth, clusters),
        "confusion": {"labels": list(LABELS), "matrix": matrix.tolist()},
    }


def ranking_scores(truth: np.ndarray, synthetic: np.ndarray) -> dict:
    """ROC AUC and average precision of a synthetic score ("fake" positive); None with one class or no score."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = np.asarray(truth, dtype=object)
    rows = np.isfinite(synthetic)
    positive = truth[rows] == "fake"
    if positive.all() or not positive.any():
        return {"roc_auc": None, "average_precision": None}
    return {"roc_auc": float(roc_auc_score(positive, synthetic[rows])),
            "average_precision": float(average_precision_score(positive, synthetic[rows]))}


def cluster_summary(clusters: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, int]]:
    """Members per label in each cluster: ``{cluster: {label: n}}``, with ``unlabelled`` when some are."""
    out = {}
    for cluster in np.unique(clusters):
        members = labels[clusters == cluster]
        out[str(int(cluster))] = {label: int((members == label).sum()) for label in LABELS}
        unlabelled = int(sum(label is None for label in members))
        if unlabelled:
            out[str(int(cluster))]["unlabelled"] = unlabelled
    return out


def purity(truth: np.ndarray, clusters: np.ndarray) -> float:
    """Share of points whose cluster's majority label (in this split) is their own label.

    Unlike the train-majority mapping, purity is computed within the scored split: it is an
    upper bound of what any cluster → label mapping could reach on it.
    """
    truth = np.asarray(truth, dtype=object)
    clusters = np.asarray(clusters)
    if len(truth) == 0:
        return float("nan")
    hits = sum(max(Counter(truth[clusters == c].tolist()).values()) for c in np.unique(clusters))
    return float(hits / len(truth))


def silhouette(features: np.ndarray, clusters: np.ndarray, max_points: int = 4000, seed: int = 0) -> float | None:
    """Mean silhouette of the clusters (noise, label -1, left out); None with fewer than 2 clusters.

    Large splits are scored on a seeded sample of ``max_points`` rows.
    """
    from sklearn.metrics import silhouette_score

    keep = np.asarray(clusters) >= 0
    features, clusters = np.asarray(features)[keep], np.asarray(clusters)[keep]
    n_clusters = len(np.unique(clusters))
    if n_clusters < 2 or n_clusters >= len(clusters):
        return None
    sample = max_points if len(clusters) > max_points else None
    return float(silhouette_score(features, clusters, sample_size=sample, random_state=seed))


BOOTSTRAP_METRICS = ("balanced_accuracy", "accuracy", "ari", "nmi")


def _codes(values, space: np.ndarray | None = None) -> np.ndarray:
    """Integer codes of ``values`` in ``space`` (default: their own sorted distinct values)."""
    values = np.asarray(values).astype(str).ravel()
    space = np.unique(values) if space is None else space
    return np.searchsorted(space, values)


def _tables(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int, resamples: np.ndarray) -> np.ndarray:
    """Contingency tables (R, n_a, n_b) of integer codes ``a`` × ``b`` for each row of resampled indices."""
    n_boot = len(resamples)
    flat = (np.arange(n_boot)[:, None] * n_a + a[resamples]) * n_b + b[resamples]
    return np.bincount(flat.ravel(), minlength=n_boot * n_a * n_b).reshape(n_boot, n_a, n_b).astype(np.float64)


def _comb2(x: np.ndarray) -> np.ndarray:
    return x * (x - 1) / 2


def ari_from_tables(tables: np.ndarray) -> np.ndarray:
    """Adjusted Rand index of each contingency table (same values as scikit-learn's)."""
    n = tables.sum(axis=(1, 2))
    index = _comb2(tables).sum(axis=(1, 2))
    rows = _comb2(tables.sum(axis=2)).sum(axis=1)
    cols = _comb2(tables.sum(axis=1)).sum(axis=1)
    expected = rows * cols / np.maximum(_comb2(n), 1)
    maximum = (rows + cols) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ari = (index - expected) / (maximum - expected)
    return np.where(np.isclose(maximum, expected), 1.0, ari)


def nmi_from_tables(tables: np.ndarray) -> np.ndarray:
    """Normalised mutual information (arithmetic mean of entropies, scikit-learn's default)."""
    n = tables.sum(axis=(1, 2))[:, None, None]
    p = tables / n
    row, col = p.sum(axis=2), p.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        outer = row[:, :, None] * col[:, None, :]
        mi = np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / np.where(outer > 0, outer, 1)), 0).sum(axis=(1, 2))
        h_row = -np.where(row > 0, row * np.log(np.where(row > 0, row, 1)), 0).sum(axis=1)
        h_col = -np.where(col > 0, col * np.log(np.where(col > 0, col, 1)), 0).sum(axis=1)
    n_rows, n_cols = (row > 0).sum(axis=1), (col > 0).sum(axis=1)
    nmi = np.clip(mi, 0, None) / np.maximum((h_row + h_col) / 2, np.finfo(np.float64).eps)
    nmi = np.where(np.isclose(mi, 0), 0.0, nmi)
    return np.where((n_rows == 1) & (n_cols == 1), 1.0, nmi)


BOOTSTRAP_BLOCK_ELEMENTS = 1 << 21  # resampled indices drawn at once: 16 MiB of int64, whatever the split's size


def _resample_values(truth_code: np.ndarray, predicted_code: np.ndarray, cluster_code: np.ndarray, n_space: int,
                     resamples: np.ndarray) -> dict[str, np.ndarray]:
    """Balanced accuracy, accuracy, ARI and NMI on each row of resampled indices."""
    n = resamples.shape[1]
    confusion = _tables(truth_code, predicted_code, n_space, n_space, resamples)
    correct = np.trace(confusion, axis1=1, axis2=2)
    support = confusion.sum(axis=2)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diagonal(confusion, axis1=1, axis2=2) / support
        balanced = np.where(present, recall, 0).sum(axis=1) / present.sum(axis=1)
    balanced[present.sum(axis=1) < 2] = np.nan  # one class in the resample: undefined, as in `score`
    cluster_tables = _tables(truth_code, cluster_code, n_space, int(cluster_code.max()) + 1, resamples)
    return {"balanced_accuracy": balanced, "accuracy": correct / n, "ari": ari_from_tables(cluster_tables),
            "nmi": nmi_from_tables(cluster_tables)}


def bootstrap_intervals(truth: np.ndarray, predicted: np.ndarray, clusters: np.ndarray,
                        n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals of balanced accuracy, accuracy, ARI and NMI on one split.

    The split's images are resampled with replacement ``n_resamples`` times (seeded); the
    clusters and the mapping stay as fitted, so the interval is the uncertainty of the
    score due to the finite scored split. Vectorised over resamples (contingency tables),
    a block of resamples at a time, so that memory stays bounded for any split size (the
    blocks draw the same resamples as one draw of them all).

    Returns
    -------
    dict
        ``{metric: [low, high]}``; None for a metric that is undefined on every resample.
    """
    truth = np.asarray(truth, dtype=object)
    n = len(truth)
    if n == 0 or n_resamples <= 0:
        return {metric: None for metric in BOOTSTRAP_METRICS}
    rng = np.random.default_rng(seed)
    predicted = np.asarray(predicted, dtype=object)
    space = np.unique(np.concatenate([truth.astype(str), predicted.astype(str)]))
    truth_code, predicted_code, cluster_code = _codes(truth, space), _codes(predicted, space), _codes(clusters)
    block = max(1, BOOTSTRAP_BLOCK_ELEMENTS // n)
    blocks = [_resample_values(truth_code, predicted_code, cluster_code, len(space),
                               rng.integers(0, n, size=(min(block, n_resamples - start), n)))
              for start in range(0, n_resamples, block)]
    tail = (1 - level) / 2 * 100
    out: dict[str, list[float] | None] = {}
    for metric in BOOTSTRAP_METRICS:
        sample = np.concatenate([values[metric] for values in blocks])
        sample = sample[np.isfinite(sample)]
        out[metric] = None if len(sample) == 0 else [float(v) for v in np.percentile(sample, [tail, 100 - tail])]
    return out
