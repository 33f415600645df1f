"""Importing facecluster changes nothing in the host program: not matplotlib's backend, not the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import facecluster

CHILD = r"""
import importlib, json, os, pkgutil, sys
import matplotlib
matplotlib.use("svg")  # the host's choice, e.g. a notebook's inline backend
# Dependencies set variables of their own on import (scikit-learn KMP_*, OpenCV LD_LIBRARY_PATH):
# import them first, so that what is compared is what facecluster itself does.
for dependency in ("numpy", "scipy", "sklearn", "cv2", "onnx", "onnxruntime", "PIL.Image", "pydantic", "typer",
                   "rich", "bokeh.plotting", "jinja2", "tqdm", "platformdirs", "threadpoolctl"):
    importlib.import_module(dependency)
before = dict(os.environ)
import facecluster
imported, skipped = [], []
for info in pkgutil.walk_packages(facecluster.__path__, "facecluster."):
    if info.name == "facecluster.__main__":  # runs the command line
        continue
    try:
        importlib.import_module(info.name)
        imported.append(info.name)
    except ImportError as error:  # an optional extra that is not installed here
        skipped.append(f"{info.name}: {error}")
after = dict(os.environ)
print(json.dumps({
    "backend": matplotlib.get_backend(),
    "pyplot": "matplotlib.pyplot" in sys.modules,
    "environ_changed": sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)),
    "imported": imported, "skipped": skipped,
}))
"""


def test_importing_every_module_leaves_the_backend_and_environment_alone():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(facecluster.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    env.pop("MPLBACKEND", None)
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"facecluster.cli", "facecluster.report.figures", "facecluster.report.sweep_figures",
            "facecluster.faces", "facecluster.pipeline"} <= set(seen["imported"])
    assert all(name.startswith("facecluster.engines.ray") for name in seen["skipped"]), seen["skipped"]
    assert seen["backend"] == "svg"
    assert not seen["pyplot"]
    assert seen["environ_changed"] == []


# What a command may not load unless it needs it: the learning, vision, inference, plotting and
# cluster libraries, each ~0.1–2 s of a re-run's start.
HEAVY = ("ray", "onnxruntime", "onnx", "cv2", "sklearn", "scipy", "matplotlib", "bokeh", "pandas", "pyarrow", "jinja2")

COMMAND = r"""
import json, sys
args = json.loads(sys.argv[1])
if args is None:
    import facecluster
else:
    from facecluster.cli import app
    try:
        app(args, standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _loaded_by(args, env_extra=None) -> set[str]:
    env = {**os.environ, **(env_extra or {}),
           "PYTHONPATH": os.pathsep.join([str(Path(facecluster.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", COMMAND, json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_facecluster_and_help_load_no_heavy_library():
    assert _loaded_by(None) & {*HEAVY, "numpy", "PIL"} == set()
    assert _loaded_by(["--help"]) & set(HEAVY) == set()
    assert _loaded_by(["score", "--help"]) & set(HEAVY) == set()


def test_rebuilding_a_report_loads_only_what_a_page_needs(tmp_path):
    """`facecluster report` on a run whose face crops are cached: no OpenCV, scikit-learn, SciPy, matplotlib."""
    import hashlib

    from facecluster.report.html import write_report
    from facecluster.store import FeatureStore
    from tests.unit.test_report_html import _fake_run, _write_table

    run = _fake_run(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], schema=1)
    results = json.loads((run / "results.json").read_text())
    for entry in results["images"]:  # the images' real hashes, which key the crop cache
        image = Path(results["dataset"]["root"]) / entry["path"]
        entry["sha256"] = hashlib.sha256(image.read_bytes()).hexdigest() if entry["sha256"] else None
    results["schema_version"] = 2
    results["images"] = _write_table(run, results["images"], list(results["methods"]))
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    write_report(run, store=FeatureStore(tmp_path / "cache"))  # as `facecluster run` does: the crops are cached
    loaded = _loaded_by(["report", str(run), "--cache-dir", str(tmp_path / "cache")])
    assert {"bokeh", "jinja2"} <= loaded
    assert loaded & {"ray", "onnxruntime", "onnx", "cv2", "sklearn", "scipy", "matplotlib"} == set()
