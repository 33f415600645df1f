"""Turn clusters into real/fake predictions and score them against the truth.

The mapping from cluster to label is learnt from train only (each cluster takes the
majority label of its train members) or given by hand, as the study did by eye. A cluster
that has no train members, or that the user did not name, takes train's majority label.
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


def majority_mapping(clusters: np.ndarray, labels: np.ndarray) -> dict[int, str]:
    """Each cluster's majority label among its members (ties go to the overall majority)."""
    overall = Counter(labels.tolist()).most_common(1)[0][0]
    mapping = {}
    for cluster in np.unique(clusters):
        counts = Counter(labels[clusters == cluster].tolist())
        best = max(counts.values())
        tied = [label for label, n in counts.items() if n == best]
        mapping[int(cluster)] = overall if overall in tied else sorted(tied)[0]
    return mapping


def apply_mapping(clusters: np.ndarray, mapping: dict[int, str], default: str) -> np.ndarray:
    """Predicted labels for cluster ids; unknown ids get ``default``."""
    return np.array([mapping.get(int(c), default) for c in clusters], dtype=object)


def score(truth: np.ndarray, predicted: np.ndarray, clusters: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, ARI, NMI and the confusion matrix (rows truth, columns predicted)."""
    truth = np.asarray(truth, dtype=object)
    predicted = np.asarray(predicted, dtype=object)
    matrix = confusion_matrix(truth, predicted, labels=list(LABELS))
    return {
        "n": int(len(truth)),
        "accuracy": float(accuracy_score(truth, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)) if len(set(truth)) > 1 else None,
        "ari": float(adjusted_rand_score(truth, clusters)),
        "nmi": float(normalized_mutual_info_score(truth, clusters)),
        "confusion": {"labels": list(LABELS), "matrix": matrix.tolist()},
    }


def cluster_summary(clusters: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, int]]:
    """Members per label in each cluster: ``{cluster: {label: n}}``."""
    out = {}
    for cluster in np.unique(clusters):
        members = labels[clusters == cluster]
        out[str(int(cluster))] = {label: int((members == label).sum()) for label in LABELS}
    return out
