"""One real `facecluster run` on a folder holding every kind of bad input, checked entry by entry.

For each kind: the run completes (exit 0, no traceback), the entry is in results.json with its
reason code (``images[].status`` and ``problems[]``, or ``skipped[]``), its one-line message
names the file and says what to do, and every created file is accounted for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from facecluster.images import display_name
from tests.conftest import image_rows
from tests.robustness.messy import HOSTILE_NAME, USABLE, build_messy

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory):
    """The messy folder, its expected entries, and the CLI run's results and stderr."""
    base = tmp_path_factory.mktemp("messy")
    root = base / "data"
    entries = build_messy(root, base / "outside", AS_ROOT)
    env = {**os.environ, "FACECLUSTER_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "facecluster-cache"),
           "COLUMNS": "200"}
    command = [sys.executable, "-m", "facecluster", "run", str(root), "--out", str(base / "run"),
               "--cache-dir", str(base / "cache"), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600,
                          encoding="utf-8", errors="backslashreplace")
    results = json.loads((base / "run" / "results.json").read_text()) if done.returncode == 0 else None
    images = image_rows(base / "run") if done.returncode == 0 else None
    return {"root": root, "entries": entries, "done": done, "results": results, "images": images}


def _by_path(items: list[dict]) -> dict[str, dict]:
    return {item["path"]: item for item in items}


def test_run_completes_without_a_traceback(messy_run):
    done = messy_run["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "problems:" in done.stderr and "skipped:" in done.stderr


def _kinds():
    return ["zero_byte", "truncated_jpeg", "truncated_png", "corrupt_png_crc", "corrupt_jpeg_header",
            "text_named_jpg", "html_named_png", "heic", "svg", "pdf_named_jpg", "eps_named_png", "png_alpha",
            "grey16_png", "rgb16_png", "palette_png", "palette_transparency_png", "cmyk_jpeg", "greyscale_jpeg",
            "bilevel_bmp", "float_tiff", "exif_rotated_jpeg", "animated_gif", "webp", "uppercase_suffix",
            "no_suffix", "tiny", "thin_strip", "huge_jpeg", "decompression_bomb", "unreadable", "broken_symlink",
            "symlink_loop_file", "symlink_loop_folder", "symlink_inside", "symlink_outside_file",
            "symlink_outside_folder", "named_pipe", "ds_store", "thumbs_db", "apple_double", "hidden_folder",
            "macosx_folder", "loose_file_in_split", "loose_file_in_root", "unknown_folder", "non_utf8_name",
            "long_name", "hostile_name", "same_image_two_labels", "same_image_two_splits"]


@pytest.mark.parametrize("kind", _kinds())
def test_each_bad_input_gets_its_code_and_a_one_line_message(messy_run, kind):
    if kind == "unreadable" and AS_ROOT:
        pytest.skip("running as root, which reads any file: simulated in test_dataset_edges.py")
    results = messy_run["results"]
    assert results is not None, messy_run["done"].stderr[-3000:]
    images = _by_path(messy_run["images"])
    problems, skipped = (_by_path(results[key]) for key in ("problems", "skipped"))
    entries = [e for e in messy_run["entries"] if e.kind == kind and e.where != "inside"]
    assert entries, f"the builder made no {kind}"
    for entry in entries:
        if entry.where == "skipped":
            assert entry.rel in skipped, f"{kind}: {entry.rel!r} not in skipped"
            item = skipped[entry.rel]
            assert item["code"] in entry.codes
            assert entry.rel not in images
        else:
            assert entry.rel in images, f"{kind}: {entry.rel!r} not in images"
            item = images[entry.rel]
            assert item["status"] in entry.codes, (kind, item)
            if item["status"] in USABLE:
                assert entry.rel not in problems
                continue
            assert problems[entry.rel]["code"] == item["status"]
            assert problems[entry.rel]["message"] == item["message"]
        message = item["message"]
        assert "\n" not in message and "\x1b" not in message
        assert message.startswith(display_name(entry.rel) + ": "), message
        assert "; " in message or ". " in message, f"no fix in {message!r}"
        if entry.where == "images":  # shown while the run goes, one line each
            assert message in messy_run["done"].stderr


def test_every_file_given_is_accounted_for(messy_run):
    results = messy_run["results"]
    images = [image["path"] for image in messy_run["images"]]
    assert len(images) == len(set(images)) == results["dataset"]["n_images"]
    given_images = [e for e in messy_run["entries"] if e.where == "images"]
    assert sorted(images) == sorted(e.rel for e in given_images)
    skipped = {item["path"]: item for item in results["skipped"]}
    assert sorted(skipped) == sorted(e.rel for e in messy_run["entries"] if e.where == "skipped")
    for entry in (e for e in messy_run["entries"] if e.where == "inside"):
        folder = next(p for p in skipped if entry.rel.startswith(p + "/"))
        assert skipped[folder].get("n_files", 0) >= 1
    inside = Counter(next(p for p in skipped if e.rel.startswith(p + "/"))
                     for e in messy_run["entries"] if e.where == "inside")
    for folder, n in inside.items():
        assert skipped[folder]["n_files"] == n
    statuses = Counter(image["status"] for image in messy_run["images"])
    assert results["faces"]["failed"] == len(results["problems"]) == sum(
        n for status, n in statuses.items() if status not in USABLE)


def test_names_reach_results_intact(messy_run):
    paths = {os.fsencode(image["path"]) for image in messy_run["images"]}
    assert b"train/real/caf\xe9_\xff.jpg" in paths  # non-UTF-8 bytes survive the Parquet round trip
    assert os.fsencode(f"train/fake/{HOSTILE_NAME}") in paths
    usable = [image["path"] for image in messy_run["images"] if image["status"] in USABLE]
    assert all((messy_run["root"] / path).is_file() for path in usable)


def test_hostile_name_cannot_break_the_screen(messy_run):
    stderr = messy_run["done"].stderr
    assert "\x1b[31m" not in stderr and "\u202e" not in stderr
    assert "evil\\n[/]\\x1b[31m\\u202egpj.jpg: the file is empty" in stderr


def test_same_image_in_two_labels_or_splits_is_flagged_and_kept(messy_run):
    results = messy_run["results"]
    leaks = {tuple(sorted(leak["paths"])): leak for leak in results["leaks"]}
    label = leaks[("train/fake/twin.jpg", "train/real/twin.jpg")]
    assert label["kinds"] == ["label"] and label["labels"] == ["fake", "real"]
    split = leaks[("train/fake/twin_split.jpg", "valid/fake/twin_split.jpg")]
    assert split["kinds"] == ["split"] and split["splits"] == ["train", "valid"]
    codes = {w["code"] for w in results["warnings"]}
    assert {"label_leak", "split_leak"} <= codes
    stderr = messy_run["done"].stderr
    assert "under two labels" in stderr and "in two splits" in stderr
    images = _by_path(messy_run["images"])
    assert all(images[p]["status"] in USABLE for pair in (label, split) for p in pair["paths"])


def test_empty_label_folder_and_one_class_split_are_warnings_and_the_run_goes_on(messy_run):
    results = messy_run["results"]
    warnings = {(w["code"], w.get("path")) for w in results["warnings"]}
    assert ("empty_label_folder", "test/fake") in warnings
    assert ("one_class", "test") in warnings
    assert results["dataset"]["counts"]["test"] == {"real": 2, "fake": 0}
    assert "test acc" in messy_run["done"].stdout
