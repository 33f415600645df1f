"""The benchmarks' smoke-run subset (``--limit N`` of stages.py and rerun.py) is a dataset facecluster accepts."""

from __future__ import annotations

import sys
from pathlib import Path

from facecluster.dataset import discover
from tests.conftest import make_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _common import subset  # noqa: E402
from stages import subset as stages_subset  # noqa: E402


def test_a_limited_subset_is_real_files_that_discovery_accepts_with_every_split_and_label(tmp_path):
    data = make_dataset(tmp_path / "data", {"train": {"real": 10, "fake": 10}, "valid": {"real": 5, "fake": 5}})
    assert stages_subset is subset  # one subset for every benchmark
    folder = subset(data, 12, tmp_path / "subset")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert len(files) == 12 and not any(p.is_symlink() for p in files)
    dataset = discover(folder)
    assert len(dataset.samples) == 12 and not dataset.skipped
    assert {(s.split, s.label) for s in dataset.samples} == {(split, label) for split in ("train", "valid")
                                                               for label in ("real", "fake")}
    assert subset(data, None, tmp_path / "unused") == data and not (tmp_path / "unused").exists()
