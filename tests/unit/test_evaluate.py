import numpy as np
import pytest

from facecluster.evaluate import apply_mapping, cluster_summary, majority_mapping, score


def test_majority_mapping_and_unknown_clusters_take_default():
    clusters = np.array([0, 0, 0, 1, 1, 2])
    labels = np.array(["real", "real", "fake", "fake", "fake", "real"], dtype=object)
    mapping = majority_mapping(clusters, labels)
    assert mapping == {0: "real", 1: "fake", 2: "real"}
    assert apply_mapping(np.array([0, 1, 7]), mapping, "fake").tolist() == ["real", "fake", "fake"]


def test_tie_goes_to_overall_majority():
    mapping = majority_mapping(np.array([0, 0, 1, 1, 1]), np.array(["real", "fake", "fake", "fake", "real"], dtype=object))
    assert mapping[0] == "fake"


def test_scores_on_a_known_case():
    truth = np.array(["real"] * 6 + ["fake"] * 2, dtype=object)
    predicted = np.array(["real"] * 8, dtype=object)
    result = score(truth, predicted, np.zeros(8, dtype=int))
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["balanced_accuracy"] == pytest.approx(0.5)
    assert result["ari"] == pytest.approx(0.0)
    assert result["confusion"]["matrix"] == [[6, 0], [2, 0]]


def test_cluster_summary_counts_labels():
    summary = cluster_summary(np.array([0, 0, 1]), np.array(["real", "fake", "fake"], dtype=object))
    assert summary == {"0": {"real": 1, "fake": 1}, "1": {"real": 0, "fake": 1}}
