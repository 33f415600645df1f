"""The run's per-image table, ``images.parquet``: one row per input image, every method's cluster and score.

results.json keeps the summary and names the table (``images.table``). The table is the
complete record of each image, for every method; ``scores.csv``/``scores.parquet``
(`facecluster.score_table`) is the view people read, under one method, with each
cluster's name and the rank — a derived view of this table.

Columns (`BASE_COLUMNS`, then two per method, in results.json's method order):

``path``          relative to the dataset root, as text (bytes that are not UTF-8 read ``\\xNN``)
``path_bytes``    the file name's bytes when they are not UTF-8 (null otherwise): the loader
                  gives the exact name back from them (os.fsdecode)
``split``, ``label``   train | valid | test; real | fake | null (unlabelled)
``sha256``, ``status``, ``message``   content hash; "ok" | "no_face" | an error code; its one-line message
``confidence``, ``box_x``, ``box_y``, ``box_w``, ``box_h``   the detected face (null when none)
``landmarks``     10 numbers, x, y of the left eye, right eye, nose, mouth left, mouth right (or null)
``cluster_<method>``   the cluster id (null: unusable image, or noise)
``score_<method>``     the synthetic score in [0, 1] (null: unusable image, or clusters not named)

It is written in row groups of `ROW_GROUP` rows as they are built (`write_image_table`), and
read through one loader, `load_image_table`, which also reads a run written before the table
existed (results.json schema 1, whose ``images`` is a list).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from facecluster.errors import FaceclusterError
from facecluster.outputs import utf8_text, write_parquet
from facecluster.records import face_columns

TABLE_NAME = "images.parquet"
ROW_GROUP = 16_384  #: rows per Parquet row group: what the writer holds in memory at once
BASE_COLUMNS = ("path", "path_bytes", "split", "label", "sha256", "status", "message", "confidence",
                "box_x", "box_y", "box_w", "box_h", "landmarks")


class ImageTableError(FaceclusterError, ValueError):
    """A run's image table is missing or does not match its results.json; the message names the file and the fix."""


def cluster_column(method: str) -> str:
    return f"cluster_{method}"


def score_column(method: str) -> str:
    return f"score_{method}"


def image_schema(methods: Sequence[str]):
    """The table's pyarrow schema for these methods."""
    import pyarrow as pa

    fields = [("path", pa.string()), ("path_bytes", pa.binary()), ("split", pa.string()), ("label", pa.string()),
              ("sha256", pa.string()), ("status", pa.string()), ("message", pa.string()),
              ("confidence", pa.float32()), ("box_x", pa.float32()), ("box_y", pa.float32()),
              ("box_w", pa.float32()), ("box_h", pa.float32()), ("landmarks", pa.list_(pa.float32(), 10))]
    for method in methods:
        fields += [(cluster_column(method), pa.int32()), (score_column(method), pa.float64())]
    return pa.schema(fields)


def _not_utf8(path: str) -> bytes | None:
    try:
        path.encode("utf-8")
        return None
    except UnicodeEncodeError:
        return os.fsencode(path)


def image_batches(samples, status: Sequence[str], messages: Sequence[str], records: np.ndarray,
                  assignments: dict[str, np.ndarray], synthetic: dict[str, np.ndarray],
                  methods: Sequence[str] | None = None, row_group: int = ROW_GROUP) -> Iterator:
    """The table as pyarrow RecordBatches of at most ``row_group`` rows, built one at a time.

    ``assignments`` holds the methods' clusters (-1: none), ``synthetic`` the scores of the
    methods that have them (NaN: none); ``methods`` (default: those of ``assignments``) get
    their columns, null for a method without clusters. The samples' order is the table's.
    """
    import pyarrow as pa

    methods = list(assignments) if methods is None else list(methods)
    schema = image_schema(methods)
    for start in range(0, len(samples), row_group):
        stop = min(start + row_group, len(samples))
        chunk = samples[start:stop]
        faces = face_columns(records[start:stop])
        boxes, points = faces["box"], faces["landmarks"]
        has_points = np.isfinite(points).all(axis=1)
        columns = {
            "path": [utf8_text(s.relpath) for s in chunk],
            "path_bytes": [_not_utf8(s.relpath) for s in chunk],
            "split": [s.split for s in chunk],
            "label": [s.label for s in chunk],
            "sha256": [s.sha256 or None for s in chunk],
            "status": list(status[start:stop]),
            "message": [utf8_text(m) if m else None for m in messages[start:stop]],
            "confidence": pa.array(faces["confidence"], pa.float32(), from_pandas=True),
            **{name: pa.array(boxes[:, k], pa.float32(), from_pandas=True)
               for k, name in enumerate(("box_x", "box_y", "box_w", "box_h"))},
            "landmarks": pa.FixedSizeListArray.from_arrays(pa.array(np.where(has_points[:, None], points, 0)
                                                                    .reshape(-1), pa.float32()), 10,
                                                           mask=pa.array(~has_points)),
        }
        for method in methods:
            clusters = assignments.get(method)
            part = np.asarray(clusters[start:stop]) if clusters is not None else np.full(stop - start, -1)
            columns[cluster_column(method)] = pa.array(part, pa.int32(), mask=part < 0)
            values = synthetic.get(method)
            columns[score_column(method)] = (pa.array(np.asarray(values[start:stop], dtype=float), pa.float64(),
                                                      from_pandas=True) if values is not None
                                             else pa.nulls(stop - start, pa.float64()))
        yield pa.record_batch([columns[field.name] for field in schema], schema=schema)


def write_image_table(out: Path, samples, status, messages, records, assignments: dict[str, np.ndarray],
                      synthetic: dict[str, np.ndarray], methods: Sequence[str] | None = None,
                      row_group: int = ROW_GROUP) -> dict:
    """Write ``out/images.parquet`` (streamed, atomically); returns what results.json says of it (``images``)."""
    methods = list(assignments) if methods is None else list(methods)
    rows = write_parquet(Path(out) / TABLE_NAME, image_schema(methods),
                         image_batches(samples, status, messages, records, assignments, synthetic, methods,
                                       row_group))
    return {"table": TABLE_NAME, "rows": rows, "row_group": row_group, "methods": methods}


def load_image_table(run_dir: Path, results: dict | None = None):
    """The run's image table as a pandas DataFrame, one row per input image in the run's order.

    Reads ``images.parquet`` as results.json names it, or a schema-1 results.json's
    ``images`` list (a run made before the table existed). Paths are the names as the file
    system spells them (``path_bytes`` applied); text columns hold str or None, clusters are
    nullable integers (``Int64``), scores floats (NaN: none).

    Raises
    ------
    ImageTableError
        When the table is missing, unreadable, or has another number of rows than results.json says.
    """
    run_dir = Path(run_dir)
    if results is None:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    images = results.get("images")
    methods = list(results.get("methods", {}))
    if isinstance(images, list):
        return _frame_from_entries(images, methods)
    if not isinstance(images, dict) or "table" not in images:
        raise ImageTableError(f"{run_dir / 'results.json'}: names no image table (images.table); "
                              "re-run `facecluster run` to rewrite the run")
    return _read_table(run_dir / images["table"], images.get("rows"))


def _read_table(path: Path, rows: int | None):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise ImageTableError(f"{path}: not found, though results.json names it; re-run `facecluster run` "
                              "to write it again") from None
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ImageTableError(f"{path}: not a readable Parquet file ({error}); re-run `facecluster run`") from None
    if rows is not None and table.num_rows != rows:
        raise ImageTableError(f"{path}: holds {table.num_rows} rows, but results.json says {rows}; the run "
                              "directory is mixed up: re-run `facecluster run` into a fresh folder")
    import pandas as pd
    import pyarrow as pa

    frame = pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    raw = table.column("path_bytes").to_pylist()
    paths = table.column("path").to_pylist()
    frame["path"] = pd.Series([os.fsdecode(b) if b is not None else p for p, b in zip(paths, raw)], dtype=object)
    for name in table.column_names:
        if name in ("path", "path_bytes"):
            continue
        column = table.column(name)
        if name == "landmarks":
            frame[name] = pd.Series(column.to_pylist(), dtype=object)
        elif name.startswith("cluster_"):
            frame[name] = pd.array(column.to_pylist(), dtype="Int64")
        elif pa.types.is_string(column.type):
            frame[name] = pd.Series(column.to_pylist(), dtype=object)
        else:
            frame[name] = column.to_numpy(zero_copy_only=False).astype(float)
    return frame


def _frame_from_entries(entries: list[dict], methods: list[str]):
    """A schema-1 ``images`` list as the same DataFrame the table gives."""
    import pandas as pd

    def text(key):
        return pd.Series([e.get(key) for e in entries], dtype=object)

    faces = [e.get("face") or {} for e in entries]
    boxes = np.array([f.get("box") or [np.nan] * 4 for f in faces], dtype=float).reshape(len(entries), 4)
    frame = pd.DataFrame({"path": text("path"), "split": text("split"), "label": text("label"),
                          "sha256": text("sha256"), "status": text("status"), "message": text("message"),
                          "confidence": np.array([f.get("confidence", np.nan) for f in faces], dtype=float)},
                         index=pd.RangeIndex(len(entries)))
    for k, name in enumerate(("box_x", "box_y", "box_w", "box_h")):
        frame[name] = boxes[:, k]
    frame["landmarks"] = pd.Series([np.asarray(f["landmarks"], dtype=float).reshape(-1).tolist()
                                    if f.get("landmarks") else None for f in faces], dtype=object)
    for method in methods:
        frame[cluster_column(method)] = pd.array([(e.get("clusters") or {}).get(method) for e in entries],
                                                 dtype="Int64")
        frame[score_column(method)] = np.array([np.nan if (v := (e.get("scores") or {}).get(method)) is None
                                                else float(v) for e in entries], dtype=float)
    return frame


def table_entries(frame, rows: Sequence[int] | None = None, methods: Sequence[str] | None = None) -> list[dict]:
    """Rows of the table as the dicts results.json schema 1 held per image (path, split, label, sha256,
    status, message (errors only), clusters and scores per method, face {confidence, box, landmarks}).

    For the few rows that need them (thumbnails, the lists on the page), never the whole table at scale.
    """
    methods = list(methods) if methods is not None else [c[len("cluster_"):] for c in frame.columns
                                                         if c.startswith("cluster_")]
    rows = np.arange(len(frame)) if rows is None else np.asarray(rows, dtype=int)
    part = frame.iloc[rows]
    columns = {name: part[name].tolist() for name in ("path", "split", "label", "sha256", "status", "message",
                                                       "landmarks")}
    numbers = {name: part[name].to_numpy(dtype=float, na_value=np.nan)
               for name in ["confidence", "box_x", "box_y", "box_w", "box_h"]
               + [cluster_column(m) for m in methods] + [score_column(m) for m in methods]}
    entries = []
    for k in range(len(rows)):
        entry = {key: columns[key][k] for key in ("path", "split", "label", "sha256", "status")}
        if columns["message"][k]:
            entry["message"] = columns["message"][k]
        entry["clusters"] = {m: (None if np.isnan(v := numbers[cluster_column(m)][k]) else int(v)) for m in methods}
        entry["scores"] = {m: (None if np.isnan(v := numbers[score_column(m)][k]) else float(v)) for m in methods}
        box = [float(numbers[name][k]) for name in ("box_x", "box_y", "box_w", "box_h")]
        if np.isfinite(box).all():
            face = {"confidence": float(numbers["confidence"][k]), "box": box}
            if columns["landmarks"][k] is not None:
                face["landmarks"] = np.asarray(columns["landmarks"][k], dtype=float).reshape(5, 2).tolist()
            entry["face"] = face
        entries.append(entry)
    return entries
