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
