"""The run's page: one self-contained ``report.html`` built from results.json and the run's files.

Nothing is recomputed: the summary comes from ``results.json``, scores, clusters and face boxes
from the image table (``images.parquet``, read by `facecluster.image_table.load_image_table`),
the coordinates from ``reduced.npy`` and the montages from the PNG files beside them. Faces are
re-cut from the original images for the thumbnails, for a bounded sample of the images only
(`facecluster.report.sample`), so the page stays small at any size; the per-image table stays
outside the page, linked from it. Every value that comes from the user's
data goes through Jinja2's autoescaping or the Bokeh document (HTML-escaped by Bokeh for its
``<script>`` tag, shown with ``textContent``), never into markup as it is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape

from facecluster.atomic import write_atomically
from facecluster.errors import FaceclusterError
from facecluster.image_table import load_image_table, table_entries
from facecluster.records import NO_FACE, USABLE
from facecluster.report.ranking import RANKED_FACES, ranked_rows, score_context
from facecluster.report.sample import DEFAULT_INTERACTIVE, DEFAULT_SAMPLE, report_sample
from facecluster.store import FeatureStore
from facecluster.report.thumbnails import THUMBNAIL_SIZE, face_thumbnails, file_data_uri

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
TEMPLATES = Path(__file__).parent / "templates"
METRICS = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."), ("roc_auc", "ROC AUC"),
           ("average_precision", "AP"), ("ari", "ARI"), ("nmi", "NMI"))
NO_LABELLED_IMAGES = "no image has a given label to score against (the synthetic scores are in the score table file)"


class ReportError(FaceclusterError, ValueError):
    """A run directory the report cannot be built from; the message names the file and the fix."""


def _number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _params(params: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items()) or "defaults"


def load_results(run_dir: Path) -> dict:
    """The results.json of a finished run."""
    path = run_dir / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: not found; give the folder that `facecluster run` wrote") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: not valid JSON ({error}); re-run `facecluster run` to rewrite it") from None
    if not isinstance(results, dict) or not {"dataset", "methods", "images"} <= set(results):
        raise ReportError(f"{path}: not a facecluster results file (no dataset/methods/images); check the folder")
    return results


def load_reduced(run_dir: Path, n_images: int, notes: list[str]) -> np.ndarray | None:
    """reduced.npy, one row per image; None (and a note saying why) when it cannot be used."""
    try:
        reduced = np.load(run_dir / "reduced.npy", allow_pickle=False)
    except (OSError, ValueError) as error:
        notes.append(f"reduced.npy could not be read ({error}); no scatter drawn")
        return None
    if reduced.ndim != 2 or len(reduced) != n_images:
        notes.append(f"reduced.npy has shape {reduced.shape}, not one row per image; no scatter drawn")
        return None
    return reduced


def cluster_ids(keys) -> list[str]:
    """Cluster ids in numeric order; noise (-1 or "noise") last as "noise"."""
    keys = {str(k) for k in keys}
    noise = bool(keys & {"-1", "noise"})
    return sorted((k for k in keys if k not in ("-1", "noise")), key=int) + (["noise"] if noise else [])


def _absent_reason(results: dict, name: str, method: dict) -> str | None:
    """Why a method's row of the score table is empty ("–"), or None when it has scores."""
    if any(method.get("scores", {}).values()):
        return None
    if not method.get("mapping"):
        return (results.get("scoring") or {}).get("why_no_scores") or \
            "the clusters are not named: give some labels (--labels FILE) or name them (facecluster name)"
    return NO_LABELLED_IMAGES


def _score_rows(results: dict, splits: list[str]) -> list[dict]:
    last = splits[-1] if splits else None
    best = max((m["scores"].get(last, {}).get("accuracy") or -1 for m in results["methods"].values()), default=-1)
    rows = []
    for name, method in results["methods"].items():
        cells = [_number(method["scores"].get(split, {}).get(key)) for split in splits for key, _ in METRICS]
        rows.append({"name": name, "algorithm": method["algorithm"], "params": _params(method.get("params", {})),
                     "n_clusters": method["n_clusters"], "cells": cells,
                     "absent": _absent_reason(results, name, method),
                     "best": best >= 0 and method["scores"].get(last, {}).get("accuracy") == best})
    return rows


def _clusters(method: dict, run_dir: Path, labels: list[str]) -> list[dict]:
    from facecluster.report.scatter import NOISE_COLOUR, cluster_colour

    per_split = method.get("clusters", {})
    ids = cluster_ids(k for summary in per_split.values() for k in summary)
    montages = method.get("figures", {}).get("montages", {})
    cards = []
    for position, cluster in enumerate(ids):
        key = "-1" if cluster == "noise" else cluster
        counts = {split: summary.get(key, {}) for split, summary in per_split.items()}
        totals = {label: sum(c.get(label, 0) for c in counts.values()) for label in labels}
        size = sum(totals.values())
        montage_name = montages.get(key)
        cards.append({
            "id": cluster,
            "colour": NOISE_COLOUR if cluster == "noise" else cluster_colour(position),
            "mapped": (method.get("mapping") or {}).get(key, "–"),
            "size": size,
            "counts": {split: {label: c.get(label, 0) for label in labels} for split, c in counts.items()},
            "shares": [(label, 100.0 * totals[label] / size if size else 0.0) for label in labels],
            "montage_name": montage_name,
            "montage": file_data_uri(run_dir / montage_name) if montage_name else None,
        })
    return cards


def _confusions(method: dict) -> list[dict]:
    tables = []
    for split, scores in method.get("scores", {}).items():
        confusion = scores.get("confusion")
        if not confusion:
            continue
        rows = []
        for truth, counts in zip(confusion["labels"], confusion["matrix"]):
            total = sum(counts)
            cells = [{"n": n, "share": 100.0 * n / total if total else 0.0} for n in counts]
            rows.append({"truth": truth, "cells": cells,
                         "correct": [truth == predicted for predicted in confusion["labels"]]})
        tables.append({"split": split, "labels": confusion["labels"], "rows": rows,
                       "accuracy": _number(scores.get("accuracy"))})
    return tables


def _config_text(run_dir: Path, results: dict) -> str:
    try:
        return (run_dir / "config.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return json.dumps(results.get("provenance", {}).get("config", {}), indent=2)


def audit_context(audit: dict | None) -> dict | None:
    """The audit's lines for the page: the history verdicts per clustering first, then every check, flags first."""
    if not audit:
        return None
    checks = sorted(audit.get("checks", []), key=lambda c: not c.get("flag"))
    history = audit.get("history") or {}
    following = [{"flag": bool(c.get("flag")), "message": c.get("message", "")}
                 for c in history.get("clusterings", [])]
    return {"checks": [{"flag": bool(c.get("flag")), "message": c.get("message", "")} for c in checks],
            "history": following or None, "note": history.get("note", "")}


def _tables(run_dir: Path, results: dict) -> list[dict]:
    """The per-image tables beside the page (kept out of it: they grow with the images), for links."""
    images = results.get("images")
    names = ([images["table"]] if isinstance(images, dict) and images.get("table") else [])
    names += list((results.get("scoring") or {}).get("table", []))
    return [{"name": name, "size_mb": (run_dir / name).stat().st_size / 1e6}
            for name in dict.fromkeys(names) if (run_dir / name).is_file()]


def report_context(run_dir: Path, results: dict, table, thumbs: list[str | None], notes: list[str]) -> dict:
    """Everything the template shows, as plain values (the template escapes them)."""
    counts = results["dataset"].get("counts", {})
    splits = list(counts)
    labels = list(dict.fromkeys(label for c in counts.values() for label in c)) or ["real", "fake"]
    no_face = np.flatnonzero(table["status"].to_numpy(dtype=object) == NO_FACE)
    methods = [{"index": j, "name": name, "algorithm": method["algorithm"],
                "params": _params(method.get("params", {})), "n_clusters": method["n_clusters"],
                "bandwidth": method.get("bandwidth"), "mapping_source": method.get("mapping_source") or "nothing (no labels; name them with facecluster name)",
                "clusters": _clusters(method, run_dir, labels), "confusions": _confusions(method)}
               for j, (name, method) in enumerate(results["methods"].items())]
    reduce = results.get("reduce", {})
    return {
        "results": results,
        # `facecluster score`: the folder of the saved model whose clusters the images were assigned to
        "scored_with": (results.get("model") or {}).get("folder") if results.get("kind") == "score" else None,
        "notes": notes,
        "splits": splits,
        "labels": labels,
        "metrics": [label for _, label in METRICS],
        "count_rows": [{"split": s, "counts": [c.get(label, 0) for label in labels], "total": sum(c.values())}
                       for s, c in counts.items()],
        "count_totals": [sum(c.get(label, 0) for c in counts.values()) for label in labels],
        "score_rows": _score_rows(results, splits),
        "synthetic": score_context(results, table, thumbs),
        "selection_columns": {"methods": [{"name": name, "column": f"c{j}"} for j, name in enumerate(results["methods"])]},
        "methods": methods,
        "explained": [f"{100 * v:.1f} %" for v in reduce.get("explained_variance_ratio", [])],
        "no_face": [{**entry, "thumb": thumbs[i]} for i, entry in zip(no_face, table_entries(table, no_face))],
        "tables": _tables(run_dir, results),
        "n_thumbnails": sum(thumb is not None for thumb in thumbs),
        "failed": results.get("problems", []),
        "config_text": _config_text(run_dir, results),
        "audit": audit_context(results.get("audit")),
        "versions": results.get("provenance", {}).get("versions", {}),
        "thumbnail_size": THUMBNAIL_SIZE,
    }


def _thumbnails(root: Path, results: dict, table, usable: np.ndarray, faces: dict, report: dict,
                seed: int, store: FeatureStore | None = None) -> tuple[list[str | None], np.ndarray]:
    """Face thumbnails for the page's sample of usable images (None elsewhere), and the mask of rows that want one."""
    method = (results.get("scoring") or {}).get("method")
    ranked = np.concatenate(ranked_rows(table, method, RANKED_FACES)[:2]) if method else np.array([], dtype=int)
    sample = report_sample(table, list(results["methods"]), usable, report.get("thumbnail_sample", DEFAULT_SAMPLE),
                           seed, always=ranked)
    wanted = sample & usable
    rows = np.flatnonzero(wanted)
    cut = face_thumbnails(root, table_entries(table, rows), np.ones(len(rows), dtype=bool), faces.get("margin", 0.2),
                          crop=faces.get("crop", "box"), store=store)
    thumbs: list[str | None] = [None] * len(table)
    for row, thumb in zip(rows, cut):
        thumbs[row] = thumb
    return thumbs, wanted


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["number"] = _number
    return env


def build_report(run_dir: Path, results: dict | None = None, root: Path | None = None,
                 store: FeatureStore | None = None) -> str:
    """The page for a finished run, as HTML text.

    Parameters
    ----------
    run_dir : Path
        The folder `facecluster run` wrote (results.json, reduced.npy, montage PNGs).
    results : dict, optional
        The run's results, if already in memory; read from ``run_dir`` otherwise.
    root : Path, optional
        Where the original images are now, if they moved since the run (default: the
        ``dataset.root`` recorded in results.json).
    store : FeatureStore, optional
        Where the thumbnails' face crops are cached by content hash (`facecluster.face_crops`);
        without one, every thumbnail is cut from its image.
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from facecluster.report.scatter import scatter_figures

    run_dir = Path(run_dir)
    results = results or load_results(run_dir)
    table = load_image_table(run_dir, results)
    notes: list[str] = []
    reduced = load_reduced(run_dir, len(table), notes)
    usable = np.isfinite(reduced).all(axis=1) if reduced is not None else \
        np.isin(table["status"].to_numpy(dtype=object), USABLE)
    root = Path(root) if root else Path(results["dataset"]["root"])
    config = results.get("provenance", {}).get("config", {})
    faces = config.get("faces", {})
    thumbs, wanted = _thumbnails(root, results, table, usable, faces, config.get("report", {}), config.get("seed", 0),
                                 store)
    missing = sum(1 for row in np.flatnonzero(wanted) if thumbs[row] is None)
    if missing:
        notes.append(f"{missing} face thumbnails could not be made: the originals are not readable under "
                     f"{root}; if they moved, rebuild with `facecluster report RUN_DIR --images NEW_ROOT`")
    limit = config.get("report", {}).get("interactive_points", DEFAULT_INTERACTIVE)
    points = wanted if usable.sum() > limit else None  # a large run: only the sample as points
    figures = scatter_figures(results, table, reduced, thumbs, points) if reduced is not None else []
    context = report_context(run_dir, results, table, thumbs, notes)
    context["figure_names"] = [fig.name for fig in figures]
    context["n_points"] = int(usable.sum() if points is None else (usable & points).sum())
    context["n_usable"] = int(usable.sum())
    template = _environment().get_template("report.html.j2")
    if not figures:
        return template.render(**context, bokeh_js="", bokeh_css="", plot_script="", roots=[])
    return file_html(figures, INLINE, "facecluster report", template=template, template_variables=context)


def write_report(run_dir: Path, results: dict | None = None, root: Path | None = None,
                 store: FeatureStore | None = None) -> Path:
    """Build the page and write it to ``run_dir/report.html`` (atomically); returns its path (``store``: see `build_report`)."""
    run_dir = Path(run_dir)
    html = build_report(run_dir, results, root, store=store)
    path = run_dir / REPORT_NAME
    # File names that are not UTF-8 reach here as lone surrogates: written as visible escapes.
    write_atomically(path, html.encode("utf-8", "backslashreplace"))
    log.info("report: %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
