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


from sklearn.metrics import adjusted_rand_score, balanced_accuracy_score, normalized_mutual_info_score

from facecluster.evaluate import (
    _codes,
    _tables,
    ari_from_tables,
    bootstrap_intervals,
    nmi_from_tables,
    purity,
    silhouette,
)


def test_purity_is_the_share_of_cluster_majorities():
    truth = np.array(["real", "real", "fake", "fake", "fake", "real"], dtype=object)
    assert purity(truth, np.array([0, 0, 0, 1, 1, 2])) == pytest.approx(5 / 6)
    assert purity(truth, np.zeros(6, dtype=int)) == pytest.approx(0.5)
    assert score(truth, truth, np.arange(6))["purity"] == 1.0


def test_silhouette_separated_blobs_high_and_undefined_for_one_cluster():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    clusters = np.repeat([0, 1], 20)
    assert silhouette(points, clusters) > 0.9
    assert silhouette(points, rng.permutation(clusters)) < 0.1
    assert silhouette(points, np.zeros(40, dtype=int)) is None
    assert silhouette(points, np.where(np.arange(40) < 39, 0, -1)) is None  # noise left out → one cluster


def test_vectorised_ari_and_nmi_match_scikit_learn():
    rng = np.random.default_rng(1)
    for trial in range(60):
        n, k = int(rng.integers(2, 30)), int(rng.integers(1, 5))
        truth, clusters = rng.choice(["real", "fake"], n), rng.integers(0, k, n)
        if trial % 5 == 0:
            truth[:] = "real"
        a, b = _codes(truth), _codes(clusters)
        table = _tables(a, b, a.max() + 1, b.max() + 1, np.arange(n)[None])
        assert ari_from_tables(table)[0] == pytest.approx(adjusted_rand_score(truth, clusters))
        assert nmi_from_tables(table)[0] == pytest.approx(normalized_mutual_info_score(truth, clusters))


def test_bootstrap_interval_brackets_the_score_shrinks_with_n_and_is_seeded():
    rng = np.random.default_rng(2)

    def case(n):
        truth = rng.choice(np.array(["real", "fake"], dtype=object), n)
        clusters = np.where(rng.random(n) < 0.8, truth == "fake", truth == "real").astype(int)
        return truth, np.where(clusters == 1, "fake", "real").astype(object), clusters

    truth, predicted, clusters = case(200)
    ci = bootstrap_intervals(truth, predicted, clusters, n_resamples=500, seed=0)
    assert set(ci) == {"balanced_accuracy", "accuracy", "ari", "nmi"}
    point = {"balanced_accuracy": balanced_accuracy_score(truth, predicted), "accuracy": np.mean(truth == predicted),
             "ari": adjusted_rand_score(truth, clusters), "nmi": normalized_mutual_info_score(truth, clusters)}
    for metric, (low, high) in ci.items():
        assert low < point[metric] < high
    assert ci == bootstrap_intervals(truth, predicted, clusters, n_resamples=500, seed=0)
    big = bootstrap_intervals(*case(3000), n_resamples=500, seed=0)
    width = lambda c: c["balanced_accuracy"][1] - c["balanced_accuracy"][0]  # noqa: E731
    assert width(big) < width(ci) / 2
    assert bootstrap_intervals(truth, predicted, clusters, n_resamples=0)["accuracy"] is None


def test_enrichment_naming_is_the_train_balanced_accuracy_optimum_and_survives_imbalance():
    import itertools

    from sklearn.metrics import balanced_accuracy_score

    from facecluster.evaluate import apply_mapping, enrichment_mapping, majority_mapping

    rng = np.random.default_rng(0)
    for _ in range(30):
        k = int(rng.integers(2, 6))
        clusters = rng.integers(0, k, 80)
        labels = np.where(rng.random(80) < 0.2 + 0.6 * (clusters % 2) * rng.random(), "fake", "real").astype(object)
        if len(set(labels)) < 2:
            continue
        ids = sorted(set(clusters.tolist()))
        best = max(balanced_accuracy_score(labels, apply_mapping(clusters, dict(zip(ids, names)), "real"))
                   for names in itertools.product(("real", "fake"), repeat=len(ids)))
        ours = balanced_accuracy_score(labels, apply_mapping(clusters, enrichment_mapping(clusters, labels), "real"))
        assert ours == pytest.approx(best)
    # 25% fakes, one cluster 40% fake: majority names everything real (0.5); enrichment finds it.
    clusters = np.array([0] * 50 + [1] * 50)
    labels = np.array(["fake"] * 20 + ["real"] * 30 + ["fake"] * 5 + ["real"] * 45, dtype=object)
    assert set(majority_mapping(clusters, labels).values()) == {"real"}
    assert enrichment_mapping(clusters, labels) == {0: "fake", 1: "real"}


def test_bootstrap_memory_is_bounded_by_its_block_and_blocks_draw_the_same_resamples(monkeypatch):
    import tracemalloc

    import facecluster.evaluate as evaluate

    rng = np.random.default_rng(3)
    n = 20000
    truth = rng.choice(np.array(["real", "fake"], dtype=object), n)
    clusters = rng.integers(0, 4, n)
    predicted = np.where(clusters % 2 == 0, "real", "fake").astype(object)
    tracemalloc.start()
    try:
        blocked = bootstrap_intervals(truth, predicted, clusters, n_resamples=1000, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # 1000 resamples of 20k rows are 160 MB of int64 indices at once; the blocks hold a tenth of that.
    assert peak < 100 * 2**20
    monkeypatch.setattr(evaluate, "BOOTSTRAP_BLOCK_ELEMENTS", 10**12)  # every resample in one block
    assert bootstrap_intervals(truth, predicted, clusters, n_resamples=1000, seed=0) == blocked
    monkeypatch.setattr(evaluate, "BOOTSTRAP_BLOCK_ELEMENTS", 3 * n + 7)  # blocks of 3, the last one short
    assert bootstrap_intervals(truth, predicted, clusters, n_resamples=1000, seed=0) == blocked
