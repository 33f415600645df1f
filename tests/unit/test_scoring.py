"""Scoring folders nobody labelled: unlabelled runs, fit → score without re-fitting, names by hand, the tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facecluster.cli import app
from facecluster.engines.local import LocalEngine
from facecluster.errors import ModelError
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.score_table import COLUMNS
from facecluster.scoring import load_model, score_folder
from facecluster.store import FeatureStore
from facecluster.score_table import rank_of
from facecluster.synthetic import ClusterDensity, calibrate, probability
from tests.conftest import image_rows, make_dataset

METHODS = {"kmeans": {"algorithm": "kmeans", "params": {"n_clusters": 2}},
           "birch": {"algorithm": "birch", "params": {"n_clusters": 2, "threshold": 0.05}}}


def _config(extractor="tiny", **dataset):
    return build_config("study", {"faces": {"detector": "none"}, "features": {"extractor": extractor},
                                  "reduce": {"standardize": True, "n_components": 2}, "methods": METHODS,
                                  "evaluation": {"bootstrap_resamples": 20, "naming": "enrichment"},
                                  "dataset": dataset})


def _flatten(labelled: Path, flat: Path) -> dict[str, str]:
    """Copy every image of a labelled dataset into one flat folder under meaningless names; return name → label."""
    flat.mkdir(parents=True)
    truth = {}
    for k, path in enumerate(sorted(labelled.rglob("*.jpg"))):
        name = f"{(k * 7919) % 10007:05d}.jpg"
        shutil.copy(path, flat / name)
        truth[name] = path.parent.name
    return truth


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "cache")


def test_an_unlabelled_folder_runs_end_to_end_and_every_file_has_a_row(tmp_path, tiny_extractor, store):
    truth = _flatten(make_dataset(tmp_path / "labelled", {"train": {"real": 10, "fake": 10}}), tmp_path / "flat")
    (tmp_path / "flat" / "broken.jpg").write_bytes(b"not a jpeg")
    results = run(tmp_path / "flat", _config(), tmp_path / "run", store=store, engine=LocalEngine(workers=0),
                  progress=False)
    assert results["dataset"]["split_source"] == "unlabelled" and results["dataset"]["n_labelled"] == 0
    for method in results["methods"].values():
        assert method["mapping"] is None and method["scores"] == {}  # absent, not zero
        assert method["train_criteria"]["silhouette"] is not None  # what needs no labels is still there
    assert results["scoring"]["named"] is False and results["scoring"]["n_scored"] == 0
    table = pd.read_csv(tmp_path / "run" / "scores.csv")
    assert sorted(table["path"]) == sorted([*truth, "broken.jpg"])
    broken = table[table["path"] == "broken.jpg"].iloc[0]
    assert broken["status"] != "ok" and isinstance(broken["reason"], str) and pd.isna(broken["cluster"])
    assert table["score"].isna().all() and table["cluster"].notna().sum() == len(truth)
    assert (tmp_path / "run" / "report.html").stat().st_size > 10_000


def test_fit_then_score_the_train_folder_reproduces_the_run_and_scores_rank_fakes_first(tmp_path, tiny_extractor,
                                                                                        store):
    data = make_dataset(tmp_path / "data", {"train": {"real": 14, "fake": 14}, "valid": {"real": 6, "fake": 6}})
    fitted = run(data, _config(), tmp_path / "fit", store=store, engine=LocalEngine(workers=0), progress=False)
    scored = score_folder(data, tmp_path / "fit", tmp_path / "score", store=store, engine=LocalEngine(workers=0),
                          progress=False)
    ran = {e["path"]: e for e in image_rows(tmp_path / "fit")}
    assert scored["images"] == {"table": "images.parquet", "rows": len(ran), "row_group": 16384,
                                "methods": list(scored["methods"])}
    for entry in image_rows(tmp_path / "score"):
        assert entry["clusters"] == ran[entry["path"]]["clusters"]  # same clusters, nothing re-fitted
        for name, value in entry["scores"].items():
            assert value == pytest.approx(ran[entry["path"]]["scores"][name], abs=1e-6)
    method = scored["scoring"]["method"]
    assert method == fitted["scoring"]["method"]
    for split in ("train", "valid"):
        assert scored["methods"][method]["scores"][split]["balanced_accuracy"] == \
            fitted["methods"][method]["scores"][split]["balanced_accuracy"]
        assert fitted["methods"][method]["scores"][split]["roc_auc"] > 0.9  # the tiny fakes are warmer: easy
    table = pd.read_parquet(tmp_path / "score" / "scores.parquet")
    assert list(table.columns) == list(COLUMNS)
    assert sorted(table["rank"].tolist()) == list(range(1, len(table) + 1))
    top = table.sort_values("rank").head(6)
    assert (top["given_label"] == "fake").all()

    # The Python API gives the same table, from a folder or a list of paths.
    model = load_model(tmp_path / "fit")
    frame = model.score(data, store=store, engine=LocalEngine(workers=0))
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), table.reset_index(drop=True), check_dtype=False)
    paths = sorted((data / "valid").rglob("*.jpg"))[:3] + [tmp_path / "missing.jpg"]
    listed = model.score(paths, store=store, engine=LocalEngine(workers=0))
    assert len(listed) == 4 and listed["score"].notna().sum() == 3 and listed.iloc[3]["status"] != "ok"


def test_csv_and_parquet_hold_the_same_table_with_nulls_kept(tmp_path, tiny_extractor, store):
    data = make_dataset(tmp_path / "data", {"train": {"real": 8, "fake": 8}})
    (data / "train" / "fake" / "empty.jpg").write_bytes(b"")
    run(data, _config(), tmp_path / "run", store=store, engine=LocalEngine(workers=0), progress=False)
    from_csv = pd.read_csv(tmp_path / "run" / "scores.csv", keep_default_na=True)
    from_parquet = pd.read_parquet(tmp_path / "run" / "scores.parquet")
    assert len(from_csv) == len(from_parquet) == 17
    for column in COLUMNS:
        a, b = from_csv[column], from_parquet[column]
        assert a.isna().tolist() == b.isna().tolist(), column
        kept = a.notna()
        if b.dtype.kind in "fiu" or str(b.dtype) in ("Int64", "Float64"):
            np.testing.assert_allclose(a[kept].astype(float), b[kept].astype(float), rtol=1e-9, err_msg=column)
        else:
            assert a[kept].astype(str).tolist() == b[kept].astype(str).tolist(), column
    empty = from_parquet[from_parquet["path"].str.endswith("empty.jpg")].iloc[0]
    assert empty["status"] == "empty_file" and pd.isna(empty["score"]) and pd.isna(empty["rank"])


def test_ten_percent_labels_name_the_clusters_and_the_rest_is_predicted(tmp_path, tiny_extractor, store):
    truth = _flatten(make_dataset(tmp_path / "labelled", {"train": {"real": 20, "fake": 20}}), tmp_path / "flat")
    names = sorted(truth)
    given = [n for n in names if truth[n] == "fake"][:2] + [n for n in names if truth[n] == "real"][:2]
    (tmp_path / "some.csv").write_text("path,label\n" + "".join(f"{n},{truth[n]}\n" for n in given))
    results = run(tmp_path / "flat", _config(labels=str(tmp_path / "some.csv")), tmp_path / "run", store=store,
                  engine=LocalEngine(workers=0), progress=False)
    assert results["dataset"]["n_labelled"] == 4
    method = results["scoring"]["method"]
    assert results["methods"][method]["scores"]["train"]["n"] == 4  # scored on the labelled four only
    table = pd.read_csv(tmp_path / "run" / "scores.csv")
    rest = table[~table["path"].isin(given)]
    assert rest["score"].notna().all() and rest["label"].notna().all()
    accuracy = np.mean([label == truth[path] for path, label in zip(rest["path"], rest["label"])])
    assert accuracy > 0.9  # 4 labels named the clusters; the 36 others are predicted


def test_naming_by_hand_changes_the_names_and_the_scores_without_refitting(tmp_path, tiny_extractor, store):
    from typer.testing import CliRunner

    truth = _flatten(make_dataset(tmp_path / "labelled", {"train": {"real": 10, "fake": 10}}), tmp_path / "flat")
    run(tmp_path / "flat", _config(), tmp_path / "fit", store=store, engine=LocalEngine(workers=0), progress=False)
    first = image_rows(tmp_path / "fit")
    method = load_model(tmp_path / "fit").model._method(None)
    fake_cluster = next(e["clusters"][method] for e in first if truth[e["path"]] == "fake")
    names = [f"{fake_cluster}=fake", f"{1 - fake_cluster}=real"]
    result = CliRunner().invoke(app, ["name", str(tmp_path / "fit"), *names, "--method", method])
    assert result.exit_code == 0, result.output
    score_folder(tmp_path / "flat", tmp_path / "fit", tmp_path / "score", store=store, engine=LocalEngine(workers=0),
                 progress=False)
    table = pd.read_csv(tmp_path / "score" / "scores.csv")
    assert [e["clusters"][method] for e in image_rows(tmp_path / "score")] == [e["clusters"][method] for e in first]
    predicted = dict(zip(table["path"], table["label"]))
    assert np.mean([predicted[p] == truth[p] for p in truth]) > 0.9
    fakes = table[[truth[p] == "fake" for p in table["path"]]]["score"]
    reals = table[[truth[p] == "real" for p in table["path"]]]["score"]
    assert fakes.min() > reals.max()
    bad = CliRunner().invoke(app, ["name", str(tmp_path / "fit"), "7=fake", "--method", method])
    assert bad.exit_code == 2 and "has no cluster [7]" in bad.output


def test_a_model_of_other_features_or_a_tampered_one_is_refused_in_one_line(tmp_path, tiny_extractor, store,
                                                                          monkeypatch):
    from tests.conftest import TinyColourFeatures

    data = make_dataset(tmp_path / "data", {"train": {"real": 6, "fake": 6}})
    run(data, _config(), tmp_path / "fit", store=store, engine=LocalEngine(workers=0), progress=False)

    class NewerTiny(TinyColourFeatures):
        def cache_identity(self):
            return {"extractor": self.name, "version": 2}

    from facecluster import features

    monkeypatch.setitem(features.EXTRACTORS, "tiny", NewerTiny)
    with pytest.raises(ModelError, match=r"fitted on features with version=1, but this install computes version=2"):
        score_folder(data, tmp_path / "fit", tmp_path / "out", store=store, engine=LocalEngine(workers=0),
                     progress=False)
    monkeypatch.setitem(features.EXTRACTORS, "tiny", TinyColourFeatures)
    document = tmp_path / "fit" / "model" / "model.json"
    document.write_text(document.read_text().replace('"version": 1', '"version": 3'))
    with pytest.raises(ModelError, match="model.json") as refused:
        load_model(tmp_path / "fit")
    assert "\n" not in str(refused.value)
    with pytest.raises(ModelError, match="no saved model here"):
        load_model(tmp_path / "data")


def test_synthetic_score_orders_by_fake_cluster_density_and_calibrates():
    rng = np.random.default_rng(0)
    real = rng.normal([0, 0], 0.5, (60, 2))
    fake = rng.normal([3, 0], 0.5, (60, 2))
    X = np.vstack([real, fake])
    clusters = np.array([0] * 60 + [1] * 60)
    density = ClusterDensity().fit(X, clusters)
    line = np.column_stack([np.linspace(-1, 4, 11), np.zeros(11)])
    odds = density.log_odds(line, [1])
    assert np.all(np.diff(odds) > 0)  # further towards the fake cluster, more synthetic
    labels = np.array(["real"] * 60 + ["fake"] * 60, dtype=object)
    slope, intercept = calibrate(density.log_odds(X, [1]), labels)
    assert slope > 0
    score = probability(density.log_odds(X, [1]), (slope, intercept))
    assert 0 <= score.min() and score.max() <= 1 and score[60:].mean() > 0.9 > 0.1 > score[:60].mean()
    assert np.isnan(density.log_odds(np.array([[np.nan, 0.0]]), [1])[0])
    assert probability(density.log_odds(X[:3], [0, 1]), None).tolist() == [1.0, 1.0, 1.0]  # all named fake
    assert rank_of(np.array([0.2, np.nan, 0.9, 0.2])).tolist() == [2, 0, 1, 3]


def test_the_fit_score_and_run_commands_end_to_end(tmp_path, tiny_extractor, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setenv("COLUMNS", "200")
    data = make_dataset(tmp_path / "data", {"train": {"real": 8, "fake": 8}, "valid": {"real": 4, "fake": 4}})
    truth = _flatten(data / "valid", tmp_path / "flat")
    settings = tmp_path / "tiny.toml"
    settings.write_text('[faces]\ndetector = "none"\n[features]\nextractor = "tiny"\n'
                        '[reduce]\nstandardize = true\nn_components = 2\ntypicality = false\n'
                        '[methods.kmeans]\nalgorithm = "kmeans"\nparams = { n_clusters = 2 }\n')
    cache = ["--cache-dir", str(tmp_path / "cache"), "--workers", "0", "-q"]
    fitted = CliRunner().invoke(app, ["fit", str(data), "--out", str(tmp_path / "model"), "--config", str(settings),
                                      *cache])
    assert fitted.exit_code == 0, fitted.output
    assert "model:" in fitted.output and (tmp_path / "model" / "model" / "manifest.json").is_file()
    scored = CliRunner().invoke(app, ["score", str(tmp_path / "flat"), "--model", str(tmp_path / "model"),
                                      "--out", str(tmp_path / "scored"), *cache])
    assert scored.exit_code == 0, scored.output
    assert f"scored {len(truth)} of {len(truth)} images" in scored.output
    table = pd.read_csv(tmp_path / "scored" / "scores.csv")
    assert sorted(table["path"]) == sorted(truth) and table["score"].notna().all()
    unlabelled = CliRunner().invoke(app, ["run", str(tmp_path / "flat"), "--out", str(tmp_path / "run"),
                                          "--config", str(settings), *cache])
    assert unlabelled.exit_code == 0, unlabelled.output
    assert "no scores: the clusters are not named" in unlabelled.output
    missing = CliRunner().invoke(app, ["score", str(tmp_path / "flat"), "--model", str(tmp_path / "flat"),
                                       "--out", str(tmp_path / "x"), *cache])
    assert missing.exit_code == 2 and "no saved model here" in missing.output


def test_naming_from_a_labelled_scores_csv(tmp_path, tiny_extractor, store):
    from typer.testing import CliRunner

    truth = _flatten(make_dataset(tmp_path / "labelled", {"train": {"real": 10, "fake": 10}}), tmp_path / "flat")
    run(tmp_path / "flat", _config(), tmp_path / "fit", store=store, engine=LocalEngine(workers=0), progress=False)
    table = pd.read_csv(tmp_path / "fit" / "scores.csv")
    first = table.head(6).copy()  # a person labels six rows of the table
    first["label"] = [truth[p] for p in first["path"]]
    first.to_csv(tmp_path / "six.csv", index=False)
    result = CliRunner().invoke(app, ["name", str(tmp_path / "fit"), "--labels", str(tmp_path / "six.csv")])
    assert result.exit_code == 0, result.output
    named = load_model(tmp_path / "fit").score(tmp_path / "flat", store=store, engine=LocalEngine(workers=0))
    assert np.mean([label == truth[path] for path, label in zip(named["path"], named["label"])]) > 0.9
    both = CliRunner().invoke(app, ["name", str(tmp_path / "fit"), "0=fake", "--labels", str(tmp_path / "six.csv")])
    assert both.exit_code == 2 and "either cluster names" in both.output


def test_a_file_name_that_is_not_utf8_keeps_its_row_in_both_tables(tmp_path, tiny_extractor, store):
    import os

    data = make_dataset(tmp_path / "data", {"train": {"real": 4, "fake": 4}})
    source = next((data / "train" / "fake").glob("*.jpg"))
    os.rename(source, os.path.join(os.fsencode(source.parent), b"caf\xe9.jpg"))
    run(data, _config(), tmp_path / "run", store=store, engine=LocalEngine(workers=0), progress=False)
    assert b"train/fake/caf\xe9.jpg" in (tmp_path / "run" / "scores.csv").read_bytes()  # the name's own bytes
    paths = pd.read_parquet(tmp_path / "run" / "scores.parquet")["path"].tolist()
    assert "train/fake/caf\\xe9.jpg" in paths and len(paths) == 8  # Parquet is UTF-8: the byte is escaped


def test_ask_chooses_train_images_to_label_and_their_answers_name_the_clusters(tmp_path, tiny_extractor, store,
                                                                              monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setenv("COLUMNS", "200")
    truth = _flatten(make_dataset(tmp_path / "labelled", {"train": {"real": 12, "fake": 12}}), tmp_path / "flat")
    run(tmp_path / "flat", _config(), tmp_path / "fit", store=store, engine=LocalEngine(workers=0), progress=False)
    cache = ["--cache-dir", str(store.root), "--workers", "0", "-q"]
    asked = CliRunner().invoke(app, ["ask", str(tmp_path / "flat"), "--model", str(tmp_path / "fit"),
                                     "--out", str(tmp_path / "ask"), "-k", "6", *cache])
    assert asked.exit_code == 0, asked.output
    assert "label these 6 images" in asked.output
    table = pd.read_csv(tmp_path / "ask" / "ask.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["ask", "path", "label", "cluster_kmeans", "cluster_birch"]
    assert table["ask"].tolist() == [str(i) for i in range(1, 7)] and set(table["label"]) == {""}
    assert table["path"].is_unique and set(table["path"]) <= set(truth)
    # the medoid of each cluster of the default method comes first: the first answers name every cluster
    method = load_model(tmp_path / "fit").model._method(None)
    n_clusters = len(set(pd.read_csv(tmp_path / "fit" / "scores.csv")["cluster"].dropna()))
    assert table[f"cluster_{method}"].head(n_clusters).nunique() == n_clusters
    page = (tmp_path / "ask" / "ask.html").read_text()
    assert page.count('class="face"') == 6 and page.count("data:image/jpeg;base64,") == 6
    again = CliRunner().invoke(app, ["ask", str(tmp_path / "flat"), "--model", str(tmp_path / "fit"),
                                     "--out", str(tmp_path / "ask2"), "-k", "6", *cache])
    assert again.exit_code == 0 and (tmp_path / "ask2" / "ask.csv").read_text() == (tmp_path / "ask" / "ask.csv").read_text()

    table["label"] = [truth[p] for p in table["path"]]
    table.to_csv(tmp_path / "labels.csv", index=False)
    named = CliRunner().invoke(app, ["name", str(tmp_path / "fit"), "--labels", str(tmp_path / "labels.csv")])
    assert named.exit_code == 0, named.output
    assert "the answers agree best with method" in named.output
    scored = pd.read_csv(tmp_path / "fit" / "scores.csv")  # the run's table: unnamed then
    assert scored["label"].isna().all()
    fitted = load_model(tmp_path / "fit")
    assert fitted.card["method_from_answers"]["chosen"] == fitted.model._method(None)
    frame = fitted.score(tmp_path / "flat", store=store, engine=LocalEngine(workers=0))
    accuracy = np.mean([label == truth[path] for path, label in zip(frame["path"], frame["label"])])
    assert accuracy > 0.9  # 6 chosen answers named the clusters of 24 images
    assert f"facecluster fit {tmp_path / 'flat'} --labels labels.csv" in " ".join(asked.output.split())

    # the other way the hint names: re-fit on the folder, the answers its only labels, choosing the restart
    # (the criterion needs two answers of each label: three of each here, from the truth)
    answers = [p for p in sorted(truth) if truth[p] == "real"][:3] + [p for p in sorted(truth) if truth[p] == "fake"][:3]
    pd.DataFrame({"path": answers, "label": [truth[p] for p in answers]}).to_csv(tmp_path / "six.csv", index=False)
    config = _config(labels=str(tmp_path / "six.csv"))
    config.evaluation.restarts = 3
    refit = run(tmp_path / "flat", config, tmp_path / "refit", store=store, engine=LocalEngine(workers=0),
                progress=False)
    assert refit["restarts"]["seeds"] == [config.seed, config.seed + 1, config.seed + 2]
    assert all(c is not None for c in refit["restarts"]["criterion"])  # computed on the six answered rows
    given = pd.read_csv(tmp_path / "refit" / "scores.csv", dtype=str, keep_default_na=False)
    assert sorted(given.loc[given["given_label"] != "", "path"]) == sorted(answers)  # only the answers are labels

    too_many = CliRunner().invoke(app, ["ask", str(tmp_path / "flat"), "--model", str(tmp_path / "fit"),
                                        "--out", str(tmp_path / "ask3"), "-k", "99", *cache])
    assert too_many.exit_code == 2 and "cannot ask for 99 labels out of 24" in too_many.output


def test_ask_never_chooses_validation_images(tmp_path, tiny_extractor, store):
    from facecluster.scoring import ask_for_labels

    data = make_dataset(tmp_path / "data", {"train": {"real": 8, "fake": 8}, "valid": {"real": 6, "fake": 6}})
    run(data, _config(), tmp_path / "fit", store=store, engine=LocalEngine(workers=0), progress=False)
    table, _, _ = ask_for_labels(data, tmp_path / "fit", tmp_path / "ask", k=16, store=store,
                                 engine=LocalEngine(workers=0), progress=False)
    assert len(table) == 16 and all(p.startswith("train/") for p in table["path"])
    with pytest.raises(ModelError, match="unknown strategy"):
        ask_for_labels(data, tmp_path / "fit", tmp_path / "ask", k=4, strategy="nearest", store=store,
                       engine=LocalEngine(workers=0), progress=False)


def test_answers_teach_a_linear_classifier_that_is_saved_as_data_and_scores_new_images(tmp_path, tiny_extractor,
                                                                                     store, monkeypatch):
    from typer.testing import CliRunner

    from facecluster.labelling import AnswersClassifier

    monkeypatch.setenv("COLUMNS", "200")
    truth = _flatten(make_dataset(tmp_path / "labelled", {"train": {"real": 12, "fake": 12}}), tmp_path / "flat")
    run(tmp_path / "flat", _config(), tmp_path / "fit", store=store, engine=LocalEngine(workers=0), progress=False)
    cache = ["--cache-dir", str(store.root), "-q"]
    asked = CliRunner().invoke(app, ["ask", str(tmp_path / "flat"), "--model", str(tmp_path / "fit"),
                                     "--out", str(tmp_path / "ask"), "-k", "8", "--workers", "0", *cache])
    assert asked.exit_code == 0, asked.output
    table = pd.read_csv(tmp_path / "ask" / "ask.csv", dtype=str, keep_default_na=False)
    table["label"] = [truth[p] for p in table["path"]]
    table.to_csv(tmp_path / "labels.csv", index=False)
    lone = CliRunner().invoke(app, ["name", str(tmp_path / "fit"), "--images", str(tmp_path / "flat")])
    assert lone.exit_code == 2 and "--images goes with --labels" in lone.output
    import facecluster.scoring

    reads = []
    monkeypatch.setattr(facecluster.scoring, "read_answers",
                        lambda path, read=facecluster.scoring.read_answers: reads.append(path) or read(path))
    named = CliRunner().invoke(app, ["name", str(tmp_path / "fit"), "--labels", str(tmp_path / "labels.csv"),
                                     "--images", str(tmp_path / "flat"), "--cache-dir", str(store.root)])
    assert named.exit_code == 0, named.output
    assert "learnt the method 'answers'" in named.output
    assert reads == [tmp_path / "labels.csv"]  # the answers are read once: method, names and classifier share them

    fitted = load_model(tmp_path / "fit")  # read back from disk: the classifier is data in the bundle
    assert isinstance(fitted.model.answers_, AnswersClassifier) and fitted.model.answers_.n_answers_ == 8
    assert fitted.model._method(None) == "answers" and fitted.card["answers"]["n_answers"] == 8
    assert "answers" in fitted.model.method_names() and "answers" not in fitted.model.clusterers_
    frame = fitted.score(tmp_path / "flat", store=store, engine=LocalEngine(workers=0))
    assert set(frame["method"]) == {"answers"}
    assert np.mean([label == truth[path] for path, label in zip(frame["path"], frame["label"])]) > 0.9
    fakes = frame[[truth[p] == "fake" for p in frame["path"]]]["score"]
    reals = frame[[truth[p] == "real" for p in frame["path"]]]["score"]
    assert fakes.median() > 0.5 > reals.median()
    scored = score_folder(tmp_path / "flat", tmp_path / "fit", tmp_path / "score", store=store,
                          engine=LocalEngine(workers=0), progress=False)
    assert scored["methods"]["answers"]["algorithm"] == "answers" and scored["scoring"]["method"] == "answers"
    with pytest.raises(ModelError, match="'answers' is a classifier"):
        fitted.model.set_mapping("answers", {0: "fake"})

    table.loc[0, "path"] = "gone.jpg"
    table.to_csv(tmp_path / "gone.csv", index=False)
    missing = CliRunner().invoke(app, ["name", str(tmp_path / "fit"), "--labels", str(tmp_path / "gone.csv"),
                                       "--images", str(tmp_path / "flat"), "--cache-dir", str(store.root)])
    assert missing.exit_code == 2 and "not usable images" in missing.output and "gone.jpg" in missing.output


def test_the_answers_classifier_learns_from_labelled_rows_only_and_needs_both_classes():
    from facecluster.labelling import AnswersClassifier

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (20, 3)), rng.normal(3, 1, (20, 3))])
    y = np.array(["real"] * 20 + ["fake"] * 20, dtype=object)
    partial = y.copy()
    partial[5:20] = None
    partial[25:40] = None
    head = AnswersClassifier().fit(X, partial)
    assert head.n_answers_ == 10
    assert (head.predict(X) == y).mean() > 0.9
    proba = head.predict_proba(np.vstack([X[:2], [[np.nan, 0, 0]]]))
    assert np.allclose(proba[:2].sum(axis=1), 1) and np.isnan(proba[2]).all()
    with pytest.raises(ValueError, match="at least one real and one fake"):
        AnswersClassifier().fit(X[:20], y[:20])


def test_a_scored_label_folder_is_all_new_data_and_its_report_says_scored_with_the_model(tmp_path, tiny_extractor,
                                                                                        store):
    data = make_dataset(tmp_path / "data", {"train": {"real": 12, "fake": 12}, "valid": {"real": 4, "fake": 4}})
    fitted = run(data, _config(), tmp_path / "fit", store=store, engine=LocalEngine(workers=0), progress=False)
    new = make_dataset(tmp_path / "new", {".": {"real": 10, "fake": 10}}, seed=1)  # real/ and fake/, no splits
    scored = score_folder(new, tmp_path / "fit", tmp_path / "score", store=store, engine=LocalEngine(workers=0),
                          progress=False)
    # not split 70/30 as for fitting: the model saw none of it, so every labelled image is evaluated
    assert scored["dataset"]["split_source"] == "new-data"
    assert scored["dataset"]["counts"] == {"test": {"real": 10, "fake": 10}}
    for method in scored["methods"].values():
        assert list(method["scores"]) == ["test"]
        assert method["scores"]["test"]["n"] == 20
    assert set(pd.read_parquet(tmp_path / "score" / "scores.parquet")["split"]) == {"test"}
    assert set(load_model(tmp_path / "fit").score(new, store=store, engine=LocalEngine(workers=0))["split"]) == {"test"}
    only_test = make_dataset(tmp_path / "held", {"test": {"real": 3, "fake": 3}}, seed=2)  # no train: fine to score
    assert score_folder(only_test, tmp_path / "fit", tmp_path / "score-held", store=store,
                        engine=LocalEngine(workers=0), progress=False)["dataset"]["counts"]["test"]["fake"] == 3

    page = (tmp_path / "score" / "report.html").read_text(encoding="utf-8")
    model = scored["model"]["folder"]
    assert f"<title>facecluster score: {new} scored with model {model}</title>" in page
    assert f"<h1><code>{new}</code> scored with model <code>{model}</code></h1>" in page
    assert "fitted on train" not in page and "every image is new data for the model" in page
    fit_page = (tmp_path / "fit" / "report.html").read_text(encoding="utf-8")
    assert f"<h1>Clusters of <code>{data}</code></h1>" in fit_page and "fitted on train" in fit_page
    assert fitted["dataset"]["split_source"] == "folders"
