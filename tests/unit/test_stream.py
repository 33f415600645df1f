import tracemalloc

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import Birch, MeanShift, estimate_bandwidth
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from facecluster.store import FeatureStore
from facecluster.stream import (
    StreamingBirch,
    StreamingMeanShift,
    StreamingMiniBatchKMeans,
    array_source,
    fit_transform_chunked,
    reservoir_sample,
    table_source,
)


@pytest.fixture
def blobs():
    return make_blobs(600, n_features=5, centers=4, cluster_std=0.5, random_state=3)


def test_array_source_covers_every_row_once_in_balanced_chunks():
    X = np.arange(103 * 2).reshape(103, 2)
    chunks = list(array_source(X, chunk_rows=25)())
    assert len(chunks) == 5 and {len(c) for c in chunks} == {20, 21}
    np.testing.assert_array_equal(np.concatenate(chunks), X)
    rows = np.zeros(103, bool)
    rows[[5, 7, 90]] = True
    np.testing.assert_array_equal(np.concatenate(list(array_source(X, rows, 2)())), X[[5, 7, 90]])


def test_reservoir_sample_is_a_sample_of_distinct_rows():
    X = np.arange(1000, dtype=float).reshape(500, 2)
    sample = reservoir_sample(array_source(X, chunk_rows=64), 50, random_state=0)
    assert sample.shape == (50, 2)
    assert len(np.unique(sample[:, 0])) == 50 and np.isin(sample[:, 0], X[:, 0]).all()
    assert sample[:, 0].mean() == pytest.approx(X[:, 0].mean(), rel=0.2)  # spread over the stream, not its head
    assert len(reservoir_sample(array_source(X), 10_000, 0)) == 500


def test_streaming_birch_builds_the_same_tree_as_birch(blobs):
    X, _ = blobs
    ours = StreamingBirch(threshold=0.4, n_clusters=4, chunk_rows=50).fit(X)
    theirs = Birch(threshold=0.4, n_clusters=4).fit(X)
    np.testing.assert_allclose(ours.subcluster_centers_, theirs.subcluster_centers_)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_array_equal(ours.predict(X[:7]), theirs.predict(X[:7]))


@pytest.mark.parametrize("dims", [2, 5])
def test_streaming_mean_shift_finds_the_centres_of_binned_mean_shift(dims):
    X, _ = make_blobs(500, n_features=dims, centers=3, cluster_std=0.6, random_state=1)
    bandwidth = estimate_bandwidth(X, quantile=0.2)
    ours = StreamingMeanShift(bandwidth=bandwidth, chunk_rows=64).fit(X)
    theirs = MeanShift(bandwidth=bandwidth, bin_seeding=True).fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, atol=1e-9)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)


def test_streaming_mean_shift_estimates_the_bandwidth_on_a_sample(blobs):
    X, y = blobs
    whole = StreamingMeanShift(quantile=0.2, n_samples=10_000).fit(X)
    assert whole.bandwidth_ == pytest.approx(estimate_bandwidth(X, quantile=0.2))
    sampled = StreamingMeanShift(quantile=0.2, n_samples=200, random_state=0).fit(X)
    assert sampled.bandwidth_ == pytest.approx(whole.bandwidth_, rel=0.25)
    assert adjusted_rand_score(y, sampled.labels_) > 0.95


def test_streaming_mean_shift_refuses_seeds_it_cannot_afford():
    X = np.random.default_rng(0).normal(size=(300, 64))
    with pytest.raises(ValueError, match="reduce.n_components"):
        StreamingMeanShift(bandwidth=0.5, max_seeds=100).fit(X)


def test_streaming_minibatch_kmeans_finds_blobs_even_in_class_sorted_shards(blobs):
    X, y = blobs
    order = np.argsort(y, kind="stable")  # every chunk holds one class: a naive first-chunk init would fail
    model = StreamingMiniBatchKMeans(n_clusters=4, batch_size=32, init_size=100, chunk_rows=150).fit(X[order])
    assert adjusted_rand_score(y[order], model.labels_) > 0.99
    np.testing.assert_array_equal(model.predict(X[order]), model.labels_)
    again = StreamingMiniBatchKMeans(n_clusters=4, batch_size=32, init_size=100, chunk_rows=150).fit(X[order])
    np.testing.assert_array_equal(again.labels_, model.labels_)


@pytest.mark.parametrize("estimator", [StreamingBirch(threshold=1.0, n_clusters=4),
                                       StreamingMiniBatchKMeans(n_clusters=4, init_size=500),
                                       StreamingMeanShift(quantile=0.2, n_samples=500)])
def test_clusterers_stream_a_feature_table_shard_by_shard(tmp_path, blobs, estimator):
    X, y = blobs
    table = FeatureStore(tmp_path).table("x", {})
    table.shard_rows = 100
    keys = [f"k{i}" for i in range(len(X))]
    table.put(keys, X)
    model = estimator.fit_stream(table_source(table))
    truth = dict(zip(keys, y))
    shards = list(table.iter_shards())
    labels = np.concatenate(list(model.predict_stream(table_source(table))))
    streamed_truth = [truth[k] for s in shards for k in s.keys]
    assert len(labels) == len(X)
    assert adjusted_rand_score(streamed_truth, labels) > 0.95


def _peak_while_fitting(estimator, path, rows, dims) -> int:
    """Peak traced allocation while fitting on, then labelling, ``rows`` rows kept on disk."""
    X, _ = make_blobs(rows, n_features=dims, centers=4, cluster_std=0.5, random_state=0)
    on_disk = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=X.shape)
    on_disk[:] = X
    del X
    tracemalloc.start()
    try:
        estimator.fit_stream(array_source(on_disk, chunk_rows=1000))
        labelled = sum(len(labels) for labels in estimator.predict_stream(array_source(on_disk, chunk_rows=1000)))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert labelled == rows


@pytest.mark.parametrize("estimator, dims, rows, share", [
    (StreamingBirch(threshold=2.0, n_clusters=4), 8, 40_000, 4),
    (StreamingMiniBatchKMeans(n_clusters=4, init_size=1000), 8, 40_000, 4),
    # Mean-Shift's use is after PCA, on few dimensions; its seeds (bins) grow a little with the data.
    (StreamingMeanShift(quantile=0.1, n_samples=500, min_bin_freq=10), 2, 200_000, 2),
])
def test_fitting_memory_does_not_grow_with_the_data(tmp_path, estimator, dims, rows, share):
    _peak_while_fitting(clone(estimator), tmp_path / "warm.npy", 2000, dims)  # first-call allocations
    small = _peak_while_fitting(clone(estimator), tmp_path / "small.npy", 10_000, dims)
    fitted = clone(estimator)
    large = _peak_while_fitting(fitted, tmp_path / "large.npy", rows, dims)
    assert fitted.n_clusters_ == 4
    grown_data = (rows - 10_000) * dims * 8  # what holding the extra rows as float64 would add
    assert large - small < grown_data / share


def test_incremental_pca_pipeline_fitted_in_chunks_matches_pca(blobs):
    X, _ = blobs
    train = np.arange(len(X)) % 3 != 0
    usable = np.ones(len(X), bool)
    usable[10] = False
    reducer, reduced = fit_transform_chunked(Pipeline([("standardize", StandardScaler()),
                                                       ("pca", IncrementalPCA(n_components=2))]),
                                             X, train, usable, chunk_rows=100)
    exact = Pipeline([("standardize", StandardScaler()), ("pca", PCA(n_components=2))]).fit(X[train])
    assert np.isnan(reduced[10]).all() and not np.isnan(np.delete(reduced, 10, axis=0)).any()
    expected = exact.transform(X[usable])
    for k in range(2):  # components agree up to sign
        a, b = reduced[usable, k], expected[:, k]
        assert min(np.abs(a - b).max(), np.abs(a + b).max()) < 0.05 * np.abs(b).max()


@pytest.mark.parametrize("estimator", [StreamingBirch(), StreamingMiniBatchKMeans(n_clusters=3), StreamingMeanShift()],
                         ids=lambda e: type(e).__name__)
def test_streaming_clusterers_pass_scikit_learn_checks(estimator):
    check_estimator(estimator)
