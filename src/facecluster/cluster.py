"""Clusterers: fitted on train without labels, then asked to place the other splits.

Every entry of `CLUSTERERS` builds a scikit-learn estimator with ``fit`` and ``predict``.
Algorithms that cannot place new points themselves (agglomerative, spectral, HDBSCAN) are
wrapped in `NearestCentroidClusterer`, which assigns a new point to the nearest centroid of
the train clusters.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.cluster import (
    HDBSCAN,
    AgglomerativeClustering,
    Birch,
    KMeans,
    MeanShift,
    MiniBatchKMeans,
    SpectralClustering,
    estimate_bandwidth,
)
from sklearn.metrics import pairwise_distances_argmin
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted, validate_data

from facecluster.stream import StreamingBirch, StreamingMeanShift, StreamingMiniBatchKMeans


class QuantileMeanShift(ClusterMixin, BaseEstimator):
    """Mean-Shift whose bandwidth is estimated from a quantile of pairwise distances.

    This is the study's recipe: ``estimate_bandwidth(X, quantile=0.0855)`` on the train
    embeddings, then ``MeanShift(bandwidth=...)``.

    Parameters
    ----------
    quantile : float, default=0.3
        Quantile of pairwise distances used as the bandwidth (scikit-learn's
        ``estimate_bandwidth``).
    n_samples : int or None, default=None
        Points used to estimate the bandwidth; None uses all of them.
    bin_seeding : bool, default=False
        Seed the kernels on a grid (faster on large data).
    cluster_all : bool, default=True
        Assign every point, including orphans, to the nearest centre.
    random_state : int, default=0
        Seed for the bandwidth's sample.

    Attributes
    ----------
    bandwidth_ : float
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
    n_clusters_ : int
    """

    def __init__(self, quantile=0.3, n_samples=None, bin_seeding=False, cluster_all=True, random_state=0):
        self.quantile = quantile
        self.n_samples = n_samples
        self.bin_seeding = bin_seeding
        self.cluster_all = cluster_all
        self.random_state = random_state

    def fit(self, X, y=None):
        """Estimate the bandwidth on X, then run Mean-Shift with it."""
        X = validate_data(self, X, dtype=np.float64)
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {self.quantile}")
        bandwidth = estimate_bandwidth(X, quantile=self.quantile, n_samples=self.n_samples,
                                       random_state=self.random_state)
        if not np.isfinite(bandwidth) or bandwidth <= 0:
            # All neighbours at distance 0 (duplicates, or a single point): any positive
            # bandwidth gives the same clusters of identical points.
            bandwidth = 1.0
        self.bandwidth_ = float(bandwidth)
        model = MeanShift(bandwidth=self.bandwidth_, bin_seeding=self.bin_seeding,
                          cluster_all=self.cluster_all).fit(X)
        self.cluster_centers_ = model.cluster_centers_
        self.labels_ = model.labels_
        self.n_clusters_ = len(self.cluster_centers_)
        return self

    def predict(self, X):
        """Index of the nearest cluster centre for each row of X."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return pairwise_distances_argmin(X, self.cluster_centers_)


class NearestCentroidClusterer(ClusterMixin, BaseEstimator):
    """Wrap a transductive clusterer so it can place new points by nearest train centroid.

    Points the wrapped estimator left as noise (label -1, e.g. HDBSCAN) keep -1 in
    ``labels_``; new points always go to the nearest centroid of a real cluster.
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y=None):
        """Fit the wrapped estimator and remember the centroid of each cluster."""
        X = validate_data(self, X, dtype=np.float64)
        self.estimator_ = clone(self.estimator).fit(X)
        self.labels_ = np.asarray(self.estimator_.labels_)
        ids = np.unique(self.labels_[self.labels_ >= 0])
        if len(ids) == 0:  # everything noise: one cluster of all points
            ids, self.labels_ = np.array([0]), np.zeros(len(X), dtype=int)
        self.cluster_ids_ = ids
        self.cluster_centers_ = np.stack([X[self.labels_ == i].mean(axis=0) for i in ids])
        return self

    def predict(self, X):
        """The id of the nearest train centroid for each row of X."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.cluster_ids_[pairwise_distances_argmin(X, self.cluster_centers_)]


def _inductive(factory: Callable[..., Any]) -> Callable[..., Any]:
    return lambda **params: NearestCentroidClusterer(factory(**params))


def _gaussian_mixture(n_clusters=2, random_state=0, **params):
    return GaussianMixture(n_components=n_clusters, random_state=random_state, **params)


CLUSTERERS: dict[str, Callable[..., Any]] = {
    "meanshift": QuantileMeanShift,
    "birch": Birch,
    "kmeans": lambda random_state=0, n_init=10, **p: KMeans(random_state=random_state, n_init=n_init, **p),
    "minibatch-kmeans": lambda random_state=0, **p: MiniBatchKMeans(random_state=random_state, **p),
    "gmm": _gaussian_mixture,
    "agglomerative": _inductive(AgglomerativeClustering),
    "spectral": _inductive(lambda random_state=0, **p: SpectralClustering(random_state=random_state, **p)),
    "hdbscan": _inductive(HDBSCAN),
    # Streaming variants (facecluster.stream): fitted chunk by chunk, memory bounded by a chunk.
    "birch-stream": StreamingBirch,
    "minibatch-kmeans-stream": StreamingMiniBatchKMeans,
    "meanshift-stream": StreamingMeanShift,
}


def make_clusterer(algorithm: str, params: dict[str, Any] | None = None, seed: int = 0):
    """Build the estimator registered as ``algorithm`` with ``params``.

    Raises
    ------
    ValueError
        Unknown algorithm or parameter, with the allowed names.
    """
    if algorithm not in CLUSTERERS:
        raise ValueError(f"unknown clustering algorithm {algorithm!r}; choose one of {sorted(CLUSTERERS)}")
    params = dict(params or {})
    seeded = {"kmeans", "minibatch-kmeans", "gmm", "spectral", "meanshift", "minibatch-kmeans-stream",
              "meanshift-stream"}
    if algorithm in seeded:
        params.setdefault("random_state", seed)
    try:
        return CLUSTERERS[algorithm](**params)
    except TypeError as error:
        raise ValueError(f"{algorithm}: bad parameter ({error})") from None


def n_clusters_of(model, labels: np.ndarray) -> int:
    """How many clusters a fitted model produced (noise, label -1, not counted)."""
    return int(len(np.unique(labels[labels >= 0])))
