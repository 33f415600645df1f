"""The command line, run as a user runs it: a real subprocess, real models, synthetic images."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import image_rows


def facecluster(*args, cwd=None):
    command = [sys.executable, "-m", "facecluster", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=os.environ.copy(), timeout=900)


def test_run_writes_documented_results_and_second_run_is_cached(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    first = facecluster("run", tiny_dataset, "--preset", "study", "--out", out, "--cache-dir", tmp_path / "cache", "-q")
    assert first.returncode == 0, first.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["counts"] == {"train": {"real": 12, "fake": 12}, "valid": {"real": 6, "fake": 6}}
    assert set(results["methods"]) == {"meanshift", "birch"}
    for method in results["methods"].values():
        assert method["n_clusters"] >= 1
        for split in ("train", "valid"):
            assert set(method["scores"][split]) >= {"accuracy", "balanced_accuracy", "ari", "nmi", "confusion"}
        assert (out / method["figures"]["scatter"]).is_file()
        assert all((out / name).is_file() for name in method["figures"]["montages"].values())
    assert results["schema_version"] == 2 and results["images"]["table"] == "images.parquet"
    images = image_rows(out)
    assert len(images) == 36 == results["images"]["rows"]
    assert {image["status"] for image in images} <= {"ok", "no_face"}
    assert all(set(image["clusters"]) == {"meanshift", "birch"} for image in images)
    assert results["features"]["checkpoint"] == "20180408-102900"
    assert results["features"]["model_sha256"]
    assert (out / "config.toml").is_file()
    assert "meanshift" in first.stdout and "birch" in first.stdout
    assert results["timings"]["computed"]["features"] == 36
    assert re.search(r"^time: [\d.]+ s in all; extraction [\d.]+ s, \d+ img/s$", first.stderr, re.MULTILINE)

    second = facecluster("run", tiny_dataset, "--out", tmp_path / "run2", "--cache-dir", tmp_path / "cache", "-q")
    assert second.returncode == 0, second.stderr
    again = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert again["timings"]["computed"] == {"faces": 0, "features": 0}
    assert re.search(r"^time: [\d.]+ s in all; extraction [\d.]+ s$", second.stderr, re.MULTILINE)  # no rate
    assert again["features"]["model_sha256"] == results["features"]["model_sha256"]  # named even when cached
    assert again["methods"]["birch"]["scores"] == results["methods"]["birch"]["scores"]


def test_default_out_is_a_new_folder_under_runs(tiny_dataset, tmp_path):
    result = facecluster("run", tiny_dataset, "-q", "--cache-dir", tmp_path / "cache", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "runs").glob("*/results.json"))) == 1


@pytest.mark.parametrize("args, expected", [
    (["run", "{missing}"], "no such file or folder"),
    (["run", "{data}", "--preset", "nope"], "unknown preset"),
    (["run", "{data}", "--config", "{bad_config}"], "faces.margn: unknown key"),
])
def test_bad_input_is_one_clear_line_without_traceback(tiny_dataset, tmp_path, args, expected):
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[faces]\nmargn = 1\n")
    values = {"missing": tmp_path / "missing", "data": tiny_dataset, "bad_config": bad_config}
    result = facecluster(*[a.format(**values) for a in args])
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
