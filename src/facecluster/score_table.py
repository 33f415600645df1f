"""The per-image table people use: one row per input file, usable or not, with its score and rank.

Columns (`COLUMNS`): ``path`` (relative to the dataset), ``sha256``, ``split``,
``given_label`` (the label the data gave it, empty when unlabelled), ``status`` and
``reason`` (why an image could not be used), the face ``box_x``, ``box_y``, ``box_w``,
``box_h`` and its ``confidence``, then, under the scoring ``method``: ``cluster``,
``label`` (the cluster's name: real or fake), ``score`` (how synthetic it looks, in [0, 1])
and ``rank`` (1 = most synthetic-looking; 0 = no score). Missing values are empty cells in
the CSV and nulls in Parquet, never zeros.
"""

from __future__ import annotations

import numpy as np

from facecluster.records import FaceRecord

COLUMNS = ("path", "sha256", "split", "given_label", "status", "reason", "box_x", "box_y", "box_w", "box_h",
           "confidence", "method", "cluster", "label", "score", "rank")


def rank_of(scores: np.ndarray) -> np.ndarray:
    """1 for the most synthetic-looking face, then 2, …; ties keep the input order; 0 where there is no score."""
    rank = np.zeros(len(scores), dtype=np.int64)
    rows = np.flatnonzero(np.isfinite(scores))
    order = rows[np.argsort(-scores[rows], kind="stable")]
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def _text(values: list):
    """A column of Python str (or None), kept as objects: see the note in `score_frame`."""
    import pandas as pd

    return pd.Series(values, dtype=object)


def score_frame(samples, status, messages, records: np.ndarray, method: str | None, clusters: np.ndarray | None,
                predicted: np.ndarray | None, scores: np.ndarray | None):
    """The table as a pandas DataFrame, in the samples' order (see the module's columns).

    ``clusters`` is -1, ``predicted`` None and ``scores`` NaN where an image has none; any of
    them may be None altogether (e.g. a model whose clusters are not named yet).
    """
    import pandas as pd

    n = len(samples)
    faces = [FaceRecord.from_array(row) for row in records]
    boxes = np.array([f.box if f.found and f.box is not None else (np.nan,) * 4 for f in faces], dtype=float)
    boxes = boxes.reshape(n, 4)
    cluster_values = (pd.array([int(c) if c >= 0 else None for c in clusters], dtype="Int64") if clusters is not None
                      else pd.array([None] * n, dtype="Int64"))
    score_values = np.asarray(scores, dtype=float) if scores is not None else np.full(n, np.nan)
    ranks = rank_of(score_values)
    frame = pd.DataFrame({
        "path": _text([s.relpath for s in samples]),
        "sha256": _text([s.sha256 or None for s in samples]),
        "split": _text([s.split for s in samples]),
        "given_label": _text([s.label for s in samples]),
        "status": _text(list(status)),
        "reason": _text([m or None for m in messages]),
        "box_x": boxes[:, 0], "box_y": boxes[:, 1], "box_w": boxes[:, 2], "box_h": boxes[:, 3],
        "confidence": [round(f.confidence, 4) if f.found else np.nan for f in faces],
        "method": _text([method] * n),
        "cluster": cluster_values,
        "label": _text(list(predicted) if predicted is not None else [None] * n),
        "score": score_values,
        "rank": pd.array([int(r) if r > 0 else None for r in ranks], dtype="Int64"),
    }, columns=list(COLUMNS))
    # Text stays Python str (object): pandas' Arrow-backed "string" refuses a file name that is not
    # UTF-8 (os.fsdecode's lone surrogates); `outputs.write_table` escapes those for Parquet only.
    return frame
