"""The sweep: grid parsing, one run over a tiny grid, a train-only choice, and best.toml applied by `run`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from facecluster.cli import app
from facecluster.dataset import discover
from facecluster.engines.local import LocalEngine
from facecluster.errors import ConfigError
from facecluster.resolve import build_config, load_config
from facecluster.store import FeatureStore
from facecluster.sweep import Grid, sweep
from tests.conftest import csv_rows, four_blobs, make_dataset, truncated, write_csv

GRID = """
[faces]
detector = "none"

[sweep]
features = ["tiny"]
crops = ["box", "aligned"]
n_components = ["none", 2]
standardize = [true]
bootstrap_resamples = 100

[sweep.methods.kmeans]
algorithm = "kmeans"
params = { n_clusters = [2, 6, "auto"], k_range = [2, 4] }

[sweep.methods.birch]
algorithm = "birch"
params = { n_clusters = [2], threshold = [0.1, 0.5] }
"""


@pytest.fixture
def grid_file(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    return path


@pytest.fixture
def csv_data(tmp_path):
    root = make_dataset(tmp_path / "images", {"train": {"real": 16, "fake": 16}, "valid": {"real": 8, "fake": 8}})
    return root, csv_rows(root)


def _sweep(source, grid, tmp_path):
    return sweep(discover(source), grid, LocalEngine(workers=0), FeatureStore(tmp_path / "cache"), progress=False)


@pytest.mark.parametrize("sweep_table, message", [
    ({"featurs": ["x"]}, "sweep.featurs: unknown key"),
    ({"crops": ["tight"]}, "'tight' is not 'box' or 'aligned'"),
    ({"selection": "valid"}, "choose one of"),
    ({"n_components": [0]}, "not a positive integer"),
    ({"standardize": []}, "non-empty list"),
    ({"typicality": ["yes"]}, "sweep.typicality must be a list of true/false"),
    ({"typicality_rounds": [-1]}, "sweep.typicality_rounds must be a list of whole numbers"),
    ({"methods": {"x": {"algorithm": "nope"}}}, "sweep.methods.x"),
])
def test_bad_grids_are_refused_with_the_key(sweep_table, message):
    with pytest.raises(ConfigError, match=message):
        Grid.from_dict(sweep_table, build_config())


def test_grid_file_expands_to_the_product_and_keeps_k_range_whole(grid_file):
    grid = Grid.from_toml(grid_file)
    assert grid.base.faces.detector == "none"
    variants = grid.method_variants()
    assert len(variants) == 3 + 2
    assert [params.get("k_range") for name, _, params in variants if name == "kmeans"] == [None, None, [2, 4]]
    assert [r.n_components for r in grid.reducers()] == [None, 2]


def test_sweep_ranks_by_train_criterion_and_ignores_valid_labels(grid_file, csv_data, tiny_extractor, tmp_path):
    root, rows = csv_data
    grid = Grid.from_toml(grid_file)
    result = _sweep(write_csv(root, rows), grid, tmp_path)
    # Faceless synthetic images are centre-cropped either way, so the aligned crop equals the box
    # crop and the sweep skips it (a family is counted as aligned only when the crop matters).
    crops = 1 + sum(1 for f in result["families"][1:] if not f.get("skipped"))
    assert result["n_configurations"] == crops * 2 * 5
    assert result["failed"] == []
    board = result["leaderboard"]
    criterion = [r["train"]["cv_mapping_balanced_accuracy"] for r in board]
    assert criterion == sorted(criterion, reverse=True)
    assert result["best"]["id"] == board[0]["id"]
    for row in board:
        assert {"silhouette", "cv_mapping_balanced_accuracy", "balanced_accuracy"} <= set(row["train"])
        assert {"balanced_accuracy", "ci"} <= set(row["valid"])
        assert set(row["supervised"]) == {"logistic_regression", "linear_svm"}
    if crops == 1:
        assert result["families"][1]["skipped"]

    # Flip every validation label: the validation scores change, the choice must not.
    flipped = [[p, {"real": "fake", "fake": "real"}[label] if split == "valid" else label, split] for p, label, split in rows]
    again = _sweep(write_csv(root, flipped), grid, tmp_path)
    assert again["best"]["id"] == result["best"]["id"]
    assert [r["id"] for r in again["leaderboard"]] == [r["id"] for r in board]
    assert again["best"]["valid"]["balanced_accuracy"] == pytest.approx(1 - result["best"]["valid"]["balanced_accuracy"])


def test_cli_sweep_writes_outputs_and_run_applies_best_toml_unchanged(grid_file, tiny_dataset, tiny_extractor, tmp_path):
    runner = CliRunner()
    out = tmp_path / "sweep"
    swept = runner.invoke(app, ["sweep", str(tiny_dataset), "--out", str(out), "--config", str(grid_file),
                                "--cache-dir", str(tmp_path / "cache"), "--workers", "0", "-q"])
    assert swept.exit_code == 0, swept.output
    assert "leaderboard" in swept.stdout and "chosen with train-only criterion" in swept.stdout
    result = json.loads((out / "sweep.json").read_text())
    assert (out / "best.toml").is_file() and (out / "best-box.toml").is_file()
    assert {"n_components", "method", "kmeans.n_clusters", "birch.threshold"} <= set(result["plots"])
    assert all((out / "plots" / name).is_file() for name in result["plots"].values())
    # The same provenance block as results.json (one writer: facecluster.outputs).
    assert {"versions", "created", "seed", "config"} <= set(result["provenance"])
    assert result["provenance"]["versions"]["facecluster"] is not None

    best = result["best"]
    config = load_config(out / "best.toml")
    assert config.features.extractor == "tiny"
    assert list(config.methods) == [best["method"]]
    assert config.methods[best["method"]].params == best["params"]
    assert config.reduce.n_components == best["n_components"] and config.reduce.standardize == best["standardize"]

    other = make_dataset(tmp_path / "other", {"train": {"real": 10, "fake": 10}, "valid": {"real": 5, "fake": 5}}, seed=7)
    applied = runner.invoke(app, ["run", str(other), "--config", str(out / "best.toml"), "--out", str(tmp_path / "run"),
                                  "--cache-dir", str(tmp_path / "cache"), "--workers", "0", "-q"])
    assert applied.exit_code == 0, applied.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert list(results["methods"]) == [best["method"]]
    assert results["features"]["extractor"] == "tiny"
    reduce = results["provenance"]["config"]["reduce"]
    assert (reduce["standardize"], reduce["n_components"]) == (best["standardize"], best["n_components"])
    assert results["audit"]["n_read"] == 30 and isinstance(results["audit"]["flags"], list)


def test_features_that_ignore_the_crop_are_not_counted_as_aligned(grid_file, tiny_dataset, tiny_extractor, tmp_path,
                                                                  monkeypatch):
    # Stand-in for e.g. landmark positions: whatever the crop, the same vectors come out.
    from facecluster import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "faces_with_crop", lambda faces, crop: faces)
    result = _sweep(tiny_dataset, Grid.from_toml(grid_file), tmp_path)
    box, aligned = result["families"]
    assert "skipped" not in box
    assert aligned["same_as"] == "box" and "do not depend on the crop" in aligned["skipped"]
    assert {row["crop"] for row in result["leaderboard"]} == {"box"}
    assert "aligned" not in result["best_by_crop"]


def test_example_grid_parses_and_unknown_families_are_recorded_not_fatal(tiny_dataset, tmp_path):
    from pathlib import Path

    example = Grid.from_toml(Path(__file__).resolve().parents[2] / "examples" / "sweep-families.toml")
    assert "facenet" in example.features and example.crops == ["box", "aligned"]
    grid = Grid.from_dict({"features": ["no-such-family"], "crops": ["box"]}, build_config())
    result = _sweep(tiny_dataset, grid, tmp_path)
    assert result["best"] is None and result["leaderboard"] == []
    assert "no-such-family" in result["families"][0]["skipped"]


def test_with_restarts_each_seeded_variant_keeps_its_own_best_seed_as_run_would(tiny_extractor):
    from types import SimpleNamespace

    from facecluster.config import MethodConfig, ReduceConfig
    from facecluster.model import fit_and_evaluate
    from facecluster.sweep import restart_groups

    variants = [("birch", "birch", {"n_clusters": 2}), ("gmm", "gmm", {"n_clusters": 2}),
                ("gmm", "gmm", {"n_clusters": 4}), ("meanshift", "meanshift", {"quantile": 0.3})]
    assert restart_groups(variants, 1) == [([0, 1, 2, 3], 1)]
    assert restart_groups(variants, 5) == [([0, 3], 1), ([1], 5), ([2], 5)]

    features, labels, splits = four_blobs()  # GMM's seeds land in different optima: the restarts matter
    status = np.array(["ok"] * 400, dtype=object)

    class GivenFeatures:  # the engine's extraction, replaced by the blobs
        def extract(self, samples, faces, extractor, store, progress=True):
            return SimpleNamespace(features=features, status=status, computed=0)

    dataset = SimpleNamespace(samples=[SimpleNamespace(label=l, split=s) for l, s in zip(labels, splits)],
                              root="blobs", fingerprint=lambda: "blobs", counts=lambda: {})
    base = build_config(None, {"evaluation": {"restarts": 6, "naming": "enrichment"}})
    grid = Grid.from_dict({"features": [tiny_extractor], "crops": ["box"], "n_components": [2], "standardize": [True],
                           "bootstrap_resamples": 0,
                           "methods": {"gmm": {"algorithm": "gmm", "params": {"n_clusters": [2, 4]}},
                                       "birch": {"algorithm": "birch", "params": {"n_clusters": [2]}}}}, base)
    board = sweep(dataset, grid, GivenFeatures(), store=None, progress=False)["leaderboard"]
    assert len(board) == 3
    for row in board:  # the same score and seed as a run of that one method with the same restarts
        method = MethodConfig(algorithm=row["algorithm"], params=row["params"])
        _, alone = fit_and_evaluate(features, status, labels, splits, methods={"m": method},
                                    reduce=ReduceConfig(standardize=True, n_components=2), naming="enrichment",
                                    n_resamples=0, restarts=6)
        assert row["seed"] == alone["restarts"]["chosen_seed"], row["id"]
        assert row["valid"]["balanced_accuracy"] == alone["methods"]["m"]["scores"]["valid"]["balanced_accuracy"]
    seeds = {(row["algorithm"], row["seed"]) for row in board}
    assert ("birch", 0) in seeds
    assert any(algorithm == "gmm" and seed != 0 for algorithm, seed in seeds)  # else the restarts did nothing here


def test_typicality_rows_score_as_a_run_of_their_best_toml_would(tiny_extractor):
    from types import SimpleNamespace

    from facecluster.model import fit_and_evaluate
    from facecluster.sweep import config_of

    features, fake = truncated()
    labels = np.where(fake == 1, "fake", "real").astype(object)
    splits = np.where(np.arange(400) < 300, "train", "valid").astype(object)
    status = np.array(["ok"] * 400, dtype=object)

    class GivenFeatures:
        def extract(self, samples, faces, extractor, store, progress=True):
            return SimpleNamespace(features=features, status=status, computed=0)

    dataset = SimpleNamespace(samples=[SimpleNamespace(label=l, split=s) for l, s in zip(labels, splits)],
                              root="truncated", fingerprint=lambda: "truncated", counts=lambda: {})
    base = build_config(None, {"evaluation": {"restarts": 3, "naming": "enrichment"}})
    grid = Grid.from_dict({"features": [tiny_extractor], "crops": ["box"], "n_components": [8, 40],
                           "standardize": [False], "typicality": [False, True], "typicality_rounds": [0, 3],
                           "bootstrap_resamples": 0,
                           "methods": {"gmm": {"algorithm": "gmm", "params": {"n_clusters": [2]}}}}, base)
    assert [(r.n_components, r.typicality and r.typicality.rounds) for r in grid.reducers()] == [
        (8, None), (40, None), (40, 0), (40, 3)]
    board = sweep(dataset, grid, GivenFeatures(), store=None, progress=False)["leaderboard"]
    typical = sorted((row for row in board if row["typicality"]), key=lambda row: row["typicality_rounds"])
    assert len(board) == 4 and [row["typicality_rounds"] for row in typical] == [0, 3]
    assert "|typicality40|" in typical[0]["id"] and "|typicality-r3-40|" in typical[1]["id"]
    for row in typical:  # each scores as its best.toml would in a run of its own
        config = config_of(row, base)
        assert config.reduce.typicality.rounds == row["typicality_rounds"] and config.reduce.n_components == 40
        _, alone = fit_and_evaluate(features, status, labels, splits, reduce=config.reduce, methods=config.methods,
                                    naming="enrichment", n_resamples=0, restarts=3)
        assert row["valid"]["balanced_accuracy"] == alone["methods"]["gmm"]["scores"]["valid"]["balanced_accuracy"]
    assert typical[0]["valid"]["balanced_accuracy"] > 0.75  # the truncated rows are found without labels
