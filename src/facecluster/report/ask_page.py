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
from facecluster.face_crops import FaceToCut, cut_faces
from facecluster.report.thumbnails import jpeg_data_uri
from facecluster.store import FeatureStore

PAGE_NAME = "ask.html"
FACE_SIZE = 192
TEMPLATES = Path(__file__).parent / "templates"


def write_ask_page(out: Path, table, samples, records, margin: float, crop: str, source: str,
                   store: FeatureStore | None = None) -> Path:
    """Write ``out/ask.html`` for ``table`` (ask.csv's rows); ``samples`` and ``records`` are the chosen rows'
    dataset samples and face records (crops cut as the run cut them, cached in ``store`` when given)."""
    faces = [FaceToCut.of(sample, record) for sample, record in zip(samples, records)]
    crops = cut_faces(faces, FACE_SIZE, margin, crop, store=store)
    rows = []
    for row, sample, cut in zip(table.to_dict(orient="records"), samples, crops):
        rows.append({**{key: (int(value) if key.startswith("cluster_") or key == "ask" else value)
                        for key, value in row.items()},
                     "thumb": None if cut is None else jpeg_data_uri(cut),
                     "href": Path(sample.path).resolve().as_uri()})
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
    html = env.get_template("ask.html.j2").render(
        rows=rows, columns=list(table.columns), source=source, face_size=FACE_SIZE,
        data=[{key: value for key, value in row.items() if key not in ("thumb", "href")} for row in rows])
    path = Path(out) / PAGE_NAME
    write_atomically(path, html.encode("utf-8", "backslashreplace"))
    return path
