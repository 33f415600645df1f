import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering, MeanShift, estimate_bandwidth
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import check_estimator

from facecluster.cluster import CLUSTERERS, AutoKClusterer, NearestCentroidClusterer, QuantileMeanShift, make_clusterer


def test_quantile_mean_shift_passes_scikit_learn_checks():
    check_estimator(QuantileMeanShift())


def test_nearest_centroid_wrapper_passes_scikit_learn_checks():
    check_estimator(NearestCentroidClusterer(AgglomerativeClustering(n_clusters=2)))


def test_quantile_mean_shift_matches_the_study_recipe():
    X, _ = make_blobs(300, centers=4, cluster_std=0.6, random_state=1)
    ours = QuantileMeanShift(quantile=0.0855).fit(X)
    bandwidth = estimate_bandwidth(X, quantile=0.0855, random_state=0)
    theirs = MeanShift(bandwidth=bandwidth).fit(X)
    assert ours.bandwidth_ == pytest.approx(bandwidth)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_array_equal(ours.predict(X), ours.labels_)


@pytest.mark.parametrize("algorithm", sorted(CLUSTERERS))
def test_every_registered_clusterer_fits_train_and_predicts_new_points(algorithm):
    X, _ = make_blobs(120, centers=2, cluster_std=0.5, random_state=0)
    params = {"meanshift": {"quantile": 0.3}, "meanshift-stream": {"quantile": 0.3}, "birch": {"n_clusters": 2},
              "hdbscan": {"min_cluster_size": 5}}.get(
        algorithm, {"n_clusters": 2})
    model = make_clusterer(algorithm, params).fit(X[:80])
    predicted = model.predict(X[80:])
    assert predicted.shape == (40,)
    assert len(np.unique(predicted)) == 2


def test_unknown_algorithm_and_bad_parameter_are_clear_errors():
    with pytest.raises(ValueError, match="choose one of"):
        make_clusterer("dbscan-ish")
    with pytest.raises(ValueError, match="birch: bad parameter"):
        make_clusterer("birch", {"no_such": 1})




def test_auto_k_clusterer_passes_scikit_learn_checks():
    check_estimator(AutoKClusterer("birch", k_range=(2, 4)))


@pytest.mark.parametrize("algorithm, criterion", [("kmeans", "silhouette"), ("agglomerative", "silhouette"),
                                                  ("birch", "silhouette"), ("gmm", "bic")])
def test_auto_k_finds_the_number_of_blobs(algorithm, criterion):
    X, _ = make_blobs(240, centers=4, cluster_std=0.4, random_state=3)
    params = {"n_clusters": "auto", "k_range": [2, 7]}
    if algorithm == "birch":
        params["threshold"] = 0.2
    model = make_clusterer(algorithm, params).fit(X)
    assert isinstance(model, AutoKClusterer)
    assert model.criterion_ == criterion
    assert model.n_clusters_ == 4
    assert set(model.criterion_scores_) == set(range(2, 8))
    assert len(np.unique(model.predict(X))) == 4


def test_auto_k_is_refused_where_it_makes_no_sense():
    with pytest.raises(ValueError, match="needs an algorithm that takes n_clusters"):
        make_clusterer("meanshift", {"n_clusters": "auto"})
    with pytest.raises(ValueError, match="criterion 'bic' needs a likelihood"):
        make_clusterer("kmeans", {"n_clusters": "auto", "criterion": "bic"})
    with pytest.raises(ValueError, match="k_range"):
        make_clusterer("kmeans", {"n_clusters": "auto", "k_range": [5, 2]})


def test_quantile_mean_shift_falls_back_from_bin_seeding_when_no_seed_is_near():
    # Two tight groups whose coordinates all sit half a bandwidth past a bin edge: in 20
    # dimensions every bin seed is ~2.2 bandwidths from every point.
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(0, 1e-3, (40, 20)))
    X[20:, 0] += 1.0
    X += 0.5 * estimate_bandwidth(X, quantile=0.9, random_state=0)
    with pytest.raises(ValueError, match="No point was within bandwidth"):
        MeanShift(bandwidth=estimate_bandwidth(X, quantile=0.9, random_state=0), bin_seeding=True).fit(X)
    model = QuantileMeanShift(quantile=0.9, bin_seeding=True).fit(X)
    np.testing.assert_array_equal(model.labels_, QuantileMeanShift(quantile=0.9).fit(X).labels_)


@pytest.mark.parametrize("bin_seeding", [False, True])
@pytest.mark.parametrize("cluster_all", [True, False])
@pytest.mark.parametrize("n_features, quantile", [(2, 0.0855), (3, 0.15), (5, 0.1)])
def test_quantile_mean_shift_gives_exactly_scikit_learns_mean_shift(bin_seeding, cluster_all, n_features, quantile):
    # The seeds are shifted all at once; centres, labels and iterations must still be scikit-learn's, bit for bit.
    X, _ = make_blobs(600, n_features=n_features, centers=5, cluster_std=1.5, random_state=n_features)
    X = np.vstack([X, X[:40]])  # duplicated points give seeds with equal means and counts
    ours = QuantileMeanShift(quantile=quantile, bin_seeding=bin_seeding, cluster_all=cluster_all).fit(X)
    theirs = MeanShift(bandwidth=ours.bandwidth_, bin_seeding=bin_seeding, cluster_all=cluster_all).fit(X)
    assert len(theirs.cluster_centers_) > 1
    np.testing.assert_array_equal(ours.cluster_centers_, theirs.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    assert ours.n_iter_ == theirs.n_iter_


def test_mean_shift_in_small_query_blocks_gives_the_same_clusters(monkeypatch):
    import facecluster.cluster

    X, _ = make_blobs(500, n_features=2, centers=4, cluster_std=1.5, random_state=1)
    whole = QuantileMeanShift(quantile=0.0855).fit(X)
    monkeypatch.setattr(facecluster.cluster, "NEIGHBOUR_BUDGET", 500 * 7)  # 7 seeds per query
    blocked = QuantileMeanShift(quantile=0.0855).fit(X)
    np.testing.assert_array_equal(whole.cluster_centers_, blocked.cluster_centers_)
    np.testing.assert_array_equal(whole.labels_, blocked.labels_)
