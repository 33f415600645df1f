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
from facecluster.csv_cells import unescape_formula
from facecluster.dataset import Dataset, as_new_data, discover, from_paths
from facecluster.engines import Engine, Extraction
from facecluster.engines.local import LocalEngine
from facecluster.errors import ModelError
from facecluster.features import Extractor, cues_of, make_extractor
from facecluster.model import ANSWERS, FaceModel, method_evaluation
from facecluster.model_io import MANIFEST
from facecluster.outputs import provenance, write_json, write_table, write_text
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
    faces: FacesConfig


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
        dataset = (discover(Path(images), new_data=True) if isinstance(images, (str, Path))
                   else as_new_data(from_paths(images)))
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
        clusters = {name: model.assign(reduced, name) for name in model.method_names()}
        synthetic = {name: model.score_reduced(reduced, name) for name in model.method_names() if model.can_score(name)}
        return Scored(dataset, extraction, usable, reduced, clusters, synthetic, method, faces)


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
    dataset = discover(source, dataset_config, new_data=True)  # all new to the model: no made-up splits
    engine = engine or LocalEngine()
    store = store or FeatureStore()  # the features, and the montages' and thumbnails' face crops
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
            "n_clusters": int(len(density.clusters_)) if density is not None else 2 if name == ANSWERS else None,
            "figures": draw_method_figures(out, name, dataset, scored.extraction, scored.reduced, assigned, usable,
                                           config, f"{name}: the model's clusters of {dataset.root.name}",
                                           store=store),
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
    write_report(out, store=store)
    return results


ASK_STRATEGIES = ("typical", "doubtful")


def ask_for_labels(source: Path, model_path: Path, out: Path, k: int = 32, strategy: str = "typical",
                   store: FeatureStore | None = None, engine: Engine | None = None, progress: bool = True):
    """The k train images of ``source`` a person should label first, written to ``out/ask.csv`` in the order to ask.

    The saved model is applied as `facecluster score` applies it (nothing re-fitted); the rows are
    chosen by `facecluster.labelling.choose_rows_to_label` in the model's reduced space: the medoid of
    each cluster of the model's default method, then ``strategy`` ("typical": medoids of a k-cell
    partition; "doubtful": where the model's clusterings disagree). The table has a blank ``label``
    column to fill with real/fake and each method's cluster (``cluster_<method>``), so that
    ``facecluster name MODEL --labels ask.csv`` names the clusters from those answers only.

    Returns the table (a DataFrame), the `Scored` application and the chosen rows of its dataset.
    """
    import pandas as pd

    from facecluster.labelling import choose_rows_to_label

    if strategy not in ASK_STRATEGIES:
        raise ModelError(f"unknown strategy {strategy!r}; choose one of {list(ASK_STRATEGIES)}")
    fitted = FittedModel.load(model_path)
    dataset = discover(source)
    scored = fitted.apply(dataset, store=store, engine=engine, progress=progress)
    splits = np.array([s.split for s in dataset.samples], dtype=object)
    rows = np.flatnonzero(scored.usable & (splits == "train"))  # never the validation images: they stay unseen
    if not 1 <= k <= len(rows):
        raise ModelError(f"{source}: cannot ask for {k} labels out of {len(rows)} usable train images; "
                         f"give --k between 1 and {len(rows)}")
    methods = [scored.method] + [name for name in scored.clusters if name != scored.method]
    order = choose_rows_to_label(scored.reduced[rows], [scored.clusters[name][rows] for name in methods], k,
                                 then=strategy, seed=fitted.model.seed)
    chosen = rows[order]
    table = pd.DataFrame({
        "ask": np.arange(1, k + 1),
        "path": pd.Series([dataset.samples[i].relpath for i in chosen], dtype=object),
        "label": pd.Series([""] * k, dtype=object),
        **{f"cluster_{name}": scored.clusters[name][chosen].astype(int) for name in methods},
    })
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / "ask")
    return table, scored, chosen


def read_answers(csv_path: Path):
    """The labelled rows of a CSV (``label`` real/fake; blank labels dropped), as strings; refused in one line if unusable."""
    import pandas as pd

    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise ModelError(f"{csv_path}: cannot be read as a CSV ({error}); give scores.csv or the report's download")
    table = table.map(unescape_formula)  # the writers' escaping against formula injection (csv_cells)
    if "label" not in table:
        raise ModelError(f"{csv_path}: needs a label column (real/fake); label the rows of ask.csv, scores.csv "
                         "or of the report's selection download")
    table["label"] = table["label"].str.strip()
    rows = table[table["label"] != ""]
    unknown = sorted(set(rows["label"]) - {"real", "fake"})
    if unknown:
        raise ModelError(f"{csv_path}: labels must be real or fake; got {unknown}")
    return rows


def _cluster_column(answers, method: str, csv_path: Path) -> str:
    column = f"cluster_{method}" if f"cluster_{method}" in answers else "cluster"
    if column not in answers:
        raise ModelError(f"{csv_path}: needs the columns label and cluster (or cluster_{method}); "
                         "label the rows of ask.csv, scores.csv or of the report's selection download")
    if column == "cluster" and "method" in answers and set(answers["method"]) - {method, ""}:
        raise ModelError(f"{csv_path}: its clusters are of method {sorted(set(answers['method']) - {''})}, "
                         f"not {method!r}; pass --method")
    return column


def mapping_from_labels(answers, model: FaceModel, method: str, csv_path: Path) -> dict[int, str]:
    """Cluster names from a labelled table of this model's clusters: ask.csv, scores.csv or the report's selection CSV.

    ``answers`` is `read_answers` of ``csv_path`` (named in errors). The CSV needs a ``label``
    column (real/fake; blank rows are skipped) and the cluster of each row: ``cluster`` (with
    ``method`` naming the method, as in scores.csv) or ``cluster_<method>``. The model's naming
    rule names each cluster from those labels; clusters without a labelled row keep the default.
    """
    from facecluster.evaluate import NAMING_RULES

    column = _cluster_column(answers, method, csv_path)
    rows = answers[answers[column].str.strip() != ""]
    if rows.empty:
        raise ModelError(f"{csv_path}: no row has both a label and a cluster; fill in the label column")
    clusters = rows[column].astype(float).astype(int).to_numpy()
    return NAMING_RULES[model.naming](clusters, rows["label"].to_numpy(dtype=object))


def method_from_answers(answers, model: FaceModel) -> tuple[str | None, dict[str, float | None]]:
    """The model's method whose clusters the ``answers`` (`read_answers`) agree with best, left out one at a time.

    Only for tables with a ``cluster_<method>`` column per method (ask.csv): `labelling.choose_clustering`,
    ties to the model's default method. None when fewer than two methods have a column.
    """
    from facecluster.labelling import choose_clustering

    default = model._method(None)
    methods = sorted(model.clusterers_, key=lambda m: m != default)  # the default first: it wins ties
    candidates = {m: answers[f"cluster_{m}"].astype(float).astype(int).to_numpy()
                  for m in methods if f"cluster_{m}" in answers}
    if len(candidates) < 2:
        return None, {}
    return choose_clustering(candidates, answers["label"].to_numpy(dtype=object), model.naming)


def answers_features(answers, images: Path, fitted: "FittedModel", csv_path: Path,
                     store: FeatureStore | None = None,
                     engine: Engine | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``answers`` (`read_answers` of ``csv_path``, paths relative to ``images``) reduced by the model; their labels.

    A path that is not a usable image of ``images`` is refused in one line naming it: an answer
    that cannot be seen must not be silently dropped.
    """
    if "path" not in answers:
        raise ModelError(f"{csv_path}: needs a path column (relative to {images}) to learn from the answers")
    dataset = from_paths([Path(images) / p for p in answers["path"]])
    scored = fitted.apply(dataset, store=store, engine=engine)
    unusable = [p for p, ok in zip(answers["path"], scored.usable) if not ok]
    if unusable:
        raise ModelError(f"{csv_path}: {len(unusable)} answered image(s) are not usable images under {images} "
                         f"(first: {unusable[0]}); give the folder the paths are relative to with --images")
    return scored.reduced, answers["label"].to_numpy(dtype=object)


def rename_clusters(path: Path, mapping: dict[int, str] | None, method: str | None = None,
                    labels: Path | None = None, images: Path | None = None, store: FeatureStore | None = None,
                    engine: Engine | None = None) -> tuple[Path, str, dict[int, str], dict[str, float | None]]:
    """Name a saved model's clusters by hand (``mapping``) or from a labelled CSV (``labels``, see
    `mapping_from_labels`), and save it again in place (card kept); nothing is re-fitted.

    With ``labels`` and no ``method``, the method is the one whose clusters the answers agree with
    best (`method_from_answers`; it becomes the model's default). Returns the model folder, the
    method named, the names given and the answers' leave-one-out agreement per method (empty when
    there was no choice to make). With ``labels`` and ``images`` (the folder the CSV's paths are
    relative to), the model also learns the method ``"answers"`` from them (`FaceModel.fit_answers`:
    a linear classifier on its reduced features), which becomes its default.
    """
    fitted = FittedModel.load(path)
    model, agreement = fitted.model, {}
    answers = None if labels is None else read_answers(labels)  # read once, for all three uses below
    if mapping is None and method is None:
        chosen, agreement = method_from_answers(answers, model)
        if chosen is not None:  # the answers' best method becomes the model's default
            method = model.default_method_ = chosen
    method = model._method(method)
    if method == ANSWERS:  # names are for clusterers: the default one before the answers
        method = next(iter(model.clusterers_))
    if mapping is None:
        mapping = mapping_from_labels(answers, model, method, labels)
    model.set_mapping(method, mapping)
    card = dict(fitted.card or {})
    card["named_by_hand"] = {**card.get("named_by_hand", {}), method: {str(k): v for k, v in sorted(mapping.items())}}
    if agreement:
        card["default_method"] = method
        card["method_from_answers"] = {"chosen": method, "leave_one_out_balanced_accuracy": agreement}
    if images is not None:
        reduced, answered = answers_features(answers, images, fitted, labels, store, engine)
        model.fit_answers(reduced, answered)
        card["default_method"] = ANSWERS
        card["answers"] = {"n_answers": model.answers_.n_answers_, "images": str(images),
                           "labels_file": str(labels), "classifier": model.describe_method(ANSWERS)[1]}
    fitted.model.save(fitted.folder, card=card)
    return fitted.folder, method, mapping, agreement
