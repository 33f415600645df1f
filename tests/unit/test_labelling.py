"""Tool-chosen labels and label-free refinement: what is asked, how clusters are named from few answers."""

import numpy as np
import pytest

from facecluster.cluster import make_clusterer
from facecluster.config import MethodConfig, ReduceConfig
from facecluster.evaluate import enrichment_mapping, majority_mapping
from facecluster.labelling import (
    agreement,
    choose_clustering,
    choose_rows_to_label,
    leave_one_out_score,
    medoid_rows,
    partial_labels,
    propagate,
    random_rows,
)
from facecluster.model import FaceModel, fit_and_evaluate


def two_blobs(seed=0, n=150, shift=3.0, dim=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (2 * n, dim))
    X[n:, 0] += shift
    labels = np.array(["real"] * n + ["fake"] * n, dtype=object)
    return X, labels


# -- choosing what to label -------------------------------------------------------------------

def test_chosen_rows_are_k_distinct_train_rows_deterministic_with_the_medoids_first():
    X, _ = two_blobs()
    kmeans = make_clusterer("kmeans", {"n_clusters": 2}).fit(X).labels_
    refine = make_clusterer("refine", {"n_clusters": 2}).fit(X)
    certainty = refine.predict_proba(X).max(axis=1)
    for k in (0, 1, 2, 8, 33, len(X)):
        for then in ("typical", "doubtful"):
            rows = choose_rows_to_label(X, [refine.labels_, kmeans], k, certainty, n_clusters=2, then=then)
            again = choose_rows_to_label(X.copy(), [refine.labels_.copy(), kmeans.copy()], k, certainty.copy(), 2,
                                         then=then)
            np.testing.assert_array_equal(rows, again)
            assert len(rows) == k == len(set(rows.tolist())) and (rows >= 0).all() and (rows < len(X)).all()
    rows = choose_rows_to_label(X, [refine.labels_, kmeans], 8, certainty, n_clusters=2, then="doubtful")
    assert set(rows[:2]) == set(medoid_rows(X, refine.labels_))
    # After the medoids, the clusters take turns: each primary cluster gets half of the rest.
    assert sorted(np.bincount(refine.labels_[rows[2:]]).tolist()) == [3, 3]
    # The doubtful points come next: closer to the boundary than the cluster's typical member.
    margin = np.abs(refine.predict_proba(X)[:, 0] - 0.5)
    assert np.median(margin[rows[2:]]) < np.median(margin)
    with pytest.raises(ValueError, match="cannot choose"):
        choose_rows_to_label(X, [kmeans], len(X) + 1)


def test_a_medoid_is_the_member_with_least_total_distance():
    X = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [100.0], [101.0], [103.0]])
    clusters = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    assert medoid_rows(X, clusters).tolist() == [2, 6]  # largest cluster first; not the member nearest the mean (3)


def test_agreement_is_one_for_the_same_partition_under_other_ids_and_low_where_they_split():
    a = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(agreement(a, 1 - a), np.ones(6))
    b = np.array([0, 0, 1, 1, 1, 1])
    assert agreement(a, b)[2] < agreement(a, b)[0]


def test_random_rows_are_distinct_and_seeded():
    rows = random_rows(50, 20, seed=3)
    assert len(set(rows.tolist())) == 20 and rows.max() < 50
    np.testing.assert_array_equal(rows, random_rows(50, 20, seed=3))
    assert not np.array_equal(rows, random_rows(50, 20, seed=4))


# -- naming from a partial label vector -------------------------------------------------------

def test_naming_rules_use_labelled_rows_only_and_leave_unlabelled_clusters_unnamed():
    clusters = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    labels = np.array(["fake", None, None, "real", "real", None, None, None], dtype=object)
    assert majority_mapping(clusters, labels) == {0: "fake", 1: "real"}
    assert enrichment_mapping(clusters, labels) == {0: "fake", 1: "real"}  # prior from the 3 labels: 1/3 fake
    # An unlabelled row, whatever its true label would be, changes nothing.
    full = labels.copy()
    full[[1, 2]] = "real"
    assert majority_mapping(clusters, full) == {0: "real", 1: "real"}
    assert propagate(clusters, labels).tolist() == ["fake"] * 3 + ["real"] * 5  # cluster 2: the labelled majority
    with pytest.raises(ValueError, match="no labelled rows"):
        majority_mapping(clusters, np.full(8, None, dtype=object))


def test_face_model_names_clusters_from_a_partial_label_vector():
    X, labels = two_blobs()
    model = FaceModel(reduce=ReduceConfig(n_components=2),
                      methods={"refine": MethodConfig(algorithm="refine", params={"n_clusters": 2})})
    model.fit(X)
    clusters = {"refine": model.predict_clusters(X, "refine")}
    for k in (2, 9):
        chosen = choose_rows_to_label(model.transform(X), [clusters["refine"]], k)
        model.name_clusters(clusters, partial_labels(labels, chosen), np.ones(len(X), dtype=bool))
        assert model.mappings_["refine"]["source"] == "majority"
        assert np.mean(model.predict(X) == labels) > 0.9  # a few answers name well-separated clusters


def test_leave_one_out_prefers_the_clustering_that_agrees_with_the_labels():
    X, labels = two_blobs()
    good = (X[:, 0] > 1.5).astype(int)
    bad = (X[:, 1] > 0).astype(int)  # splits every class in half
    rows = random_rows(len(X), 20, seed=0)
    partial = partial_labels(labels, rows)
    assert leave_one_out_score(good, partial) > 0.9
    best, scores = choose_clustering({"bad": bad, "good": good}, partial)
    assert best == "good" and scores["bad"] < scores["good"]
    assert leave_one_out_score(good, partial_labels(labels, [0, 1])) is None  # one class labelled


# -- the refinement ---------------------------------------------------------------------------

def test_refine_never_reads_labels_shuffled_labels_give_the_same_clusters():
    X, labels = two_blobs(seed=1, shift=2.0)
    splits = np.array(["train", "valid"] * (len(X) // 2), dtype=object)
    methods = {"refine": MethodConfig(algorithm="refine", params={"n_clusters": 2, "n_rounds": 4})}
    shuffled = np.random.default_rng(0).permutation(labels)
    runs = [fit_and_evaluate(X.astype(np.float32), ["ok"] * len(X), y, splits, reduce=ReduceConfig(n_components=3),
                             methods=methods, n_resamples=0)[1] for y in (labels, shuffled)]
    np.testing.assert_array_equal(runs[0]["clusters"]["refine"], runs[1]["clusters"]["refine"])
    direct = [make_clusterer("refine", {"n_clusters": 2}).fit(X, y).labels_ for y in (labels, shuffled, None)]
    np.testing.assert_array_equal(direct[0], direct[1])
    np.testing.assert_array_equal(direct[0], direct[2])


def test_refine_assigns_by_its_classifier_and_stops_when_nothing_moves():
    X, labels = two_blobs(seed=2, shift=4.0)
    model = make_clusterer("refine", {"n_clusters": 2, "n_rounds": 20}).fit(X)
    assert model.moved_[-1] == 0 and model.n_rounds_ < 20
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    assert max(np.mean(model.labels_ == (labels == "fake")), np.mean(model.labels_ == (labels == "real"))) > 0.95
    unrefined = make_clusterer("refine", {"n_clusters": 2, "n_rounds": 0}).fit(X)
    np.testing.assert_array_equal(unrefined.labels_, unrefined.initial_labels_)
    assert unrefined.n_rounds_ == 0


def test_refine_refuses_bad_parameters_and_too_few_points():
    from facecluster.cluster import check_method

    with pytest.raises(ValueError, match="methods.r.params.confident_fraction"):
        check_method("r", "refine", {"confident_fraction": 0.0})
    with pytest.raises(ValueError, match="init"):
        check_method("r", "refine", {"init": "dbscan"})
    with pytest.raises(ValueError, match="at least 6 points"):
        make_clusterer("refine", {"n_clusters": 3}).fit(np.zeros((5, 2)))


def test_typical_rows_are_distinct_deterministic_and_cover_every_region():
    rng = np.random.default_rng(5)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [20, 20], [30, 0], [0, 30], [30, 30]], dtype=float)
    X = np.repeat(centres, 40, axis=0) + rng.normal(0, 0.5, (320, 2))
    primary = (X[:, 0] > 15).astype(int)
    rows = choose_rows_to_label(X, [primary], 10, then="typical")
    np.testing.assert_array_equal(rows, choose_rows_to_label(X, [primary], 10, then="typical"))
    assert len(set(rows.tolist())) == 10 and set(rows[:2]) == set(medoid_rows(X, primary))
    assert set(np.arange(320)[rows] // 40) == set(range(8))  # one answer at least from each of the 8 blobs
    with pytest.raises(ValueError, match="strategy"):
        choose_rows_to_label(X, [primary], 4, then="clever")


def test_spread_gives_each_row_its_nearest_answer():
    from facecluster.labelling import spread_to_nearest

    X = np.array([[0.0], [1.0], [2.0], [9.0], [10.0]])
    labels = np.array(["real", None, None, None, "fake"], dtype=object)
    assert spread_to_nearest(X, labels).tolist() == ["real", "real", "real", "fake", "fake"]
    # Spreading inside the leave-one-out: each held-out answer is predicted from the others' regions.
    clusters = np.array([0, 0, 0, 1, 1])
    two = np.array(["real", None, None, "fake", "fake"], dtype=object)
    assert leave_one_out_score(clusters, two, spread_in=X) == leave_one_out_score(clusters, two)


def test_refine_chooses_its_number_of_clusters_on_train_without_labels():
    rng = np.random.default_rng(0)
    X = np.repeat(np.array([[0, 0], [8, 0], [0, 8]], dtype=float), 60, axis=0) + rng.normal(0, 1, (180, 2))
    model = make_clusterer("refine", {"n_clusters": "auto", "k_range": [2, 5]}).fit(X)
    assert model.n_clusters_ == 3 and model.criterion_ == "silhouette"
    assert isinstance(model.estimator_, type(make_clusterer("refine")))
