"""Apply a saved model to new images without re-fitting: `facecluster score` and `facecluster.load_model`.

The model is read as data (`FaceModel.load`). Its feature extractor is rebuilt from the
settings saved with it and must compute the same features as when it was fitted: an
extractor whose identity differs (another checkpoint, precision, version) is refused in one
line naming the difference. Every input image gets its row in the score table, with its
reason when it could not be used.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecluster.config import Config, DatasetConfig, FacesConfig, FeaturesConfig, dump_config
from facecluster.dataset import Dataset, discover, from_paths
from facecluster.engines import Engine, Extraction
from facecluster.engines.local import LocalEngine
from facecluster.errors import ModelError
from facecluster.features import Extractor, cues_of, make_extractor
from facecluster.model import FaceModel, method_evaluation
from facecluster.model_io import MANIFEST
from facecluster.outputs import provenance, write_json, write_text
from facecluster.pipeline import (
    dataset_summary,
    draw_method_figures,
    face_counts,
    SCHEMA_VERSION,
    problem_entries,
    scores_frame,
    write_images,
    write_scores,
)
from facecluster.protocol import usable_rows
from facecluster.reduce import describe_reducer
from facecluster.report.html import write_report
from facecluster.store import FeatureStore

def model_folder(path: Path) -> Path:
    """The model folder itself, or the ``model/`` of a run or fit folder."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if (path / "model" / MANIFEST).is_file():
        return path / "model"
    raise ModelError(f"{path}: no saved model here (no {MANIFEST}, nor model/{MANIFEST}); give the folder "
                     "that `facecluster fit` or `facecluster run` wrote")


def _plain(value):
    return json.loads(json.dumps(value))  # tuples → lists: compare what was saved with what is computed


def matching_extractor(model: FaceModel) -> Extractor:
    """The extractor that computes the features ``model`` was fitted on; refused when this install differs.

    Raises
    ------
    ModelError
        When the model holds no feature settings, or this install's extractor has another identity.
    """
    if not model.features_config or not model.features:
        raise ModelError("the model holds no feature settings, so new images cannot be embedded as its were; "
                         "re-fit it with this version (facecluster fit)")
    extractor = make_extractor(FeaturesConfig.model_validate(model.features_config))
    saved, now = _plain(model.features), _plain(extractor.cache_identity())
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        was = ", ".join(f"{k}={saved.get(k)!r}" for k in differ)
        here = ", ".join(f"{k}={now.get(k)!r}" for k in differ)
        raise ModelError(f"the model was fitted on features with {was}, but this install computes {here}; "
                         "install the versions its card names, or re-fit it here")
    return extractor


@dataclass
class Scored:
    """A model applied to a dataset: every row's reduced features, clusters, names and score per method."""

    dataset: Dataset
    extraction: Extraction
    usable: np.ndarray
    reduced: np.ndarray
    clusters: dict[str, np.ndarray]
    synthetic: dict[str, np.ndarray]
    method: str


class FittedModel:
    """A saved model that scores images: what `facecluster.load_model` returns.

    ``model`` is the `FaceModel` (its methods — ``predict_clusters``, ``predict``,
    ``synthetic_score``, ``transform`` — are reachable on this object too); ``card`` is the
    model card saved with it; ``folder`` where it was read from.
    """

    def __init__(self, model: FaceModel, folder: Path, card: dict | None = None):
        self.model = model
        self.folder = Path(folder)
        self.card = card

    @classmethod
    def load(cls, path: Path) -> "FittedModel":
        folder = model_folder(path)
        return cls(FaceModel.load(folder), folder, FaceModel.card(folder))

    def __getattr__(self, name: str):
        if name == "model":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    def score(self, images, method: str | None = None, *, store: FeatureStore | None = None,
              engine: Engine | None = None, progress: bool = False):
        """One row per image (see `facecluster.score_table`): cluster, name, synthetic score and rank.

        ``images`` is a folder (any layout, labels optional), a CSV (``path[,label][,split]``)
        or a list of image paths. Nothing is re-fitted.
        """
        dataset = discover(Path(images)) if isinstance(images, (str, Path)) else from_paths(images)
        scored = self.apply(dataset, method, store=store, engine=engine, progress=progress)
        return scores_frame(scored.dataset, scored.extraction, self.model, scored.clusters, scored.synthetic,
                            scored.method)

    def apply(self, dataset: Dataset, method: str | None = None, *, store: FeatureStore | None = None,
              engine: Engine | None = None, progress: bool = False) -> Scored:
        """Extract ``dataset``'s features as the model was fitted, then assign and score every row."""
        model = self.model
        method = model._method(method)
        extractor = matching_extractor(model)
        faces = FacesConfig.model_validate(model.faces or {})
        extraction = (engine or LocalEngine()).extract(dataset.samples, faces, extractor, store or FeatureStore(),
                                                        progress=progress)
        usable = usable_rows(extraction.status, extraction.features)
        reduced = model.transform(np.where(usable[:, None], extraction.features, np.nan))  # unusable rows: NaN
        clusters = {name: model.assign(reduced, name) for name in model.clusterers_}
        synthetic = {name: model.score_reduced(reduced, name) for name in model.clusterers_
                     if name in model.mappings_ and name in model.densities_}
        return Scored(dataset, extraction, usable, reduced, clusters, synthetic, method)


def load_model(path: Path) -> FittedModel:
    """The model saved in ``path`` (a model folder, or a run/fit folder holding ``model/``), read as data only."""
    return FittedModel.load(path)


def score_folder(source: Path, model_path: Path, out: Path, dataset_config: DatasetConfig | None = None,
                 method: str | None = None, store: FeatureStore | None = None, engine: Engine | None = None,
                 progress: bool = True) -> dict:
    """Score every image of ``source`` with a saved model; write scores.csv/.parquet, results.json and report.html.

    Labels in ``source`` (folders, a CSV, ``labels.csv`` or ``dataset_config.labels``) are
    used only to score the model on them: balanced accuracy, ROC AUC and average precision.
    """
    started = time.perf_counter()
    fitted = FittedModel.load(model_path)
    model = fitted.model
    out.mkdir(parents=True, exist_ok=True)
    dataset_config = dataset_config or DatasetConfig()
    dataset = discover(source, dataset_config)
    engine = engine or LocalEngine()
    t0 = time.perf_counter()
    scored = fitted.apply(dataset, method, store=store, engine=engine, progress=progress)
    extract_seconds = time.perf_counter() - t0
    config = Config(dataset=dataset_config, faces=FacesConfig.model_validate(model.faces or {}),
                    features=FeaturesConfig.model_validate(model.features_config), reduce=model.reduce,
                    methods=model.methods, seed=model.seed)
    labels = np.array([s.label for s in dataset.samples], dtype=object)
    splits = np.array([s.split for s in dataset.samples], dtype=object)
    usable = scored.usable
    methods = {}
    for name, assigned in scored.clusters.items():
        density = model.densities_.get(name)
        methods[name] = {
            **method_evaluation(model, name, assigned, labels, splits, usable, scored.reduced,
                                scored.synthetic.get(name), n_resamples=config.evaluation.bootstrap_resamples,
                                seed=model.seed),
            "n_clusters": int(len(density.clusters_)) if density is not None else None,
            "figures": draw_method_figures(out, name, dataset, scored.extraction, scored.reduced, assigned, usable,
                                           config, f"{name}: the model's clusters of {dataset.root.name}"),
        }
    np.save(out / "reduced.npy", scored.reduced.astype(np.float32), allow_pickle=False)
    extractor_name = (model.features or {}).get("extractor", "")
    results = {
        "schema_version": SCHEMA_VERSION,
        "kind": "score",
        "model": {"folder": str(fitted.folder), "card": fitted.card},
        "dataset": dataset_summary(source, dataset),
        "faces": face_counts(config, scored.extraction),
        "features": {**model.features, "dim": int(model.n_features_in_), "cues": cues_of(extractor_name)},
        "reduce": describe_reducer(model.reducer_),
        "methods": methods,
        "supervised": {},
        "audit": None,
        "problems": problem_entries(dataset, scored.extraction, usable, extractor_name),
        "skipped": dataset.skipped,
        "warnings": dataset.warnings,
        "leaks": dataset.leaks,
        "images": write_images(out, dataset, scored.extraction, scored.clusters, scored.synthetic, methods),
        "scoring": write_scores(out, dataset, scored.extraction, model, scored.clusters, scored.synthetic,
                                method=scored.method),
        "provenance": provenance(config, engine=engine.name),
        "timings": {"extract_seconds": round(extract_seconds, 3), "computed": scored.extraction.computed,
                    "total_seconds": round(time.perf_counter() - started, 3)},
    }
    write_text(out / "config.toml", dump_config(config))
    write_json(out / "results.json", results)
    write_report(out)
    return results


def mapping_from_labels(csv_path: Path, model: FaceModel, method: str) -> dict[int, str]:
    """Cluster names from a labelled table of this model's clusters: ``scores.csv`` or the report's selection CSV.

    The CSV needs a ``label`` column (real/fake; blank rows are skipped) and the cluster of each
    row: ``cluster`` (with ``method`` naming the method, as in scores.csv) or ``cluster_<method>``.
    The model's naming rule names each cluster from those labels; clusters without a labelled
    row keep the default.
    """
    import pandas as pd

    from facecluster.evaluate import NAMING_RULES

    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise ModelError(f"{csv_path}: cannot be read as a CSV ({error}); give scores.csv or the report's download")
    column = f"cluster_{method}" if f"cluster_{method}" in table else "cluster"
    if "label" not in table or column not in table:
        raise ModelError(f"{csv_path}: needs the columns label and cluster (or cluster_{method}); "
                         "label the rows of scores.csv or of the report's selection download")
    if column == "cluster" and "method" in table and set(table["method"]) - {method, ""}:
        raise ModelError(f"{csv_path}: its clusters are of method {sorted(set(table['method']) - {''})}, "
                         f"not {method!r}; pass --method")
    rows = table[(table["label"].str.strip() != "") & (table[column].str.strip() != "")]
    unknown = sorted(set(rows["label"].str.strip()) - {"real", "fake"})
    if unknown:
        raise ModelError(f"{csv_path}: labels must be real or fake; got {unknown}")
    if rows.empty:
        raise ModelError(f"{csv_path}: no row has both a label and a cluster; fill in the label column")
    clusters = rows[column].astype(float).astype(int).to_numpy()
    return NAMING_RULES[model.naming](clusters, rows["label"].str.strip().to_numpy(dtype=object))


def rename_clusters(path: Path, mapping: dict[int, str] | None, method: str | None = None,
                    labels: Path | None = None) -> tuple[Path, str, dict[int, str]]:
    """Name a saved model's clusters by hand (``mapping``) or from a labelled CSV (``labels``, see
    `mapping_from_labels`), and save it again in place (card kept); nothing is re-fitted.

    Returns the model folder, the method named and the names given.
    """
    fitted = FittedModel.load(path)
    method = fitted.model._method(method)
    if mapping is None:
        mapping = mapping_from_labels(labels, fitted.model, method)
    fitted.model.set_mapping(method, mapping)
    card = dict(fitted.card or {})
    card["named_by_hand"] = {**card.get("named_by_hand", {}), method: {str(k): v for k, v in sorted(mapping.items())}}
    fitted.model.save(fitted.folder, card=card)
    return fitted.folder, method, mapping
