"""The one place that runs the stages in order: dataset → faces → features → reduce → cluster → evaluate → report."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import numpy as np

from facecluster.audit import audit as audit_dataset, named_clusterings
from facecluster.config import Config, dump_config
from facecluster.dataset import Dataset, DatasetError, discover
from facecluster.engines import Engine, Extraction
from facecluster.engines.local import LocalEngine
from facecluster.face_crops import FaceToCut, cut_faces
from facecluster.image_table import write_image_table
from facecluster.features import cues_of, make_extractor
from facecluster.errors import ModelError
from facecluster.model import fit_and_evaluate
from facecluster.outputs import provenance, write_json, write_table, write_text
from facecluster.evaluate import labelled_rows
from facecluster.protocol import usable_rows
from facecluster.records import NO_FACE, OK, USABLE
from facecluster.reduce import describe_reducer
from facecluster.report.figures import montage_png, scatter_png
from facecluster.report.html import write_report
from facecluster.score_table import score_frame
from facecluster.store import FeatureStore
from facecluster.supervised import supervised_ceiling

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  #: of results.json (docs/results.md); 2: the image table moved to images.parquet
LABEL_COLOURS = {"real": "#2e7d32", "fake": "#c62828"}  # montage borders by given label
UNLABELLED_COLOUR = "#9e9e9e"


def new_run_dir(base: Path = Path("runs")) -> Path:
    """A fresh directory under ``base`` named by the current time."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, k = base / stamp, 1
    while path.exists():
        k += 1
        path = base / f"{stamp}-{k}"
    return path


def draw_montages(out: Path, name: str, dataset: Dataset, extraction: Extraction, clusters: np.ndarray,
                  config: Config, store: FeatureStore | None = None) -> dict[str, str]:
    """One montage PNG per cluster (a seeded sample of its train members); the crops cached in ``store``."""
    rng = np.random.default_rng(config.seed)
    train = np.array([s.split == "train" for s in dataset.samples])
    chosen = {}
    for cluster in sorted(np.unique(clusters[clusters >= 0]).tolist()):
        members = np.flatnonzero((clusters == cluster) & train)
        if len(members) == 0:
            members = np.flatnonzero(clusters == cluster)
        picked = rng.choice(members, size=min(config.report.montage_size, len(members)), replace=False)
        chosen[cluster] = sorted(picked.tolist())
    rows = [i for picked in chosen.values() for i in picked]
    to_cut = [FaceToCut.of(dataset.samples[i], extraction.records[i]) for i in rows]
    crops = dict(zip(rows, cut_faces(to_cut, config.report.thumbnail, config.faces.margin, config.faces.crop,
                                     store=store)))
    files = {}
    for cluster, picked in chosen.items():
        kept = [i for i in picked if crops[i] is not None]  # a file gone since extraction has no tile
        if len(kept) < len(picked):
            log.warning("montage of %s cluster %s: %d faces could not be re-read from their images", name, cluster,
                        len(picked) - len(kept))
        faces = [crops[i] for i in kept]
        borders = [LABEL_COLOURS.get(dataset.samples[i].label, UNLABELLED_COLOUR) for i in kept]
        path = out / f"montage-{name}-cluster{cluster}.png"
        montage_png(path, faces, tile=config.report.thumbnail, borders=borders)
        files[str(cluster)] = path.name
    return files


def draw_method_figures(out: Path, name: str, dataset: Dataset, extraction: Extraction, reduced: np.ndarray,
                        clusters: np.ndarray, usable: np.ndarray, config: Config, title: str,
                        store: FeatureStore | None = None) -> dict:
    """One method's scatter (usable rows) and its cluster montages; their file names for results.json."""
    labels = np.array([s.label for s in dataset.samples], dtype=object)
    splits = np.array([s.split for s in dataset.samples], dtype=object)
    scatter = scatter_png(out / f"scatter-{name}.png", reduced[usable], clusters[usable], labels[usable],
                          splits[usable], title)
    return {"scatter": scatter.name, "montages": draw_montages(out, name, dataset, extraction, clusters, config, store)}


def write_images(out: Path, dataset: Dataset, extraction: Extraction, assignments: dict[str, np.ndarray],
                 synthetic: dict[str, np.ndarray], methods) -> dict:
    """images.parquet, one row per input image (`facecluster.image_table`); what results.json says of it."""
    return write_image_table(out, dataset.samples, extraction.status, extraction.messages, extraction.records,
                             assignments, synthetic, methods=list(methods))


def problem_entries(dataset: Dataset, extraction: Extraction, usable: np.ndarray, extractor: str) -> list[dict]:
    """Every image that takes no part: its status code and one-line message, or non-finite features."""
    problems = [{"path": s.relpath, "code": extraction.status[i], "message": extraction.messages[i]}
                for i, s in enumerate(dataset.samples) if extraction.status[i] not in USABLE]
    problems += [{"path": s.relpath, "code": "nonfinite_features",
                  "message": f"{s.relpath}: some of its {extractor} features are not finite numbers, so it "
                             "takes no part in clustering; re-run with another extractor or report the image"}
                 for i, s in enumerate(dataset.samples) if extraction.status[i] in USABLE and not usable[i]]
    return problems


def dataset_summary(source: Path, dataset: Dataset) -> dict:
    """Where the images came from, how they were split, and how many of each label."""
    return {"source": str(source), "root": str(dataset.root), "split_source": dataset.split_source,
            "fingerprint": dataset.fingerprint(), "n_images": len(dataset.samples), "n_labelled": dataset.n_labelled,
            "counts": dataset.counts()}


def face_counts(config: Config, extraction: Extraction) -> dict:
    """Faces found, centre-cropped (no face) and failed."""
    return {"detector": config.faces.detector,
            "found": int(sum(s == OK for s in extraction.status)),
            "no_face": int(sum(s == NO_FACE for s in extraction.status)),
            "failed": int(sum(s not in USABLE for s in extraction.status))}


def scores_frame(dataset: Dataset, extraction: Extraction, model, assignments: dict[str, np.ndarray],
                 synthetic: dict[str, np.ndarray], method: str):
    """The per-image table (`facecluster.score_table`) under ``method``: names and scores once it is named."""
    named = method in model.mappings_
    return score_frame(dataset.samples, extraction.status, extraction.messages, extraction.records, method,
                       assignments.get(method), model.names_of(assignments[method], method) if named else None,
                       synthetic.get(method))


def write_scores(out: Path, dataset: Dataset, extraction: Extraction, model, assignments: dict[str, np.ndarray],
                 synthetic: dict[str, np.ndarray], method: str | None = None) -> dict:
    """scores.csv and scores.parquet under ``method`` (the model's default); what results.json says about them."""
    method = method or model._method(None)
    named = method in model.mappings_
    frame = scores_frame(dataset, extraction, model, assignments, synthetic, method)
    csv_path, parquet_path = write_table(frame, out / "scores")
    return {"method": method, "named": named, "table": [csv_path.name, parquet_path.name],
            "n_scored": int(frame["score"].notna().sum()),
            **({} if named else {"why_no_scores": "the clusters are not named: give some labels "
                                                  "(--labels FILE) or name them (facecluster name)"})}


def model_card(results: dict) -> dict:
    """What a saved model was fitted on, with what, and how it scored: for the people who reuse it."""
    audit = results.get("audit") or {}
    return {
        "fitted_on": {k: results["dataset"][k] for k in ("source", "fingerprint", "n_images", "counts")},
        "features": results["features"],
        "faces": results["provenance"]["config"]["faces"],
        "scores": {name: {split: {k: scored.get(k) for k in ("balanced_accuracy", "roc_auc", "average_precision")}
                          for split, scored in method.get("scores", {}).items()}
                   for name, method in results["methods"].items()},
        "default_method": results["scoring"]["method"],
        "cues": results["features"].get("cues", []),
        "audit_flags": audit.get("flags", []),
        "provenance": {k: results["provenance"][k] for k in ("versions", "created", "seed")},
    }


def run(source: Path, config: Config, out: Path, store: FeatureStore | None = None,
        engine: Engine | None = None, progress: bool = True) -> dict:
    """Run the whole study on ``source`` and write results.json, figures and report.html into ``out``."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    store = store or FeatureStore()
    engine = engine or LocalEngine()
    dataset = discover(source, config.dataset)
    discover_seconds = time.perf_counter() - started
    extractor = make_extractor(config.features)
    t0 = time.perf_counter()
    extraction = engine.extract(dataset.samples, config.faces, extractor, store, progress=progress)
    extract_seconds = time.perf_counter() - t0

    labels = np.array([s.label for s in dataset.samples], dtype=object)
    splits = np.array([s.split for s in dataset.samples], dtype=object)
    if (usable_rows(extraction.status, extraction.features) & (splits == "train")).sum() < 2:
        raise DatasetError(f"{source}: fewer than 2 usable train images; nothing to cluster. "
                           "Check the problems listed above")
    model, evaluation = fit_and_evaluate(
        extraction.features, extraction.status, labels, splits, reduce=config.reduce, methods=config.methods,
        seed=config.seed, blocks=getattr(extractor, "blocks", None), naming=config.evaluation.naming,
        n_resamples=config.evaluation.bootstrap_resamples, restarts=config.evaluation.restarts,
        model_params={"features": extractor.cache_identity(), "features_config": config.features.model_dump(mode="json"),
                      "faces": config.faces.model_dump(mode="json")})
    methods, assignments, synthetic = evaluation["methods"], evaluation["clusters"], evaluation["synthetic"]
    usable, reduced, reducer = evaluation["usable"], evaluation["reduced"], model.reducer_
    labelled = labelled_rows(labels)
    fit_seconds = time.perf_counter() - t0 - extract_seconds
    t0 = time.perf_counter()
    for name in [m for m in methods if m in assignments]:
        methods[name]["figures"] = draw_method_figures(out, name, dataset, extraction, reduced, assignments[name],
                                                       usable, config, f"{name}: clusters of {extractor.name} features",
                                                       store=store)
    figures_seconds = time.perf_counter() - t0
    np.save(out / "reduced.npy", reduced.astype(np.float32), allow_pickle=False)

    problems = problem_entries(dataset, extraction, usable, extractor.name)
    t0 = time.perf_counter()
    # The audit sees the run's clusters, to say how much each follows the files' processing history.
    audit_result = (audit_dataset(dataset, config, store=store, clusterings=named_clusterings(model, assignments))
                    if config.audit.enabled else None)
    audit_seconds = time.perf_counter() - t0
    results = {
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset_summary(source, dataset),
        "faces": face_counts(config, extraction),
        "features": {**extractor.describe(), "dim": int(extraction.features.shape[1]),
                     "cues": cues_of(extractor.name)},
        "reduce": describe_reducer(reducer),
        "restarts": evaluation["restarts"],
        "methods": methods,
        "supervised": (supervised_ceiling(extraction.features, labels, splits, usable & labelled, seed=config.seed)
                       if config.evaluation.supervised else {}),
        "audit": audit_result,
        "problems": problems,
        "skipped": dataset.skipped,
        "warnings": dataset.warnings,
        "leaks": dataset.leaks,
        "images": write_images(out, dataset, extraction, assignments, synthetic, methods),
        "scoring": write_scores(out, dataset, extraction, model, assignments, synthetic),
        "provenance": provenance(config, engine=engine.name),
        "timings": {"extract_seconds": round(extract_seconds, 3), **{f"{k}_seconds": round(v, 3) for k, v in extraction.seconds.items()},
                    "computed": extraction.computed, "discover_seconds": round(discover_seconds, 3),
                    "fit_seconds": round(fit_seconds, 3), "figures_seconds": round(figures_seconds, 3),
                    "audit_seconds": round(audit_seconds, 3), "total_seconds": round(time.perf_counter() - started, 3),
                    **({"nodes": extraction.nodes, "sent_by_driver": extraction.sent_by_driver} if extraction.nodes else {})},
    }
    write_text(out / "config.toml", dump_config(config))
    try:
        model.save(out / "model", card=model_card(results))
        results["model"] = {"folder": "model"}
    except ModelError as error:  # e.g. a clusterer registered by the user, outside the loadable set
        log.warning("the fitted model was not saved: %s", error)
        results["model"] = {"folder": None, "not_saved": str(error)}
    write_json(out / "results.json", results)  # last: a run is done once it exists
    write_report(out, store=store)  # report.html, built from the files just written (thumbnails' crops cached)
    return results

