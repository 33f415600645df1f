"""The layers contract of pyproject.toml (DESIGN.md, "Layers") holds, and it fails on a back-import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import facecluster

SRC = Path(facecluster.__file__).resolve().parents[1]
PYPROJECT = SRC.parent / "pyproject.toml"


def _lint_imports() -> str:
    found = shutil.which("lint-imports") or shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("lint-imports is not installed: pip install -e '.[test]'")
    return found


def _check(src: Path, project: Path) -> subprocess.CompletedProcess:
    """Run the contract of ``project``/pyproject.toml on the package under ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([_lint_imports(), "--no-cache", "--config", str(project / "pyproject.toml")],
                          cwd=project, capture_output=True, text=True, env=env, timeout=300)


def test_the_package_keeps_its_layers():
    if not PYPROJECT.is_file():
        pytest.skip(f"no pyproject.toml beside {SRC} (an installed copy, not a checkout)")
    done = _check(SRC, PYPROJECT.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("module, back_import", [
    ("errors.py", "import facecluster.cli"),
    ("config.py", "from facecluster.cluster import CLUSTERERS"),
    ("cluster.py", "from facecluster.pipeline import run"),
])
def test_a_back_import_breaks_the_contract(tmp_path, module, back_import):
    if not PYPROJECT.is_file():
        pytest.skip(f"no pyproject.toml beside {SRC} (an installed copy, not a checkout)")
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    copy = tmp_path / "src" / "facecluster"
    shutil.copytree(SRC / "facecluster", copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{back_import}\n", encoding="utf-8")
    done = _check(tmp_path / "src", tmp_path)
    assert done.returncode != 0, done.stdout
    importer = "facecluster." + module.removesuffix(".py")
    imported = back_import.split()[1]
    assert "BROKEN" in done.stdout and f"{importer} -> {imported}" in done.stdout, done.stdout


def test_a_module_without_a_layer_breaks_the_contract(tmp_path):
    if not PYPROJECT.is_file():
        pytest.skip(f"no pyproject.toml beside {SRC} (an installed copy, not a checkout)")
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    copy = tmp_path / "src" / "facecluster"
    shutil.copytree(SRC / "facecluster", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "shortcut.py").write_text('"""A module nobody placed."""\n', encoding="utf-8")
    done = _check(tmp_path / "src", tmp_path)
    assert done.returncode != 0 and "shortcut" in done.stdout + done.stderr, done.stdout
