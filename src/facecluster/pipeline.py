"""The one place that runs the stages in order: dataset → faces → features → reduce → cluster → evaluate → report."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import numpy as np

from facecluster.audit import audit as audit_dataset
from facecluster.config import Config, dump_config
from facecluster.dataset import Dataset, DatasetError, discover
from facecluster.engines import Engine, Extraction
from facecluster.engines.local import LocalEngine
from facecluster.faces import cut_face
from facecluster.features import cues_of, make_extractor
from facecluster.images import decode_rgb, read_bytes
from facecluster.errors import ModelError
from facecluster.model import fit_and_evaluate
from facecluster.outputs import provenance, write_json, write_text
from facecluster.protocol import usable_rows
from facecluster.records import NO_FACE, OK, USABLE, FaceRecord
from facecluster.reduce import describe_reducer
from facecluster.report.figures import montage_png, scatter_png
from facecluster.report.html import write_report
from facecluster.store import FeatureStore
from facecluster.supervised import supervised_ceiling

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
def new_run_dir(base: Path = Path("runs")) -> Path:
    """A fresh directory under ``base`` named by the current time."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, k = base / stamp, 1
    while path.exists():
        k += 1
        path = base / f"{stamp}-{k}"
    return path


def _montages(out: Path, name: str, dataset: Dataset, extraction: Extraction, clusters: np.ndarray,
              config: Config) -> dict[str, str]:
    rng = np.random.default_rng(config.seed)
    files = {}
    train = np.array([s.split == "train" for s in dataset.samples])
    for cluster in sorted(np.unique(clusters[clusters >= 0]).tolist()):
        members = np.flatnonzero((clusters == cluster) & train)
        if len(members) == 0:
            members = np.flatnonzero(clusters == cluster)
        chosen = rng.choice(members, size=min(config.report.montage_size, len(members)), replace=False)
        faces, borders = [], []
        for i in sorted(chosen.tolist()):
            sample = dataset.samples[i]
            rgb = decode_rgb(read_bytes(sample.path, sample.relpath), sample.relpath)
            faces.append(cut_face(rgb, extraction.records[i], config.faces, config.report.thumbnail))
            borders.append("#2e7d32" if sample.label == "real" else "#c62828")
        path = out / f"montage-{name}-cluster{cluster}.png"
        montage_png(path, faces, tile=config.report.thumbnail, borders=borders)
        files[str(cluster)] = path.name
    return files


def _image_entries(dataset: Dataset, extraction: Extraction, assignments: dict[str, np.ndarray]) -> list[dict]:
    entries = []
    for i, sample in enumerate(dataset.samples):
        face = FaceRecord.from_array(extraction.records[i])
        entry = {
            "path": sample.relpath,
            "split": sample.split,
            "label": sample.label,
            "sha256": sample.sha256 or None,
            "status": extraction.status[i],
            "clusters": {name: (int(c[i]) if c[i] >= 0 else None) for name, c in assignments.items()},
        }
        if extraction.messages[i]:
            entry["message"] = extraction.messages[i]
        if face.found:
            entry["face"] = {"confidence": round(face.confidence, 4), "box": [round(v, 1) for v in face.box]}
            if face.landmarks is not None and np.isfinite(face.landmarks).all():  # for aligned thumbnails
                entry["face"]["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks]
        entries.append(entry)
    return entries


def model_card(results: dict) -> dict:
    """What a saved model was fitted on, with what, and how it scored: for the people who reuse it."""
    audit = results.get("audit") or {}
    return {
        "fitted_on": {k: results["dataset"][k] for k in ("source", "fingerprint", "n_images", "counts")},
        "features": results["features"],
        "faces": results["provenance"]["config"]["faces"],
        "scores": {name: {split: scored.get("balanced_accuracy") for split, scored in method.get("scores", {}).items()}
                   for name, method in results["methods"].items()},
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
        n_resamples=config.evaluation.bootstrap_resamples,
        model_params={"features": extractor.cache_identity(), "faces": config.faces.model_dump(mode="json")})
    methods, assignments = evaluation["methods"], evaluation["clusters"]
    usable, reduced, reducer = evaluation["usable"], evaluation["reduced"], model.reducer_
    for name in methods:
        scatter = scatter_png(out / f"scatter-{name}.png", reduced[usable], assignments[name][usable],
                              labels[usable], splits[usable], f"{name}: clusters of {extractor.name} features")
        methods[name]["figures"] = {"scatter": scatter.name,
                                    "montages": _montages(out, name, dataset, extraction, assignments[name], config)}
    np.save(out / "reduced.npy", reduced.astype(np.float32), allow_pickle=False)

    problems = [{"path": s.relpath, "code": extraction.status[i], "message": extraction.messages[i]}
                for i, s in enumerate(dataset.samples) if extraction.status[i] not in USABLE]
    problems += [{"path": s.relpath, "code": "nonfinite_features",
                  "message": f"{s.relpath}: some of its {extractor.name} features are not finite numbers, so it "
                             "takes no part in clustering; re-run with another extractor or report the image"}
                 for i, s in enumerate(dataset.samples) if extraction.status[i] in USABLE and not usable[i]]
    results = {
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": {
            "source": str(source),
            "root": str(dataset.root),
            "split_source": dataset.split_source,
            "fingerprint": dataset.fingerprint(),
            "n_images": len(dataset.samples),
            "counts": dataset.counts(),
        },
        "faces": {
            "detector": config.faces.detector,
            "found": int(sum(s == OK for s in extraction.status)),
            "no_face": int(sum(s == NO_FACE for s in extraction.status)),
            "failed": int(sum(s not in USABLE for s in extraction.status)),
        },
        "features": {**extractor.describe(), "dim": int(extraction.features.shape[1]),
                     "cues": cues_of(extractor.name)},
        "reduce": describe_reducer(reducer),
        "methods": methods,
        "supervised": (supervised_ceiling(extraction.features, labels, splits, usable, seed=config.seed)
                       if config.evaluation.supervised else {}),
        "audit": audit_dataset(dataset, config) if config.audit.enabled else None,
        "problems": problems,
        "skipped": dataset.skipped,
        "warnings": dataset.warnings,
        "leaks": dataset.leaks,
        "images": _image_entries(dataset, extraction, assignments),
        "provenance": provenance(config, engine=engine.name),
        "timings": {"extract_seconds": round(extract_seconds, 3), **{f"{k}_seconds": round(v, 3) for k, v in extraction.seconds.items()},
                    "computed": extraction.computed, "total_seconds": round(time.perf_counter() - started, 3),
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
    write_report(out)  # report.html, built from the files just written
    return results

