"""Dataset discovery on hostile layouts: links, loops, junk, one class, odd CSVs."""

from __future__ import annotations

import json
import logging
import os

import pytest

from facecluster.config import DatasetConfig
from facecluster.dataset import DatasetError, discover
from facecluster.engines.local import LocalEngine
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.store import FeatureStore
from tests.conftest import image_rows, make_dataset
from tests.robustness.messy import deny_open


def _skipped(dataset) -> dict[str, str]:
    return {item["path"]: item["code"] for item in dataset.skipped}


def test_unknown_label_folders_are_listed_with_how_to_map_them(tmp_path):
    make_dataset(tmp_path, {"train": {"real": 1, "gan": 1, "photoshopped": 1}})
    with pytest.raises(DatasetError) as caught:
        discover(tmp_path)
    message = str(caught.value)
    assert "'gan'" in message and "'photoshopped'" in message  # what was found
    assert "expected ['fake', 'real']" in message  # what is allowed
    assert "[dataset.label_names]" in message and "= \"fake\"" in message  # how to map it
    assert "\n" not in message


def test_a_label_folder_with_an_undecodable_name_is_shown_escaped(tmp_path):
    make_dataset(tmp_path, {"train": {"real": 1}})
    os.mkdir(os.fsencode(tmp_path / "train") + b"/fa\xefke")
    with pytest.raises(DatasetError, match=r"fa\\\\xefke"):
        discover(tmp_path)


def test_links_out_of_the_root_are_refused_unless_allowed(tmp_path):
    root = make_dataset(tmp_path / "data", {"train": {"real": 2, "fake": 2}})
    outside = make_dataset(tmp_path / "elsewhere", {"x": {"real": 3}}) / "x" / "real"
    (root / "train" / "real" / "more").symlink_to(outside)
    (root / "train" / "fake" / "secret.jpg").symlink_to(tmp_path / "elsewhere" / "x" / "real" / "img_000.jpg")
    refused = discover(root)
    assert _skipped(refused) == {"train/real/more": "outside_root", "train/fake/secret.jpg": "outside_root"}
    assert len(refused.samples) == 4
    allowed = discover(root, DatasetConfig(follow_links_outside_root=True))
    assert len(allowed.samples) == 4 + 3 + 1 and not allowed.skipped


def test_links_inside_the_root_are_followed_and_loops_are_cut(tmp_path):
    root = make_dataset(tmp_path, {"train": {"real": 2, "fake": 2}, "pool": {"fake": 2}})
    (root / "train" / "fake" / "from_pool").symlink_to(root / "pool" / "fake")
    (root / "train" / "real" / "loop").symlink_to(root / "train")
    dataset = discover(root)
    paths = sorted(s.relpath for s in dataset.samples)
    assert "train/fake/from_pool/img_000.jpg" in paths and len(paths) == 6
    skipped = _skipped(dataset)
    assert skipped["train/real/loop"] == "symlink_loop"
    assert skipped["pool"] == "unknown_folder"


def test_junk_is_recorded_once_in_the_label_only_layout(tmp_path):
    make_dataset(tmp_path, {".": {"real": 3, "fake": 3}})
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "real" / "Thumbs.db").write_bytes(b"junk")
    (tmp_path / "README").write_text("hi")
    dataset = discover(tmp_path)
    assert sorted(item["path"] for item in dataset.skipped) == [".DS_Store", "README", "real/Thumbs.db"]


def test_csv_links_out_of_the_root_are_skipped_and_lexical_escapes_refused(tmp_path):
    make_dataset(tmp_path / "elsewhere", {"x": {"real": 1}})
    root = make_dataset(tmp_path / "data", {"a": {"real": 2, "fake": 2}})
    (root / "a" / "escape.jpg").symlink_to(tmp_path / "elsewhere" / "x" / "real" / "img_000.jpg")
    rows = ["path,label,split", "a/real/img_000.jpg,real,train", "a/fake/img_000.jpg,fake,train",
            "a/escape.jpg,real,train", "./a/./real/../real/img_001.jpg,real,valid"]
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    dataset = discover(root / "list.csv")
    assert [s.relpath for s in dataset.samples] == ["a/real/img_000.jpg", "a/fake/img_000.jpg", "a/real/img_001.jpg"]
    assert _skipped(dataset) == {"a/escape.jpg": "outside_root"}
    for bad in ("../elsewhere/x/real/img_000.jpg", "a/../../elsewhere/x/real/img_000.jpg", "/etc/hostname", "."):
        (root / "bad.csv").write_text(f"path,label\n{bad},real\n")
        with pytest.raises(DatasetError, match="leaves the CSV's folder"):
            discover(root / "bad.csv")


@pytest.mark.parametrize("content, match", [
    (b"\xef\xbb\xbfpath,label\na.jpg,real\n", None),  # a BOM is fine
    (b"path,label\nab\xff.jpg,real\n", "not UTF-8"),
    (b"path,label\na\0b.jpg,real\n", "NUL"),
    (b"path,label\n\"a.jpg,real\n", None),  # unterminated quote: csv reads to the end, one bad path
    (b"", "missing column"),
    (b"path,label\n,real\n", "empty path"),
])
def test_odd_csv_files_are_read_or_refused_in_one_line(tmp_path, content, match):
    make_dataset(tmp_path, {".": {"real": 1}})
    (tmp_path / "a.jpg").write_bytes((tmp_path / "real" / "img_000.jpg").read_bytes())
    (tmp_path / "list.csv").write_bytes(content)
    if match is None:
        try:
            assert discover(tmp_path / "list.csv").samples
        except DatasetError as error:
            assert "\n" not in str(error)
    else:
        with pytest.raises(DatasetError, match=match):
            discover(tmp_path / "list.csv")


def test_a_dataset_with_one_class_runs_with_a_clear_warning(tmp_path, caplog):
    root = make_dataset(tmp_path / "data", {"train": {"real": 6}, "valid": {"real": 3}})
    config = build_config("study", {"faces": {"detector": "none"}})
    with caplog.at_level(logging.WARNING):
        results = run(root, config, tmp_path / "run", store=FeatureStore(tmp_path / "cache"),
                      engine=LocalEngine(workers=0), progress=False)
    assert {(w["code"], w["path"]) for w in results["warnings"]} == {("one_class", "train"), ("one_class", "valid")}
    assert "only 'real' images" in caplog.text and "Add 'fake' images" in caplog.text
    assert all(m["scores"]["valid"]["balanced_accuracy"] is None for m in results["methods"].values())
    assert len(image_rows(tmp_path / "run")) == 9 == results["images"]["rows"]


def test_unreadable_file_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    """chmod 000 stops nobody when tests run as root, so os.open is made to refuse one file."""
    root = make_dataset(tmp_path / "data", {"train": {"real": 3, "fake": 3}})
    locked = root / "train" / "real" / "img_001.jpg"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked.chmod(0)
    deny_open(monkeypatch, locked)
    config = build_config("study", {"faces": {"detector": "none"}})
    results = run(root, config, tmp_path / "run", store=FeatureStore(tmp_path / "cache"),
                  engine=LocalEngine(workers=0), progress=False)
    entry = next(i for i in image_rows(tmp_path / "run") if i["path"] == "train/real/img_001.jpg")
    assert entry["status"] == "unreadable" and entry["sha256"] is None
    assert results["problems"] == [{"path": "train/real/img_001.jpg", "code": "unreadable",
                                    "message": entry["message"]}]
    assert len(image_rows(tmp_path / "run")) == 6
    assert json.loads((tmp_path / "run" / "results.json").read_text())["faces"]["failed"] == 1
