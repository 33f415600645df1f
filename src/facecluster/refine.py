"""Label-free refinement: cluster, learn a linear model of the clusters, re-assign with it, repeat.

The bootstrap of unsupervised fake detectors (Qiao et al. 2024, see RESEARCH.md): a first
clustering gives pseudo-labels; a linear classifier (logistic regression) trained on the
most confident of them draws the boundary the features support best, not the Voronoi
boundary of the centres; every point is re-assigned by that classifier, and the round
repeats until no point moves. Everything is fitted on the features alone: no label is read.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data


def initial_clusters(X: np.ndarray, n_clusters: int, init: str, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """The first clustering of ``X`` and how sure each point's assignment is (higher: surer).

    k-means' certainty is the gap between the distances to the second-nearest and the nearest
    centre; the mixture's is the posterior of the chosen component.
    """
    if init == "gmm":
        mixture = GaussianMixture(n_components=n_clusters, covariance_type="diag", random_state=random_state).fit(X)
        posterior = mixture.predict_proba(X)
        return posterior.argmax(axis=1), posterior.max(axis=1)
    kmeans = KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state).fit(X)
    distances = np.sort(kmeans.transform(X), axis=1)
    return kmeans.labels_.astype(int), distances[:, 1] - distances[:, 0]


def confident_rows(clusters: np.ndarray, certainty: np.ndarray, fraction: float) -> np.ndarray:
    """The ``fraction`` most certain members of each cluster (at least 2 each), as a boolean mask.

    Taken per cluster, so a small cluster keeps its share of the training set and cannot be
    swallowed by a larger one in the next round.
    """
    keep = np.zeros(len(clusters), dtype=bool)
    for cluster in np.unique(clusters):
        members = np.flatnonzero(clusters == cluster)
        n_keep = min(len(members), max(2, int(np.ceil(fraction * len(members)))))
        # Stable sort on -certainty: equal certainties keep their row order, so the fit is deterministic.
        keep[members[np.argsort(-certainty[members], kind="stable")[:n_keep]]] = True
    return keep


def linear_scores(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Per-cluster scores (n, k) of a fitted logistic regression's coefficients; a binary one gives (-z/2, z/2)."""
    z = X @ coef.T + intercept
    return np.hstack([-z / 2, z / 2]) if coef.shape[0] == 1 else z


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax; for binary scores (-z/2, z/2) it equals the logistic regression's sigmoid."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class PseudoLabelRefiner(ClusterMixin, BaseEstimator):
    """Cluster, then refine the clusters with a linear model of their own pseudo-labels, without labels.

    Parameters
    ----------
    n_clusters : int, default=2
    init : {"kmeans", "gmm"}, default="kmeans"
        The first clustering.
    n_rounds : int, default=5
        Rounds of fit-the-classifier, re-assign; fewer when an assignment stops changing.
    confident_fraction : float, default=0.5
        Share of each cluster's most certain members the classifier is trained on.
    C : float, default=1.0
        Inverse L2 strength of the logistic regression (on the standardised features).
    random_state : int, default=0
        Seed of the first clustering.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        The final assignment of the training points.
    initial_labels_ : ndarray of shape (n_samples,)
        The first clustering's assignment, before any refinement.
    coef_, intercept_ : ndarray
        The last round's classifier, on features standardised with ``mean_`` and ``scale_``.
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Mean of each final cluster (for reading the clusters; `predict` uses the classifier).
    n_rounds_ : int
        Rounds run (a round that would empty a cluster is not kept).
    moved_ : list of int
        Points that changed cluster in each kept round.
    """

    _parameter_constraints = {
        "n_clusters": [Interval(Integral, 2, None, closed="left")],
        "init": [StrOptions({"kmeans", "gmm"})],
        "n_rounds": [Interval(Integral, 0, None, closed="left")],
        "confident_fraction": [Interval(Real, 0.0, 1.0, closed="right")],
        "C": [Interval(Real, 0.0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_clusters=2, init="kmeans", n_rounds=5, confident_fraction=0.5, C=1.0, random_state=0):
        self.n_clusters = n_clusters
        self.init = init
        self.n_rounds = n_rounds
        self.confident_fraction = confident_fraction
        self.C = C
        self.random_state = random_state

    def fit(self, X, y=None):
        """Cluster X, then refine; ``y`` is ignored (the refinement never sees labels)."""
        self._validate_params()
        X = validate_data(self, X, dtype=np.float64)
        if len(X) < 2 * self.n_clusters:
            raise ValueError(f"refine needs at least {2 * self.n_clusters} points for {self.n_clusters} clusters, "
                             f"got {len(X)}")
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        Z = (X - self.mean_) / self.scale_
        clusters, certainty = initial_clusters(X, self.n_clusters, self.init, self.random_state)
        self.initial_labels_ = clusters.copy()
        self.moved_: list[int] = []
        self.coef_, self.intercept_ = self._fit_classifier(Z, clusters, certainty)
        for _ in range(self.n_rounds):
            probabilities = softmax(linear_scores(Z, self.coef_, self.intercept_))
            moved_to = probabilities.argmax(axis=1)
            if len(np.unique(moved_to)) < self.n_clusters:
                break  # the classifier would empty a cluster: keep the last assignment with all of them
            moved = int((moved_to != clusters).sum())
            clusters, certainty = moved_to, probabilities.max(axis=1)
            self.moved_.append(moved)
            if moved == 0:
                break
            self.coef_, self.intercept_ = self._fit_classifier(Z, clusters, certainty)
        self.n_rounds_ = len(self.moved_)
        self.labels_ = clusters.astype(int)
        self.cluster_centers_ = np.stack([X[self.labels_ == c].mean(axis=0) for c in range(self.n_clusters)])
        return self

    def _fit_classifier(self, Z: np.ndarray, clusters: np.ndarray, certainty: np.ndarray):
        rows = confident_rows(clusters, certainty, self.confident_fraction)
        classifier = LogisticRegression(C=self.C, max_iter=2000, class_weight="balanced")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(Z[rows], clusters[rows])
        return classifier.coef_.copy(), classifier.intercept_.copy()

    def predict_proba(self, X) -> np.ndarray:
        """How likely each point belongs to each cluster, by the last round's classifier."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return softmax(linear_scores((X - self.mean_) / self.scale_, self.coef_, self.intercept_))

    def predict(self, X) -> np.ndarray:
        """The cluster of each point: the last round's classifier's most likely one."""
        return self.predict_proba(X).argmax(axis=1)
