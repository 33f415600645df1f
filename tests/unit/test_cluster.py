import numpy as np
import pytest
from sklearn.cluster import MeanShift, estimate_bandwidth
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import check_estimator

from facecluster.cluster import CLUSTERERS, NearestCentroidClusterer, QuantileMeanShift, make_clusterer
from sklearn.cluster import AgglomerativeClustering


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
