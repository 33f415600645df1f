import numpy as np
import pytest

from facecluster.supervised import make_classifier, supervised_ceiling


def _data(shift, n=120, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.array(["real", "fake"] * (n // 2), dtype=object)
    features = rng.normal(0, 1, (n, 6))
    features[labels == "fake", 0] += shift
    splits = np.array(["train"] * (2 * n // 3) + ["valid"] * (n - 2 * n // 3), dtype=object)
    return features, labels, splits


def test_supervised_ceiling_separates_separable_data_and_not_noise():
    separable = supervised_ceiling(*_data(6.0))
    assert set(separable) == {"logistic_regression", "linear_svm"}
    for model in separable.values():
        assert set(model) == {"train", "valid"}
        assert model["valid"]["balanced_accuracy"] > 0.95
    noise = supervised_ceiling(*_data(0.0, n=600))
    assert all(0.35 < model["valid"]["balanced_accuracy"] < 0.65 for model in noise.values())


def test_supervised_ceiling_ignores_unusable_rows_and_needs_two_classes():
    features, labels, splits = _data(6.0)
    features[0] = np.nan
    usable = np.ones(len(labels), dtype=bool)
    usable[0] = False
    assert supervised_ceiling(features, labels, splits, usable)["linear_svm"]["train"]["n"] == usable[splits == "train"].sum()
    assert supervised_ceiling(features, np.full(len(labels), "real", dtype=object), splits) == {}
    with pytest.raises(ValueError, match="choose one of"):
        make_classifier("forest")


def test_the_ceiling_fits_on_at_most_a_bounded_sample_per_label_and_on_everything_below_it():
    from facecluster.supervised import bounded_rows

    labels = np.array(["real"] * 50 + ["fake"] * 20 + [None] * 5, dtype=object)
    rows = np.ones(len(labels), dtype=bool)
    rows[-5:] = False
    everything = bounded_rows(rows, labels, per_label=50)
    assert everything.tolist() == list(range(70))  # below the bound: every row, in order
    kept = bounded_rows(rows, labels, per_label=10, seed=3)
    assert (labels[kept] == "real").sum() == 10 and (labels[kept] == "fake").sum() == 10
    assert np.all(np.diff(kept) > 0) and kept.tolist() == bounded_rows(rows, labels, per_label=10, seed=3).tolist()
    assert kept.tolist() != bounded_rows(rows, labels, per_label=10, seed=4).tolist()
