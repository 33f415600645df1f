"""Clustering and reduction that stream the data in chunks, so memory is bounded by a chunk.

A *source* is a callable that returns a fresh iterator of 2-D arrays (the chunks); it is
called once per pass over the data. `array_source` cuts an array (or a memory-mapped
file) into chunks, `table_source` streams a `facecluster.store.FeatureTable` shard by
shard. Every estimator here follows scikit-learn's conventions (``fit(X)``, ``predict(X)``,
fitted attributes ending in ``_``) and adds ``fit_stream(source)`` and
``predict_stream(source)`` for data that is never held in memory at once:

- `StreamingBirch`: BIRCH's CF-tree built by ``partial_fit`` chunk after chunk (the same
  tree, point for point, as ``Birch.fit``), then the global clustering step once.
- `StreamingMiniBatchKMeans`: k-means++ on a reservoir sample, then mini-batch updates
  over shuffled chunks for a few epochs.
- `StreamingMeanShift`: the bandwidth estimated on a reservoir sample, seeds from bins
  counted chunk by chunk, and every seed shifted at once, one pass over the data per
  iteration (the same centres as ``MeanShift(bin_seeding=True)``).
- `fit_transform_chunked`: a reducer pipeline (scaler, `IncrementalPCA`) fitted step by
  step with ``partial_fit`` over chunks, then applied chunk by chunk.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import Birch, KMeans, MiniBatchKMeans, estimate_bandwidth
from sklearn.metrics import pairwise_distances_argmin_min
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

CHUNK_ROWS = 16384


def _one_openmp_thread():
    """scikit-learn's OpenMP loops spin-wait between the many small calls a stream makes; on a
    busy machine that costs far more than a second thread gains (35x slower measured here)."""
    return threadpool_limits(limits=1, user_api="openmp")
Source = Callable[[], Iterable[np.ndarray]]


def array_source(X, rows=None, chunk_rows: int = CHUNK_ROWS) -> Source:
    """Chunks of ``X`` (or of its ``rows``: a boolean mask or indices), of near-equal sizes.

    Chunks are balanced (no small tail), so each has at least ``chunk_rows // 2`` rows when
    there are that many, as ``IncrementalPCA.partial_fit`` needs.
    """
    index = None if rows is None else np.asarray(rows)
    if index is not None and index.dtype == bool:
        index = np.flatnonzero(index)
    n = len(X) if index is None else len(index)
    bounds = np.linspace(0, n, max(1, -(-n // chunk_rows)) + 1).astype(int)

    def chunks():
        for start, stop in zip(bounds[:-1], bounds[1:]):
            yield np.asarray(X[start:stop] if index is None else X[index[start:stop]])
    return chunks


def table_source(table, unique: bool = True) -> Source:
    """The vectors of a feature table, one shard at a time (memory-mapped)."""
    return lambda: (shard.values for shard in table.iter_shards(unique=unique))


def _chunks(source: Source) -> Iterator[np.ndarray]:
    for chunk in source():
        chunk = check_array(chunk, dtype=[np.float64, np.float32])
        if len(chunk):
            yield chunk


def reservoir_sample(source: Source, n: int, random_state=None) -> np.ndarray:
    """A uniform random sample of ``n`` rows of the stream (all of them if fewer), in one pass."""
    rng = check_random_state(random_state)
    keys, rows = np.zeros(0), None
    for chunk in _chunks(source):
        tickets = rng.random(len(chunk))
        if len(keys) >= n:  # only rows that can displace one already kept
            chosen = tickets < keys.max()
            tickets, chunk = tickets[chosen], chunk[chosen]
        keys = np.concatenate([keys, tickets])
        rows = chunk.copy() if rows is None else np.concatenate([rows, chunk])  # float32 stays float32
        if len(keys) > n:
            keep = np.argpartition(keys, n)[:n]
            keys, rows = keys[keep], rows[keep]
    if rows is None:
        raise ValueError("no data to sample: the source yielded no rows")
    return rows


class _Streaming(ClusterMixin, BaseEstimator):
    """``fit``/``predict`` on arrays through ``fit_stream``/``_predict_chunk`` on chunks."""

    def fit(self, X, y=None):
        """Fit on X chunk by chunk, then label every row of X."""
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.fit_stream(array_source(X, chunk_rows=self.chunk_rows))
        self.labels_ = self.predict(X)
        return self

    def predict(self, X):
        """The cluster of each row of X, computed chunk by chunk."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return np.concatenate(list(self.predict_stream(array_source(X, chunk_rows=self.chunk_rows))))

    def predict_stream(self, source: Source) -> Iterator[np.ndarray]:
        """The clusters of each chunk of ``source``, one array per chunk."""
        check_is_fitted(self)
        for chunk in _chunks(source):
            if chunk.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {chunk.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input")
            with _one_openmp_thread():
                labels = self._predict_chunk(chunk)
            yield labels


class StreamingBirch(_Streaming):
    """BIRCH fitted by ``partial_fit`` over chunks; memory grows with the subclusters, not the rows.

    Parameters
    ----------
    threshold, branching_factor : see `sklearn.cluster.Birch`
    n_clusters : int or None
        Clusters of the global step (agglomerative on the subcluster centres); None keeps
        the subclusters.
    chunk_rows : int
        Rows per chunk when fitting an array.
    """

    def __init__(self, threshold=0.5, branching_factor=50, n_clusters=3, chunk_rows=CHUNK_ROWS):
        self.threshold = threshold
        self.branching_factor = branching_factor
        self.n_clusters = n_clusters
        self.chunk_rows = chunk_rows

    def fit_stream(self, source: Source):
        """Build the CF-tree over the chunks of ``source``, then run the global step once."""
        birch = Birch(threshold=self.threshold, branching_factor=self.branching_factor, n_clusters=None,
                      compute_labels=False)
        for chunk in _chunks(source):
            birch.partial_fit(chunk)
        if not hasattr(birch, "subcluster_centers_"):
            raise ValueError("no data to fit: the source yielded no rows")
        birch.set_params(n_clusters=self.n_clusters)
        birch.partial_fit()  # the global clustering step alone
        self.birch_ = birch
        self.subcluster_centers_ = birch.subcluster_centers_
        self.subcluster_labels_ = birch.subcluster_labels_
        self.n_features_in_ = birch.n_features_in_
        self.n_clusters_ = int(len(np.unique(birch.subcluster_labels_)))
        return self

    def _predict_chunk(self, chunk):
        return self.birch_.predict(chunk)


class StreamingMiniBatchKMeans(_Streaming):
    """Mini-batch k-means over streamed chunks, initialised by k-means++ on a reservoir sample.

    Parameters
    ----------
    n_clusters : int
    batch_size : int
        Rows per mini-batch update.
    n_epochs : int
        Passes over the data after the initialisation.
    init_size : int
        Rows of the reservoir sample the initial centres are chosen on.
    n_init : int
        k-means++ runs on the sample; the best is kept.
    random_state : int or None
    chunk_rows : int
    """

    def __init__(self, n_clusters=8, batch_size=4096, n_epochs=2, init_size=20000, n_init=3, random_state=0,
                 chunk_rows=CHUNK_ROWS):
        self.n_clusters = n_clusters
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.init_size = init_size
        self.n_init = n_init
        self.random_state = random_state
        self.chunk_rows = chunk_rows

    def fit_stream(self, source: Source):
        """One pass to sample and initialise, then ``n_epochs`` passes of mini-batch updates."""
        rng = check_random_state(self.random_state)
        sample = reservoir_sample(source, self.init_size, rng)
        n_clusters = min(self.n_clusters, len(sample))
        with _one_openmp_thread():
            init = KMeans(n_clusters, n_init=self.n_init, random_state=rng.randint(2**31)).fit(sample).cluster_centers_
        # No random reassignment of rarely hit centres: a shard may hold one kind of face only, and
        # the centres of the others would be moved onto it; the init already saw every shard.
        model = MiniBatchKMeans(n_clusters, init=init, n_init=1, batch_size=self.batch_size,
                                reassignment_ratio=0.0, random_state=rng.randint(2**31))
        for _ in range(self.n_epochs):
            for chunk in _chunks(source):
                order = rng.permutation(len(chunk))
                with _one_openmp_thread():
                    for start in range(0, len(chunk), self.batch_size):
                        model.partial_fit(chunk[np.sort(order[start:start + self.batch_size])])
        self.kmeans_ = model
        self.cluster_centers_ = model.cluster_centers_
        self.n_features_in_ = model.n_features_in_
        self.n_clusters_ = n_clusters
        return self

    def _predict_chunk(self, chunk):
        return pairwise_distances_argmin_min(chunk, self.cluster_centers_.astype(chunk.dtype))[0]


class StreamingMeanShift(_Streaming):
    """Mean-Shift with bin seeding, every seed shifted at once, one pass over the data per iteration.

    Gives the centres of ``MeanShift(bandwidth, bin_seeding=True)`` (flat kernel, same
    stopping rule, same merging of near centres) without holding the data: memory is the
    chunk plus the seeds. The bandwidth, unless given, is ``estimate_bandwidth`` on a
    reservoir sample of ``n_samples`` rows with ``quantile``.

    Parameters
    ----------
    bandwidth : float or None
    quantile : float
        Quantile of pairwise distances used as the bandwidth when it is not given.
    n_samples : int
        Rows of the sample the bandwidth is estimated on.
    min_bin_freq : int
        Bins with fewer points do not seed.
    max_iter : int
    cluster_all : bool
        Give orphans (farther than the bandwidth from every centre) the nearest centre
        rather than -1.
    max_seeds : int
        Refuse, with advice, to run with more seeds: bins of the bandwidth's width do not
        gather points in many dimensions, and then every point becomes a seed (quadratic).
    random_state : int or None
    chunk_rows : int
    """

    def __init__(self, bandwidth=None, quantile=0.3, n_samples=10000, min_bin_freq=1, max_iter=300,
                 cluster_all=True, max_seeds=10000, random_state=0, chunk_rows=CHUNK_ROWS):
        self.bandwidth = bandwidth
        self.quantile = quantile
        self.n_samples = n_samples
        self.min_bin_freq = min_bin_freq
        self.max_iter = max_iter
        self.cluster_all = cluster_all
        self.max_seeds = max_seeds
        self.random_state = random_state
        self.chunk_rows = chunk_rows

    def fit_stream(self, source: Source):
        """Estimate the bandwidth, count the bins, shift the seeds, merge the near centres."""
        bandwidth = self.bandwidth
        if bandwidth is None:
            if not 0.0 < self.quantile <= 1.0:
                raise ValueError(f"quantile must be in (0, 1], got {self.quantile}")
            sample = reservoir_sample(source, self.n_samples, self.random_state)
            bandwidth = estimate_bandwidth(sample, quantile=self.quantile)
            if not np.isfinite(bandwidth) or bandwidth <= 0:
                bandwidth = 1.0  # all neighbours at distance 0: any bandwidth gives the same clusters
        self.bandwidth_ = float(bandwidth)
        seeds = self._bin_seeds(source)
        means, counts, self.n_iter_ = self._shift(source, seeds.astype(np.float64))
        self.cluster_centers_ = merge_centres(means, counts, self.bandwidth_)
        self.n_features_in_ = self.cluster_centers_.shape[1]
        self.n_clusters_ = len(self.cluster_centers_)
        return self

    def _bin_seeds(self, source: Source) -> np.ndarray:
        """Bin centres holding at least ``min_bin_freq`` points, in first-seen order (as scikit-learn)."""
        counts: dict[tuple, int] = {}
        for chunk in _chunks(source):
            binned = np.round(chunk / self.bandwidth_)
            unique, first, frequency = np.unique(binned, axis=0, return_index=True, return_counts=True)
            for k in np.argsort(first, kind="stable"):
                key = tuple(unique[k].tolist())
                counts[key] = counts.get(key, 0) + int(frequency[k])
            if len(counts) > self.max_seeds:
                raise ValueError(
                    f"Mean-Shift bin seeding found over {self.max_seeds} bins of width {self.bandwidth_:.4g} in "
                    f"{chunk.shape[1]} dimensions: the data are too spread for it to scale. Reduce the dimensions "
                    "first (reduce.n_components), raise the bandwidth (quantile), or raise max_seeds")
        seeds = np.array([k for k, c in counts.items() if c >= self.min_bin_freq], dtype=np.float32)
        if len(seeds) == 0:
            raise ValueError(f"no bin holds min_bin_freq={self.min_bin_freq} points; lower min_bin_freq")
        return seeds * self.bandwidth_

    def _shift(self, source: Source, means: np.ndarray):
        """Shift every seed to the mean of the points within the bandwidth until it stops moving."""
        n_seeds = len(means)
        counts = np.zeros(n_seeds, dtype=np.int64)
        active = np.ones(n_seeds, dtype=bool)
        iterations = np.zeros(n_seeds, dtype=int)
        stop = 1e-3 * self.bandwidth_
        while active.any():
            idx = np.flatnonzero(active)
            sums, within = _sums_within(source, means[idx], self.bandwidth_)
            counts[idx] = within
            empty = within == 0
            active[idx[empty]] = False  # nothing in reach: the seed is dropped (count 0)
            moved = idx[~empty]
            new = sums[~empty] / within[~empty, None]
            shift = np.linalg.norm(new - means[moved], axis=1)
            means[moved] = new
            done = (shift <= stop) | (iterations[moved] == self.max_iter)
            active[moved[done]] = False
            iterations[moved[~done]] += 1
        return means, counts, int(iterations.max())

    def _predict_chunk(self, chunk):
        return nearest_centre(chunk, self.cluster_centers_, self.bandwidth_, self.cluster_all)


def _sums_within(source: Source, centres: np.ndarray, radius: float):
    """For each centre, the sum and the count of the points within ``radius`` (inclusive)."""
    sums = np.zeros_like(centres)
    counts = np.zeros(len(centres), dtype=np.int64)
    centre_norms = (centres ** 2).sum(axis=1)
    for chunk in _chunks(source):
        chunk = chunk.astype(np.float64, copy=False)
        block = max(1, 1_000_000 // len(chunk))  # centres per block: bounds the distance matrix
        chunk_norms = (chunk ** 2).sum(axis=1)
        for start in range(0, len(centres), block):
            part = slice(start, start + block)
            squared = centre_norms[part, None] - 2 * centres[part] @ chunk.T + chunk_norms[None, :]
            near = squared <= radius ** 2
            sums[part] += near @ chunk
            counts[part] += near.sum(axis=1)
    return sums, counts


def merge_centres(means: np.ndarray, counts: np.ndarray, bandwidth: float) -> np.ndarray:
    """scikit-learn's post-processing: strongest centres first, drop any within the bandwidth of a kept one."""
    intensity = {tuple(m.tolist()): int(c) for m, c in zip(means, counts) if c > 0}
    if not intensity:
        raise ValueError(f"no point lies within bandwidth {bandwidth:.4g} of any seed; raise the bandwidth")
    ranked = sorted(intensity.items(), key=lambda item: (item[1], item[0]), reverse=True)
    centres = np.array([centre for centre, _ in ranked])
    unique = np.ones(len(centres), dtype=bool)
    for i in range(len(centres)):
        if unique[i]:
            near = np.linalg.norm(centres - centres[i], axis=1) <= bandwidth
            unique[near] = False
            unique[i] = True
    return centres[unique]


def nearest_centre(X, centres: np.ndarray, bandwidth: float, cluster_all: bool = True) -> np.ndarray:
    """Mean-Shift's labels: each row's nearest centre; without ``cluster_all``, -1 beyond the bandwidth."""
    labels, distances = pairwise_distances_argmin_min(X, centres)
    if not cluster_all:
        labels[distances > bandwidth] = -1
    return labels


def fit_transform_chunked(reducer, X, fit_rows, transform_rows, chunk_rows: int = CHUNK_ROWS):
    """Fit a reducer pipeline on ``X[fit_rows]`` chunk by chunk, then transform ``X[transform_rows]``.

    Each step with ``partial_fit`` (``StandardScaler``, ``IncrementalPCA``) gets one pass
    over the chunks, fed through the steps before it; a step without it (the identity) is
    fitted on the first chunk. Rows outside ``transform_rows`` are NaN in the output.

    Returns
    -------
    reducer : the fitted pipeline
    reduced : ndarray of shape (len(X), n_output_features), float64
    """
    fit_source = array_source(X, fit_rows, chunk_rows)
    for position, (_, step) in enumerate(reducer.steps):
        before = reducer.steps[:position]
        for chunk in fit_source():
            for _, done in before:
                chunk = done.transform(chunk)
            if hasattr(step, "partial_fit"):
                step.partial_fit(chunk)
            else:
                step.fit(chunk)
                break
    rows = np.asarray(transform_rows)
    rows = np.flatnonzero(rows) if rows.dtype == bool else rows
    first = reducer.transform(np.asarray(X[rows[:1]]))
    reduced = np.full((len(X), first.shape[1]), np.nan)
    offset = 0
    for chunk in array_source(X, rows, chunk_rows)():
        reduced[rows[offset:offset + len(chunk)]] = reducer.transform(chunk)
        offset += len(chunk)
    return reducer, reduced
