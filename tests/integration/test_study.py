"""The study on the real dev images in ../shared/datasets (skipped when they are absent)."""

import json

import pytest
from typer.testing import CliRunner

from facecluster.cli import app
from tests.conftest import image_rows


@pytest.mark.integration
def test_study_on_dev_set_end_to_end_and_cached(dev_dataset, tmp_path):
    runner = CliRunner()
    cache = tmp_path / "cache"
    first = runner.invoke(app, ["run", str(dev_dataset), "--preset", "study", "--out", str(tmp_path / "a"),
                                "--cache-dir", str(cache), "-q"])
    assert first.exit_code == 0, first.output
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["dataset"]["counts"] == {"train": {"real": 412, "fake": 490}, "valid": {"real": 177, "fake": 210}}
    assert results["images"]["rows"] == 1289 == len(image_rows(tmp_path / "a"))
    assert results["faces"]["failed"] == 0
    assert results["faces"]["found"] > 1200  # MTCNN finds most faces; the rest fall back to centre crops
    for name in ("meanshift", "birch"):
        method = results["methods"][name]
        assert 2 <= method["n_clusters"] <= 8
        # The dev set's framing shortcut lets even 2-D FaceNet clusters beat the majority class (0.543).
        assert method["scores"]["valid"]["accuracy"] > 0.6
    assert results["methods"]["birch"]["n_clusters"] == 4
    assert (tmp_path / "a" / "report.html").stat().st_size < 10_000_000  # the report's size budget

    second = runner.invoke(app, ["run", str(dev_dataset), "--out", str(tmp_path / "b"), "--cache-dir", str(cache), "-q"])
    assert second.exit_code == 0, second.output
    again = json.loads((tmp_path / "b" / "results.json").read_text())
    assert again["timings"]["computed"] == {"faces": 0, "features": 0}
    assert again["methods"]["meanshift"]["scores"] == results["methods"]["meanshift"]["scores"]

    # The sweep row of the study's own configuration scores exactly what `run` scored (one evaluation core).
    grid = tmp_path / "grid.toml"
    grid.write_text('[sweep]\nfeatures = ["facenet"]\ncrops = ["box"]\nn_components = [2]\nstandardize = [false]\n'
                    'bootstrap_resamples = 1000\n'
                    '[sweep.methods.meanshift]\nalgorithm = "meanshift"\nparams = {quantile = 0.0855}\n'
                    '[sweep.methods.birch]\nalgorithm = "birch"\nparams = {n_clusters = 4, threshold = 0.08}\n')
    swept = runner.invoke(app, ["sweep", str(dev_dataset), "--config", str(grid), "--out", str(tmp_path / "sweep"),
                                "--cache-dir", str(cache), "-q"])
    assert swept.exit_code == 0, swept.output
    rows = {row["method"]: row for row in json.loads((tmp_path / "sweep" / "sweep.json").read_text())["leaderboard"]}
    for name in ("meanshift", "birch"):
        ours = results["methods"][name]
        assert rows[name]["n_clusters"] == ours["n_clusters"]
        assert rows[name]["valid"] == {k: ours["scores"]["valid"][k] for k in rows[name]["valid"]}
        assert rows[name]["train"]["balanced_accuracy"] == ours["scores"]["train"]["balanced_accuracy"]
        assert rows[name]["train"]["cv_mapping_balanced_accuracy"] == ours["train_criteria"]["cv_mapping_balanced_accuracy"]
