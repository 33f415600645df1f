"""Typicality: the whitened distance from the train mean, cross-fitted on train (facecluster.reduce)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facecluster.config import MethodConfig, ReduceConfig, TypicalityConfig, dump_config
from facecluster.errors import ConfigError
from facecluster.model import FaceModel, fit_and_evaluate
from facecluster.reduce import Typicality, depends_on_seed, make_reducer
from facecluster.resolve import build_config, load_config
from tests.conftest import truncated


def test_typicality_ranks_the_truncated_rows_high_in_and_out_of_sample():
    X, fake = truncated()
    new, new_fake = truncated(seed=1)
    step = Typicality(n_components=40, skip=4)
    inside = step.fit_transform(X)
    outside = step.transform(new)
    assert inside.shape == (400, 1) and outside.shape == (400, 1)
    assert roc_auc_score(fake, inside[:, 0]) > 0.9
    assert roc_auc_score(new_fake, outside[:, 0]) > 0.9
    assert step.n_components_ == 40 and step.get_feature_names_out().tolist() == ["typicality"]


def test_cross_fitting_puts_train_rows_on_the_scale_of_new_rows():
    """In-sample distances are too small with many components; the cross-fitted ones are not."""
    X, _ = truncated(n=200)
    new, _ = truncated(n=200, seed=1)
    step = Typicality(n_components=50, skip=0)
    crossed = step.fit_transform(X)[:, 0]
    in_sample = step._score(step.pca_, X.astype(np.float64))[:, 0]  # the final PCA on its own rows
    fresh = step.transform(new)[:, 0]
    assert in_sample.mean() - fresh.mean() > 0.1  # fitted to those very rows: biased towards "typical"
    assert abs(crossed.mean() - fresh.mean()) < 0.5 * (in_sample.mean() - fresh.mean())


def test_a_train_row_scored_again_gets_its_cross_fitted_value_not_the_in_sample_one():
    X, _ = truncated(n=200)
    step = Typicality(n_components=50, skip=0)
    crossed = step.fit_transform(X)
    again = step.transform(X[::-1])
    np.testing.assert_array_equal(again[::-1], crossed)
    nudged = X[:5] + np.float32(1e-3)  # not a train row: scored by the final PCA
    np.testing.assert_array_equal(step.transform(nudged), step._score(step.pca_, nudged.astype(np.float64)))
    assert not np.allclose(step.transform(nudged), crossed[:5], atol=1e-3)


def test_typicality_is_deterministic_and_unchanged_by_a_shift_of_every_row():
    X, _ = truncated()
    a = Typicality(n_components=30).fit_transform(X)
    b = Typicality(n_components=30).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    shifted = Typicality(n_components=30).fit_transform(X + np.float32(10.0))
    np.testing.assert_allclose(shifted, a, atol=1e-4)


def test_on_a_small_folder_the_skip_keeps_half_the_components():
    X, _ = truncated(n=12, dim=60)
    step = Typicality(n_components=768, skip=16)
    out = step.fit_transform(X)
    assert step.n_components_ == 6 and step.skip_ == 3  # 12 rows, 5 folds: 9 rows per fold, 2/3 of them
    assert np.isfinite(out).all() and np.isfinite(step.transform(X)).all()
    assert Typicality(n_components=40, skip=4).fit(truncated()[0]).skip_ == 4


def test_config_refuses_typicality_with_incremental_or_too_small_n_components():
    with pytest.raises(ValueError, match="incremental = false"):
        ReduceConfig(n_components=64, incremental=True, typicality=TypicalityConfig())
    with pytest.raises(ValueError, match="leaves no component"):
        ReduceConfig(n_components=16, typicality=TypicalityConfig(skip=16))
    with pytest.raises(ConfigError, match="or typicality = false for PCA alone"):
        build_config("recommended", {"reduce": {"n_components": 8}})
    assert build_config("recommended", {"reduce": {"n_components": 8, "typicality": False}}).reduce.typicality is None
    assert build_config("study", {"reduce": {"n_components": 40, "typicality": True}}).reduce.typicality.skip == 16


def test_make_reducer_and_the_seed():
    config = ReduceConfig(n_components=30, typicality=TypicalityConfig(skip=2))
    assert [name for name, _ in make_reducer(config).steps] == ["typicality"]
    assert not depends_on_seed(config)
    assert depends_on_seed(ReduceConfig(n_components=30)) and not depends_on_seed(ReduceConfig(n_components=None))


def test_restarts_fit_the_typicality_once_and_train_rows_keep_the_cross_fitted_values(monkeypatch):
    X, fake = truncated()
    labels = np.where(fake == 1, "fake", "real").astype(object)
    splits = np.where(np.arange(400) < 300, "train", "valid").astype(object)
    calls = []
    original = Typicality.fit_transform
    monkeypatch.setattr(Typicality, "fit_transform", lambda self, X, y=None: calls.append(len(X)) or original(self, X))
    reduce = ReduceConfig(n_components=40, typicality=TypicalityConfig(skip=4))
    methods = {"gmm": MethodConfig(algorithm="gmm", params={"n_clusters": 2})}
    model, evaluation = fit_and_evaluate(X, ["ok"] * 400, labels, splits, reduce=reduce, methods=methods,
                                         naming="enrichment", n_resamples=0, restarts=4)
    assert calls == [300] and evaluation["restarts"]["seeds"] == [0, 1, 2, 3]
    expected = Typicality(n_components=40, skip=4).fit_transform(X[:300])
    np.testing.assert_array_equal(evaluation["reduced"][:300], expected)
    np.testing.assert_array_equal(evaluation["reduced"][300:], model.transform(X[300:]))
    assert evaluation["methods"]["gmm"]["scores"]["valid"]["balanced_accuracy"] > 0.75


def test_a_typicality_model_survives_save_and_load(tmp_path):
    X, fake = truncated()
    model = FaceModel(reduce=ReduceConfig(n_components=40, typicality=TypicalityConfig(skip=4)),
                      methods={"gmm": MethodConfig(algorithm="gmm", params={"n_clusters": 2})})
    model.fit(X)
    loaded = FaceModel.load(model.save(tmp_path / "model"))
    new, _ = truncated(seed=2)
    np.testing.assert_array_equal(loaded.transform(new), model.transform(new))
    np.testing.assert_array_equal(loaded.predict_clusters(new), model.predict_clusters(new))


@pytest.mark.parametrize("preset, typicality", [("recommended", False), ("study", True)])
def test_config_toml_keeps_typicality_on_or_off_whatever_preset_loads_it(preset, typicality, tmp_path):
    config = build_config(preset, {"reduce": {"n_components": 40, "typicality": typicality}})
    path = tmp_path / "config.toml"
    path.write_text(dump_config(config))
    for other in ("recommended", "study"):
        assert load_config(path, preset=other).reduce == config.reduce


def shifted(seed=0, n=400, dim=60):
    """Rows like `truncated`'s, the "fake" half shrunk to 0.85 and also shifted (±1 along the ten
    largest-variance dimensions): a mean difference the distance from the mean reads only in part."""
    rng = np.random.default_rng(seed)
    fake = np.arange(n) % 2 == 1
    X = rng.normal(size=(n, dim)) * np.geomspace(5.0, 0.2, dim) * np.where(fake, 0.85, 1.0)[:, None]
    X[:, :10] += np.where(fake, 1.0, -1.0)[:, None]
    return (X + 3.0).astype(np.float32), fake.astype(int)


def test_sharpening_by_the_direction_reads_the_shift_the_distance_misses():
    X, fake = shifted()
    new, new_fake = shifted(seed=1)
    plain = Typicality(n_components=40, skip=4).fit(X)
    sharp = Typicality(n_components=40, skip=4, rounds=20)
    inside = sharp.fit_transform(X)
    assert 1 <= sharp.rounds_ <= 20 and sharp.direction_.shape == (X.shape[1],)
    plain_auc = roc_auc_score(new_fake, plain.transform(new)[:, 0])  # about 0.83
    assert roc_auc_score(fake, inside[:, 0]) > plain_auc + 0.05
    assert roc_auc_score(new_fake, sharp.transform(new)[:, 0]) > plain_auc + 0.05  # about 0.94
    np.testing.assert_array_equal(sharp.transform(X), inside)  # train rows keep their cross-fitted values
    again = Typicality(n_components=40, skip=4, rounds=20).fit_transform(X)
    np.testing.assert_array_equal(again, inside)  # deterministic
    # `fit` alone fits the direction too (it needs the cross-fitted groups): the same model.
    np.testing.assert_array_equal(Typicality(n_components=40, skip=4, rounds=20).fit(X).transform(new),
                                  sharp.transform(new))


def test_sharpening_on_a_tiny_folder_stays_finite():
    X, _ = truncated(n=8, dim=20)
    step = Typicality(n_components=4, skip=1, folds=4, rounds=5)
    out = step.fit_transform(X)
    assert out.shape == (8, 1) and np.isfinite(out).all() and np.isfinite(step.transform(X + 1)).all()


def test_a_sharpened_typicality_model_survives_save_and_load(tmp_path):
    X, _ = shifted()
    model = FaceModel(reduce=ReduceConfig(n_components=40, typicality=TypicalityConfig(skip=4, rounds=20)),
                      methods={"gmm": MethodConfig(algorithm="gmm", params={"n_clusters": 2})})
    model.fit(X)
    assert model.reducer_.named_steps["typicality"].rounds_ >= 1
    loaded = FaceModel.load(model.save(tmp_path / "model"))
    new, _ = shifted(seed=2)
    np.testing.assert_array_equal(loaded.transform(new), model.transform(new))
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.predict_clusters(new), model.predict_clusters(new))
