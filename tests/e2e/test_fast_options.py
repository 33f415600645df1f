"""The fast options from the command line: --detector yunet --precision int8 reach the results."""

import json

import pytest

from .test_cli import facecluster

pytest.importorskip("yuface", reason="the yunet detector needs the yuface package (facecluster[yunet])")


def test_yunet_and_int8_run_and_are_recorded(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    result = facecluster("run", tiny_dataset, "--detector", "yunet", "--precision", "int8", "--out", out,
                         "--cache-dir", tmp_path / "cache", "-q")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["faces"]["detector"] == "yunet"
    assert results["features"]["precision"] == "int8"
    assert results["features"]["int8_recipe"].startswith("q")
    assert results["images"]["rows"] == 36


def test_bf16_is_one_clear_line(tiny_dataset, tmp_path):
    result = facecluster("run", tiny_dataset, "--precision", "bf16", "--out", tmp_path / "run", "-q")
    assert result.returncode == 2
    assert "bf16" in result.stderr and "int8" in result.stderr
    assert "Traceback" not in result.stderr
