"""images.parquet (facecluster.image_table): written in bounded row groups, read back exactly by the one loader."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq

from facecluster.image_table import load_image_table, table_entries, write_image_table
from facecluster.records import empty_records


def test_the_table_is_written_in_row_groups_and_reads_back_names_that_are_not_utf8(tmp_path):
    names = [os.fsdecode(b"train/real/caf\xe9_\xff.jpg"), "train/fake/plain.jpg", "valid/real/\u00e9t\u00e9.jpg",
             "valid/fake/x.jpg", "train/real/y.jpg"]
    samples = [SimpleNamespace(relpath=name, split=name.split("/")[0], label=name.split("/")[1], sha256="ab" * 32)
               for name in names]
    clusters = np.array([0, 1, -1, 2, 0])
    scores = np.array([0.25, np.nan, np.nan, 0.75, 0.5])
    summary = write_image_table(tmp_path, samples, ["ok"] * 5, [None] * 5, empty_records(5),
                                {"kmeans": clusters, "birch": clusters}, {"kmeans": scores}, row_group=2)
    assert summary["rows"] == 5 and summary["methods"] == ["kmeans", "birch"]
    stored = pq.ParquetFile(tmp_path / "images.parquet")
    assert stored.metadata.num_row_groups == 3  # 2 + 2 + 1: the writer never held more than 2 rows
    assert stored.read().column("path")[0].as_py() == "train/real/caf\\xe9_\\xff.jpg"  # Parquet text is UTF-8
    table = load_image_table(tmp_path, {"methods": {"kmeans": {}, "birch": {}}, "images": summary})
    assert table["path"].tolist() == names  # the exact name again, from path_bytes
    assert os.fsencode(table["path"][0]) == b"train/real/caf\xe9_\xff.jpg"
    assert table["cluster_kmeans"].isna().tolist() == [False, False, True, False, False]  # -1: null
    assert table["cluster_kmeans"].dropna().tolist() == [0, 1, 2, 0]
    assert np.isnan(table["score_birch"]).all()  # a method without scores: null, never 0
    entries = table_entries(table, [3, 0])
    assert [e["path"] for e in entries] == [names[3], names[0]]
    assert entries[0]["clusters"] == {"kmeans": 2, "birch": 2} and entries[0]["scores"] == {"kmeans": 0.75, "birch": None}
