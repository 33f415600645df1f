"""Clusterers: fitted on train without labels, then asked to place the other splits.

Every entry of `CLUSTERERS` builds a scikit-learn estimator with ``fit`` and ``predict``.
Algorithms that cannot place new points themselves (agglomerative, spectral, HDBSCAN) are
wrapped in `NearestCentroidClusterer`, which assigns a new point to the nearest centroid of
the train clusters.
"""

from __future__ import annotations

import re
from numbers import Integral, Real
from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.cluster import (
    HDBSCAN,
    AgglomerativeClustering,
    Birch,
    KMeans,
    MiniBatchKMeans,
    SpectralClustering,
    estimate_bandwidth,
    get_bin_seeds,
)
from sklearn.metrics import pairwise_distances_argmin
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from facecluster.refine import PseudoLabelRefiner
from facecluster.stream import (
    StreamingBirch,
    StreamingMeanShift,
    StreamingMiniBatchKMeans,
    merge_centres,
    nearest_centre,
)

#: Neighbour indices one batched query may return at most (int64: 128 MiB).
NEIGHBOUR_BUDGET = 1 << 24


def shift_seeds(X: np.ndarray, seeds: np.ndarray, bandwidth: float, max_iter: int = 300):
    """Move every seed to the mean of the points within ``bandwidth`` until it stops, all seeds at once.

    The same arithmetic as scikit-learn's ``MeanShift`` (one seed at a time): each seed's
    neighbours, mean and stopping rule are identical, so are its final mean and count. Only
    the neighbour queries are batched, one per iteration for all moving seeds instead of
    one per seed per iteration (in blocks of seeds that bound memory), which removes
    scikit-learn's per-call overhead: 16x faster on the study's data (benchmarks/meanshift.py).

    Returns
    -------
    means : ndarray of shape (n_seeds, n_features)
    counts : ndarray of shape (n_seeds,)
        Points within the bandwidth of each final mean; 0 drops the seed.
    n_iter : int
    """
    tree = NearestNeighbors(radius=bandwidth).fit(X)
    means = np.array(seeds, dtype=np.float64)
    counts = np.zeros(len(means), dtype=np.int64)
    iterations = np.zeros(len(means), dtype=int)
    active = np.arange(len(means))
    stop = 1e-3 * bandwidth
    # Seeds per query: even if every point were within reach of every seed, the index arrays stay under ~128 MiB.
    block = max(1, NEIGHBOUR_BUDGET // len(X))
    while len(active):
        still = []
        for start in range(0, len(active), block):
            seeds_now = active[start:start + block]
            neighbours = tree.radius_neighbors(means[seeds_now], bandwidth, return_distance=False)
            still.extend(_step(X, means, counts, iterations, seeds_now, neighbours, stop, max_iter))
        active = np.array(still, dtype=int)
    return means, counts, int(iterations.max(initial=0))


def _step(X, means, counts, iterations, seeds, neighbours, stop, max_iter) -> list[int]:
    """One Mean-Shift step for ``seeds``, in place; the seeds that are still moving."""
    still = []
    for seed, within in zip(seeds, neighbours):
        counts[seed] = len(within)
        if len(within) == 0:
            continue  # nothing in reach: scikit-learn drops the seed (count 0)
        old = means[seed].copy()
        means[seed] = np.mean(X[within], axis=0)
        if np.linalg.norm(means[seed] - old) > stop and iterations[seed] != max_iter:
            iterations[seed] += 1
            still.append(seed)
    return still


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

    _parameter_constraints = {
        "quantile": [Interval(Real, 0.0, 1.0, closed="right")],
        "n_samples": [Interval(Integral, 1, None, closed="left"), None],
        "bin_seeding": ["boolean"],
        "cluster_all": ["boolean"],
        "random_state": ["random_state"],
    }

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
        seeds = get_bin_seeds(X, self.bandwidth_) if self.bin_seeding else X
        means, counts, self.n_iter_ = shift_seeds(X, seeds, self.bandwidth_)
        if not counts.any() and self.bin_seeding:
            # Bin seeding is only a speed-up; in many dimensions the grid's seeds can all fall
            # farther than the bandwidth from every point. Seed on the points instead.
            means, counts, self.n_iter_ = shift_seeds(X, X, self.bandwidth_)
        self.cluster_centers_ = merge_centres(means, counts, self.bandwidth_)
        self.n_clusters_ = len(self.cluster_centers_)
        self.labels_ = nearest_centre(X, self.cluster_centers_, self.bandwidth_, self.cluster_all)
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


class AutoKClusterer(ClusterMixin, BaseEstimator):
    """Choose the number of clusters on the data it is fitted on (train), without labels.

    Every k in ``k_range`` is fitted; the k with the best criterion is kept:
    the mean silhouette (higher is better) for KMeans, agglomerative, spectral, BIRCH and refine,
    the Bayesian information criterion (lower is better) for the Gaussian mixture.

    Parameters
    ----------
    algorithm : str, default="kmeans"
        A registered algorithm that takes ``n_clusters``.
    k_range : tuple of int, default=(2, 8)
        Smallest and largest k tried (inclusive); k above n_samples - 1 is skipped.
    criterion : {"auto", "silhouette", "bic"}, default="auto"
        "auto" is BIC for ``gmm``, silhouette otherwise.
    params : dict or None, default=None
        Other parameters of the algorithm (``n_clusters`` excluded).
    random_state : int, default=0

    Attributes
    ----------
    n_clusters_ : int
        The k chosen.
    criterion_ : str
    criterion_scores_ : dict of int to float
        The criterion of every k tried (NaN where undefined).
    estimator_ : estimator
        The clusterer fitted with the chosen k.
    labels_ : ndarray of shape (n_samples,)
    """

    def __init__(self, algorithm="kmeans", k_range=(2, 8), criterion="auto", params=None, random_state=0):
        self.algorithm = algorithm
        self.k_range = k_range
        self.criterion = criterion
        self.params = params
        self.random_state = random_state

    def _criterion(self) -> str:
        if self.criterion == "auto":
            return "bic" if self.algorithm == "gmm" else "silhouette"
        if self.criterion not in ("silhouette", "bic"):
            raise ValueError(f"criterion must be 'auto', 'silhouette' or 'bic', got {self.criterion!r}")
        if self.criterion == "bic" and self.algorithm != "gmm":
            raise ValueError(f"criterion 'bic' needs a likelihood; {self.algorithm!r} has none, use 'silhouette'")
        return self.criterion

    def _candidates(self, n_samples: int) -> list[int]:
        low, high = (int(v) for v in self.k_range)
        if low < 1 or high < low:
            raise ValueError(f"k_range must be (low, high) with 1 <= low <= high, got {self.k_range!r}")
        ks = [k for k in range(low, high + 1) if k <= max(1, n_samples - 1)]
        return ks or [min(low, n_samples)]

    def fit(self, X, y=None):
        """Fit every candidate k on X and keep the best by the criterion."""
        from sklearn.metrics import silhouette_score

        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        criterion = self._criterion()
        params = dict(self.params or {})
        if "n_clusters" in params:
            raise ValueError("params must not hold n_clusters: AutoKClusterer chooses it")
        best, scores = None, {}
        for k in self._candidates(len(X)):
            model = make_clusterer(self.algorithm, {**params, "n_clusters": k}, seed=self.random_state).fit(X)
            labels = np.asarray(model.labels_ if hasattr(model, "labels_") else model.predict(X))
            if criterion == "bic":
                value = float(model.bic(X))
            else:
                n_labels = len(np.unique(labels))
                value = float(silhouette_score(X, labels)) if 2 <= n_labels < len(X) else float("nan")
            scores[k] = value
            better = best is None or (np.isfinite(value) and (not np.isfinite(best[0]) or
                                      (value < best[0] if criterion == "bic" else value > best[0])))
            if better:
                best = (value, k, model, labels)
        _, self.n_clusters_, self.estimator_, self.labels_ = best
        self.criterion_, self.criterion_scores_ = criterion, scores
        if hasattr(self.estimator_, "cluster_centers_"):
            self.cluster_centers_ = self.estimator_.cluster_centers_
        return self

    def predict(self, X):
        """Cluster ids of new points, from the estimator fitted with the chosen k."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.estimator_.predict(X)


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
    # k-means (or GMM) → pseudo-labels → logistic regression → re-assign, a few rounds (facecluster.refine).
    "refine": PseudoLabelRefiner,
    # Streaming variants (facecluster.stream): fitted chunk by chunk, memory bounded by a chunk.
    "birch-stream": StreamingBirch,
    "minibatch-kmeans-stream": StreamingMiniBatchKMeans,
    "meanshift-stream": StreamingMeanShift,
}


# The algorithms that take a seed (``random_state``).
SEEDED = {"kmeans", "minibatch-kmeans", "gmm", "spectral", "meanshift", "minibatch-kmeans-stream",
          "meanshift-stream", "refine"}


def depends_on_seed(algorithm: str, params: dict[str, Any] | None = None) -> bool:
    """Whether another seed can give other clusters: random initialisation (k-means, GMM, spectral,
    refine, the streaming Mean-Shift's reservoir) or, for Mean-Shift, a subsample (``n_samples``) to
    estimate the bandwidth from."""
    if algorithm == "meanshift":
        return (params or {}).get("n_samples") is not None
    return algorithm in SEEDED


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
    if params.get("n_clusters") == "auto":
        return _auto_k(algorithm, params, seed)
    if algorithm in SEEDED:
        params.setdefault("random_state", seed)
    try:
        return CLUSTERERS[algorithm](**params)
    except TypeError as error:
        raise ValueError(f"{algorithm}: bad parameter ({error})") from None


def check_method(name: str, algorithm: str, params: dict[str, Any] | None = None, seed: int = 0) -> None:
    """Refuse an unknown algorithm or bad parameters of the method ``name`` now, not after hours of extraction.

    Builds the estimator and runs scikit-learn's own check of parameter names, types and ranges.

    Raises
    ------
    ValueError
        Naming the key (``methods.<name>.algorithm`` or ``methods.<name>.params.<key>``) and what is allowed.
    """
    if algorithm not in CLUSTERERS:
        raise ValueError(f"methods.{name}.algorithm = {algorithm!r} is unknown; choose one of {sorted(CLUSTERERS)}")
    where = f"methods.{name}.params"
    try:
        model = make_clusterer(algorithm, params, seed=seed)
    except ValueError as error:
        raise ValueError(f"{where}: {error}; the parameters of {algorithm!r} are {_param_names(algorithm)}") from None
    for estimator in (model, getattr(model, "estimator", None)):
        if estimator is not None and hasattr(estimator, "_parameter_constraints"):
            try:
                estimator._validate_params()
            except (ValueError, TypeError) as error:
                key = re.match(r"The '(\w+)' parameter", str(error))
                raise ValueError(f"{where}{'.' + key.group(1) if key else ''}: {error}") from None


def _param_names(algorithm: str) -> list[str]:
    try:
        model = make_clusterer(algorithm, {})
    except ValueError:
        return []
    inner = getattr(model, "estimator", None)
    return sorted((inner if inner is not None else model).get_params(deep=False))


AUTO_K_ALGORITHMS = ("kmeans", "minibatch-kmeans", "gmm", "agglomerative", "spectral", "birch", "refine")


def _auto_k(algorithm: str, params: dict[str, Any], seed: int) -> AutoKClusterer:
    """``n_clusters = "auto"``: an `AutoKClusterer`; ``k_range`` and ``criterion`` may sit beside it."""
    if algorithm not in AUTO_K_ALGORITHMS:
        raise ValueError(f"{algorithm}: n_clusters = 'auto' needs an algorithm that takes n_clusters; "
                         f"choose one of {list(AUTO_K_ALGORITHMS)}")
    params.pop("n_clusters")
    k_range = tuple(params.pop("k_range", (2, 8)))
    criterion = params.pop("criterion", "auto")
    seed = params.pop("random_state", seed)
    model = AutoKClusterer(algorithm, k_range, criterion, params or None, seed)
    try:
        model._criterion()
        model._candidates(10**9)
    except ValueError as error:
        raise ValueError(f"{algorithm}: bad parameter ({error})") from None
    return model


def n_clusters_of(model, labels: np.ndarray) -> int:
    """How many clusters a fitted model produced (noise, label -1, not counted)."""
    return int(len(np.unique(labels[labels >= 0])))
