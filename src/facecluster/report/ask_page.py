"""The labelling page of `facecluster ask`: the k faces the tool chose, real/fake buttons, a CSV download.

One self-contained ``ask.html`` beside ``ask.csv``: each chosen face (re-cut from the original as
the model's run cut it, larger than the report's thumbnails so that a person can judge it), its
file name and a link to the whole image. The answers are kept in the page and downloaded as
``labels.csv`` (the columns of ask.csv with ``label`` filled in), which
``facecluster name MODEL --labels labels.csv`` reads. Nothing from the user's data is parsed as
HTML: Jinja2 autoescapes the markup and the rows travel as JSON read with ``JSON.parse``.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from facecluster.atomic import write_atomically
from facecluster.records import FaceRecord
from facecluster.report.thumbnails import face_thumbnail

PAGE_NAME = "ask.html"
FACE_SIZE = 192
TEMPLATES = Path(__file__).parent / "templates"


def face_entry(relpath: str, record) -> dict:
    """An ``images[]``-style entry (path, face box, landmarks) for `face_thumbnail`, from a face record row."""
    face = FaceRecord.from_array(record)
    entry: dict = {"path": relpath}
    if face.found:
        entry["face"] = {"confidence": face.confidence, "box": list(face.box),
                         "landmarks": None if face.landmarks is None else face.landmarks.tolist()}
    return entry


def write_ask_page(out: Path, table, root: Path, records, margin: float, crop: str, source: str) -> Path:
    """Write ``out/ask.html`` for ``table`` (ask.csv's rows); ``records`` are the chosen rows' face records."""
    rows = []
    for row, record in zip(table.to_dict(orient="records"), records):
        entry = face_entry(row["path"], record)
        rows.append({**{key: (int(value) if key.startswith("cluster_") or key == "ask" else value)
                        for key, value in row.items()},
                     "thumb": face_thumbnail(root, entry, margin, FACE_SIZE, crop),
                     "href": (Path(root) / row["path"]).resolve().as_uri()})
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
    html = env.get_template("ask.html.j2").render(
        rows=rows, columns=list(table.columns), source=source, face_size=FACE_SIZE,
        data=[{key: value for key, value in row.items() if key not in ("thumb", "href")} for row in rows])
    path = Path(out) / PAGE_NAME
    write_atomically(path, html.encode("utf-8", "backslashreplace"))
    return path
