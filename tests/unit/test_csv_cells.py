"""CSV formula injection: file names that a spreadsheet would run are escaped in CSV, and read back exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facecluster.config import DatasetConfig
from facecluster.csv_cells import escape_formula, unescape_formula
from facecluster.dataset import discover
from facecluster.outputs import write_table
from facecluster.scoring import read_answers

# Names an adversary can give image files (no "/" in a file name, so the link has none either).
HOSTILE = ['=HYPERLINK("x","click").jpg', "+1.jpg", "-2.jpg", "@SUM(1).jpg", "\tx.jpg", "\rcr.jpg",
           "'=quoted.jpg", "''+two.jpg", "'plain.jpg", "a=b.jpg", "plain.jpg"]
# What each should look like as a CSV cell (before the CSV's own quoting).
ESCAPED = ['\'=HYPERLINK("x","click").jpg', "'+1.jpg", "'-2.jpg", "'@SUM(1).jpg", "'\tx.jpg", "'\rcr.jpg",
           "''=quoted.jpg", "'''+two.jpg", "'plain.jpg", "a=b.jpg", "plain.jpg"]


def test_a_cell_that_would_start_a_formula_gets_a_quote_and_reading_takes_it_off():
    assert [escape_formula(name) for name in HOSTILE] == ESCAPED
    assert [unescape_formula(cell) for cell in ESCAPED] == HOSTILE
    assert escape_formula(-1) == -1 and escape_formula(None) is None and escape_formula("") == ""
    assert unescape_formula("'") == "'" and unescape_formula("'a") == "'a"  # not an escaped cell: left alone


@pytest.mark.parametrize("text", ["", "'", "''", "=", "'=", "''=", "-", "x-", "'x", "@'", "\t'", "é=", "'\r\n"])
def test_reading_undoes_writing_for_any_text(text):
    assert unescape_formula(escape_formula(text)) == text


def test_write_table_escapes_text_cells_in_csv_only(tmp_path):
    frame = pd.DataFrame({"path": pd.Series(HOSTILE, dtype=object), "cluster": np.arange(-1, len(HOSTILE) - 1),
                          "score": np.linspace(-0.5, 0.5, len(HOSTILE))})
    csv_path, parquet_path = write_table(frame, tmp_path / "scores")
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert list(raw["path"]) == ESCAPED
    assert raw["cluster"].iloc[0] == "-1" and raw["score"].iloc[0] == "-0.5"  # numbers are not formulas
    assert list(pd.read_parquet(parquet_path)["path"]) == HOSTILE


def _images(folder, names):
    folder.mkdir()
    for k, name in enumerate(names):
        Image.new("RGB", (32, 32), (k * 20, 0, 0)).save(folder / name, format="JPEG")


def test_a_written_labels_csv_labels_the_right_images(tmp_path):
    names = HOSTILE + ["x.jpg", "cr.jpg"]  # "\tx.jpg" stripped is "x.jpg": the name as written wins
    folder = tmp_path / "flat"
    _images(folder, names)
    labels = ["fake" if k % 2 else "real" for k in range(len(names))]
    csv_path, _ = write_table(pd.DataFrame({"path": names, "label": labels}), tmp_path / "labels")
    dataset = discover(folder, DatasetConfig(labels=str(csv_path)))  # run/fit --labels
    assert {s.relpath: s.label for s in dataset.samples} == dict(zip(names, labels))
    assert not dataset.warnings  # every row named an image
    listed = tmp_path / "flat" / "list"
    write_table(pd.DataFrame({"path": names, "label": labels}), listed)  # a dataset given as a CSV
    assert {s.relpath: s.label for s in discover(listed.with_suffix(".csv")).samples} == dict(zip(names, labels))


def test_answers_read_back_to_the_exact_file_names(tmp_path):
    labels = ["fake" if k % 2 else "real" for k in range(len(HOSTILE))]
    csv_path, _ = write_table(pd.DataFrame({"path": HOSTILE, "label": labels}), tmp_path / "labels")
    answers = read_answers(csv_path)  # name --labels
    assert list(answers["path"]) == HOSTILE and list(answers["label"]) == labels
