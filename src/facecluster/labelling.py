"""Labels spent wisely: which k train images to show a person, and the clusters named from their answers.

The clusters are fitted without labels; a person then labels k train images the tool picks,
first the **medoid** of each cluster of the primary clustering (largest cluster first: one
answer names a clean cluster), then either

- ``"typical"`` (the default): the medoids of a k-cell k-means partition of the train
  features, so the answers cover the data like a stratified sample; or
- ``"doubtful"``: the points the tool is least sure about, in turn from each primary cluster:
  where the candidate clusterings **disagree** (a point's clusters under two clusterings share
  few members) and where the refinement's classifier is **least certain**.

``"typical"`` is the default because it named clusters better on the train rows nobody
labelled, averaged over the sets of benchmarks/labels.py (docs/labels.md; 0.737 against 0.682,
better on 2 of 3 sets): answers at the boundary are a biased sample of a cluster, and naming
from them inverted the clusters on faces-ffhq.

`name_from_labels` names the clusters from those k labels only (the naming rules of
`facecluster.evaluate` ignore unlabelled rows, marked ``None``) and every other point takes
its cluster's name. `choose_clustering` picks, among candidate clusterings, the one whose
naming predicts the labelled points best when each is left out. `random_rows` is the
baseline: k train images drawn at random.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from facecluster.evaluate import NAMING_RULES, apply_mapping, labelled_rows, majority_mapping

#: Members nearest the cluster mean among which the medoid is sought (bounds the cost on large clusters).
MEDOID_CANDIDATES = 256


def medoid_rows(X: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """The medoid of each cluster (noise, -1, left out), largest cluster first.

    The medoid is the member with the least total distance to the other members, sought among
    the `MEDOID_CANDIDATES` members nearest the cluster's mean.
    """
    ids, sizes = np.unique(clusters[clusters >= 0], return_counts=True)
    out = []
    for cluster in ids[np.argsort(-sizes, kind="stable")]:
        members = np.flatnonzero(clusters == cluster)
        points = X[members]
        near_mean = np.argsort(np.linalg.norm(points - points.mean(axis=0), axis=1), kind="stable")
        candidates = near_mean[:MEDOID_CANDIDATES]
        totals = np.zeros(len(candidates))
        for start in range(0, len(points), 4096):  # blocks bound the distance matrix's memory
            block = points[start:start + 4096]
            totals += np.linalg.norm(points[candidates][:, None, :] - block[None, :, :], axis=2).sum(axis=1)
        out.append(members[candidates[int(np.argmin(totals))]])
    return np.array(out, dtype=int)


def agreement(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per point, the Jaccard overlap of its cluster under ``first`` and its cluster under ``second``.

    1 where both clusterings put the point with exactly the same others; near 0 where the
    point's two clusters share few members. Cluster ids need not correspond.
    """
    _, a = np.unique(first, return_inverse=True)
    _, b = np.unique(second, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    both = table[a, b]
    return both / (table.sum(axis=1)[a] + table.sum(axis=0)[b] - both)


def doubt(clusterings: list[np.ndarray], certainty: np.ndarray | None = None, n_clusters: int | None = None) -> np.ndarray:
    """How unsure the tool is about each point, in [0, 1]: disagreement of clusterings and classifier doubt.

    Parameters
    ----------
    clusterings : list of ndarray (n,)
        Cluster ids of the same points under each candidate clustering.
    certainty : ndarray (n,), optional
        The refinement's probability of each point's cluster (``predict_proba(X).max(axis=1)``).
    n_clusters : int, optional
        Clusters of the model that gave ``certainty``: its probabilities start at 1 / n_clusters.

    Returns
    -------
    ndarray (n,)
        The mean of one minus the mean pairwise agreement and, when given, one minus the certainty
        rescaled to [0, 1].
    """
    terms = []
    pairs = [(i, j) for i in range(len(clusterings)) for j in range(i + 1, len(clusterings))]
    if pairs:
        terms.append(1 - np.mean([agreement(clusterings[i], clusterings[j]) for i, j in pairs], axis=0))
    if certainty is not None:
        floor = 1 / n_clusters if n_clusters else 0.0
        terms.append(1 - np.clip((np.asarray(certainty) - floor) / (1 - floor), 0, 1))
    if not terms:
        return np.zeros(len(clusterings[0]) if clusterings else 0)
    return np.mean(terms, axis=0)


STRATEGIES = ("doubtful", "typical")


def choose_rows_to_label(X: np.ndarray, clusterings: list[np.ndarray], k: int,
                         certainty: np.ndarray | None = None, n_clusters: int | None = None,
                         then: str = "typical", seed: int = 0) -> np.ndarray:
    """The k rows of ``X`` to show a person, in the order to ask: medoids first, then ``then``.

    ``then = "doubtful"``: the points the tool is least sure about (`doubt`), the primary
    clusters taking turns so every cluster gets labels. ``then = "typical"``: the medoids of
    k cells of a k-means partition of ``X`` (largest cell first), so the answers cover the
    data as a stratified sample would (TypiClust's idea, Hacohen et al. 2022: with few labels,
    typical points beat uncertain ones). Deterministic for a given ``seed``.
    ``clusterings[0]`` is the primary clustering; ``X`` is the space it was fitted in.

    Raises
    ------
    ValueError
        When k exceeds the number of rows, or is negative, or ``then`` is unknown.
    """
    if not 0 <= k <= len(X):
        raise ValueError(f"cannot choose {k} rows to label out of {len(X)}")
    if then not in STRATEGIES:
        raise ValueError(f"unknown labelling strategy {then!r}; choose one of {list(STRATEGIES)}")
    primary = np.asarray(clusterings[0])
    chosen = list(medoid_rows(X, primary))[:k]
    if then == "typical":
        return _typical(X, k, chosen, seed)
    score = doubt(clusterings, certainty, n_clusters)
    taken = np.zeros(len(X), dtype=bool)
    taken[chosen] = True
    # Disagreement takes few distinct values, so ties are common; they go to the point nearest another
    # cluster's centre, never to the lowest row (files are often listed label folder by label folder).
    margin = centre_margin(X, primary)
    queues = []
    ids, sizes = np.unique(primary, return_counts=True)
    for cluster in ids[np.argsort(-sizes, kind="stable")]:
        members = np.flatnonzero(primary == cluster)
        queues.append(list(members[np.lexsort((margin[members], -score[members]))]))
    while len(chosen) < k:
        for queue in queues:
            while queue and taken[queue[0]]:
                queue.pop(0)
            if queue and len(chosen) < k:
                taken[queue[0]] = True
                chosen.append(queue.pop(0))
    return np.array(chosen, dtype=int)


def _typical(X: np.ndarray, k: int, chosen: list[int], seed: int) -> np.ndarray:
    """``chosen``, then the medoids of a k-cell k-means partition of X (largest cell first) up to k rows."""
    from sklearn.cluster import KMeans

    if len(chosen) < k:
        cells = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(X).labels_
        for row in medoid_rows(X, cells):
            if len(chosen) == k:
                break
            if row not in chosen:
                chosen.append(int(row))
        rest = [row for row in np.argsort(centre_margin(X, cells), kind="stable") if row not in chosen]
        chosen.extend(rest[:k - len(chosen)])  # only when two cells share a medoid row (duplicate points)
    return np.array(chosen, dtype=int)


def spread_to_nearest(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Every row's label: its own if labelled, else its nearest labelled row's (in ``X``).

    Naming clusters from the spread vector weighs each answer by the region it stands for,
    so a few typical answers count like a stratified sample, not like k equal votes.
    """
    labels = np.asarray(labels, dtype=object)
    known = np.flatnonzero(labelled_rows(labels))
    if len(known) == 0:
        raise ValueError("no labelled rows to spread (every label is None)")
    distances = np.stack([np.linalg.norm(X - X[row], axis=1) for row in known], axis=1)
    return labels[known][distances.argmin(axis=1)]


def centre_margin(X: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Per point, its distance to the nearest other cluster's mean minus the distance to its own (small: borderline)."""
    ids = np.unique(clusters)
    centres = np.stack([X[clusters == c].mean(axis=0) for c in ids])
    distances = np.stack([np.linalg.norm(X - centre, axis=1) for centre in centres], axis=1)
    own = np.searchsorted(ids, clusters)
    mine = distances[np.arange(len(X)), own]
    distances[np.arange(len(X)), own] = np.inf
    return distances.min(axis=1) - mine if len(ids) > 1 else -mine


def random_rows(n: int, k: int, seed: int) -> np.ndarray:
    """k distinct rows out of n drawn at random (the baseline of `choose_rows_to_label`)."""
    return np.random.default_rng(seed).choice(n, size=k, replace=False)


def partial_labels(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``labels`` kept at ``rows`` only, ``None`` (unlabelled) elsewhere."""
    out = np.full(len(labels), None, dtype=object)
    out[rows] = np.asarray(labels, dtype=object)[rows]
    return out


def name_from_labels(clusters: np.ndarray, labels: np.ndarray, naming: str = "majority") -> tuple[dict[int, str], str]:
    """The cluster → label mapping from the labelled rows only, and the default for unnamed clusters.

    ``labels`` is partial (``None`` where nobody labelled); the default is the labelled rows' majority.
    """
    default = majority_mapping(np.zeros(len(labels), dtype=int), labels)[0]
    return NAMING_RULES[naming](clusters, labels), default


def propagate(clusters: np.ndarray, labels: np.ndarray, naming: str = "majority") -> np.ndarray:
    """Every row's label: its cluster's name learnt from the labelled rows of ``labels``."""
    mapping, default = name_from_labels(clusters, labels, naming)
    return apply_mapping(clusters, mapping, default)


def _left_out(labels: np.ndarray, spread_in: np.ndarray | None) -> list[tuple[int, np.ndarray]]:
    """Per labelled row: the label vector without it (spread to the nearest remaining labels with ``spread_in``)."""
    labels = np.asarray(labels, dtype=object)
    known = np.flatnonzero(labelled_rows(labels))
    distances = None
    if spread_in is not None:
        distances = np.stack([np.linalg.norm(spread_in - spread_in[row], axis=1) for row in known], axis=1)
    out = []
    for position, row in enumerate(known):
        others = labels.copy()
        others[row] = None
        if distances is not None:
            kept = np.delete(np.arange(len(known)), position)
            others = labels[known[kept]][distances[:, kept].argmin(axis=1)]
        out.append((int(row), others))
    return out


def _score_left_out(clusters: np.ndarray, labels: np.ndarray, left_out, naming: str) -> float | None:
    from sklearn.metrics import balanced_accuracy_score

    truth = np.array([labels[row] for row, _ in left_out], dtype=object)
    if len(truth) < 2 or len(set(truth)) < 2:
        return None
    predicted = []
    for row, others in left_out:
        mapping, default = name_from_labels(clusters, others, naming)
        predicted.append(mapping.get(int(clusters[row]), default))
    return float(balanced_accuracy_score(truth.astype(str), np.asarray(predicted).astype(str)))


def leave_one_out_score(clusters: np.ndarray, labels: np.ndarray, naming: str = "majority",
                        spread_in: np.ndarray | None = None) -> float | None:
    """Balanced accuracy over the labelled rows, each predicted by the naming learnt from the others.

    With ``spread_in`` (features), the other labels are spread to their nearest rows first
    (`spread_to_nearest`). None when fewer than two rows, or a single class, are labelled.
    """
    labels = np.asarray(labels, dtype=object)
    if labelled_rows(labels).sum() < 2:
        return None
    return _score_left_out(clusters, labels, _left_out(labels, spread_in), naming)


def choose_clustering(candidates: dict[str, np.ndarray], labels: np.ndarray, naming: str = "majority",
                      spread_in: np.ndarray | None = None) -> tuple[str, dict[str, float | None]]:
    """The candidate clustering whose naming predicts the labelled rows best, left out one at a time.

    Ties (and no score at all) go to the earliest candidate, so list the simplest first.
    """
    labels = np.asarray(labels, dtype=object)
    left_out = _left_out(labels, spread_in) if labelled_rows(labels).sum() >= 2 else []
    scores = {name: _score_left_out(clusters, labels, left_out, naming) for name, clusters in candidates.items()}
    best = max(candidates, key=lambda name: (scores[name] if scores[name] is not None else -1.0,
                                             -list(candidates).index(name)))
    return best, scores


class AnswersClassifier(BaseEstimator, ClassifierMixin):
    """A class-balanced logistic regression on a few answered rows: the other way to spend k labels.

    Naming clusters from k answers cannot do better than the clusters; a linear classifier on the
    same reduced features can (benchmarks/ask.py: on faces-ffhq with 64 answers, 0.78 balanced
    accuracy against 0.58 for the clusters they named). Labels are "real"/"fake" (``None`` rows are
    ignored); the features are standardised on the answered rows. Fitted attributes are plain
    arrays (``mean_``, ``scale_``, ``coef_``, ``intercept_``), so the model format saves it as data.

    Parameters
    ----------
    C : float
        Inverse regularisation strength; small, because the answers are few.
    """

    classes_ = np.array(["real", "fake"], dtype=object)

    def __init__(self, C: float = 0.1):
        self.C = C

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=object)
        rows = labelled_rows(y) & np.isfinite(X).all(axis=1)
        if set(y[rows]) != {"real", "fake"}:
            raise ValueError("the answers need at least one real and one fake image to learn from; "
                             f"got {sorted(set(y[rows]))}")
        self.mean_ = X[rows].mean(axis=0)
        self.scale_ = np.where(X[rows].std(axis=0) > 0, X[rows].std(axis=0), 1.0)
        head = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000)
        head.fit((X[rows] - self.mean_) / self.scale_, (y[rows] == "fake").astype(int))
        self.coef_ = head.coef_[0].copy()
        self.intercept_ = float(head.intercept_[0])
        self.n_answers_ = int(rows.sum())
        return self

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of "fake" per row; NaN where a row is not finite."""
        X = np.asarray(X, dtype=np.float64)
        out = np.full(len(X), np.nan)
        rows = np.isfinite(X).all(axis=1)
        out[rows] = ((X[rows] - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return out

    def predict_proba(self, X) -> np.ndarray:
        fake = 1 / (1 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - fake, fake])

    def predict(self, X) -> np.ndarray:
        odds = self.decision_function(X)
        out = np.full(len(odds), None, dtype=object)
        rows = np.isfinite(odds)
        out[rows] = np.where(odds[rows] > 0, "fake", "real")
        return out
