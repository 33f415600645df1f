"""The fitted pipeline: what `run`, `sweep`, the audit and scoring share.

A `FaceModel` holds the learnt steps after the features: the reducer (per-family
standardiser, scaler, PCA), one clusterer per method, and each method's cluster → label
mapping. It follows scikit-learn's conventions: parameters in ``__init__``, work in
`fit` (features only, never labels), fitted state in attributes ending in ``_``; the
mapping is learnt afterwards from train labels (`name_clusters`), so labels cannot reach
what is fitted without them.

`fit_and_evaluate` is the one evaluation of a model on a dataset's splits; every
orchestrator calls it, so the same configuration scores the same everywhere.

`FaceModel.save` writes the model as data (JSON + ``.npy`` + a SHA-256 manifest, see
`facecluster.model_io`); `FaceModel.load` executes nothing from the files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator

from facecluster.cluster import depends_on_seed, n_clusters_of
from facecluster.config import RESERVED_METHOD, MethodConfig, ReduceConfig
from facecluster.errors import ModelError
from facecluster.evaluate import apply_mapping, cluster_summary, labelled_rows, silhouette
from facecluster.labelling import AnswersClassifier
from facecluster.model_io import decode_estimators, encode_estimators, read_bundle, write_bundle
from facecluster.protocol import (
    SPLIT_ORDER,
    cross_validated_mapping_score,
    finite_rows,
    fit_clusterer,
    fit_reducer,
    reduce_rows,
    score_splits,
    train_mapping,
    usable_rows,
)
from facecluster.reduce import depends_on_seed as reducer_depends_on_seed
from facecluster.synthetic import ClusterDensity, calibrate, probability

FORMAT = "facecluster-model"
FORMAT_VERSION = 1
MODEL_DOCUMENT = "model.json"

#: What a clusterer may raise on data it cannot cluster; recorded per method when asked to.
FIT_ERRORS = (ValueError, MemoryError, np.linalg.LinAlgError)


#: The method name of the classifier learnt from a person's answers (`FaceModel.fit_answers`); no configured
#: method may take it.
ANSWERS = RESERVED_METHOD


class FaceModel(BaseEstimator):
    """Reducer, clusterers and cluster → label mappings, fitted on one feature family's vectors.

    Parameters
    ----------
    reduce : ReduceConfig
        The reducer to fit (standardisation, PCA components, incremental fitting).
    methods : dict of str to MethodConfig
        The clusterers, by method name; each is fitted on the same reduced train rows.
    seed : int
        Random state of the reducer and the clusterers.
    blocks : list of (family, start, stop), optional
        Column ranges of combined feature families (``a+b``): each is standardised first.
    features : dict, optional
        The feature extractor's identity (``cache_identity``); a model refuses features of another.
    features_config : dict, optional
        The ``[features]`` settings that rebuild that extractor (to score new images).
    faces : dict, optional
        The face settings (detector, crop, margin) the features were computed with.
    naming : {"majority", "enrichment"}
        How `name_clusters` names clusters from train labels (a method's manual mapping wins).

    Attributes
    ----------
    reducer_ : sklearn Pipeline
    clusterers_ : dict of str to estimator
        Only the methods that could be fitted; `fit_errors_` names the others.
    fit_errors_ : dict of str to str
    mappings_ : dict of str to dict
        Per named method: ``mapping`` (cluster id → label), ``source``, ``default`` label and
        ``calibration`` of the synthetic score (Platt slope and intercept, or None).
    densities_ : dict of str to ClusterDensity
        Per method, the clusters as Gaussians (fitted without labels), for `synthetic_score`.
    default_method_ : str
        The method `predict` and `synthetic_score` use when none is named: the best by the
        train-only criterion in `fit_and_evaluate`, else the first; ``"answers"`` once
        `fit_answers` has run.
    answers_ : AnswersClassifier or None
        A linear classifier on a person's few answers (`fit_answers`), reachable as the method
        ``"answers"`` beside the clusterers: its two "clusters" are 0 = real, 1 = fake.
    n_features_in_ : int
    """

    def __init__(self, *, reduce: ReduceConfig | None = None, methods: dict[str, MethodConfig] | None = None,
                 seed: int = 0, blocks: list | None = None, features: dict | None = None,
                 features_config: dict | None = None, faces: dict | None = None, naming: str = "majority"):
        self.reduce = reduce
        self.methods = methods
        self.seed = seed
        self.blocks = blocks
        self.features = features
        self.features_config = features_config
        self.faces = faces
        self.naming = naming

    # -- fitting -------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Fit on every row with finite features (``y`` is ignored: names come from `name_clusters`)."""
        X = np.asarray(X, dtype=np.float32)
        rows = finite_rows(X)
        self.fit_rows(X, rows, rows)
        return self

    def fit_rows(self, features: np.ndarray, usable: np.ndarray, train: np.ndarray,
                 record_errors: bool = False, fitted_reducer: tuple | None = None,
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Fit on the ``train`` rows; return every ``usable`` row reduced and its cluster per method.

        Unusable rows are NaN in ``reduced`` and -1 in the clusters; train rows take the fit's
        own assignment (e.g. HDBSCAN noise). With ``record_errors``, a method whose clusterer
        fails on these data is recorded in `fit_errors_` instead of raising. ``fitted_reducer``
        (reducer, reduced), the output of `protocol.fit_reducer` on these same rows, is used
        instead of fitting one (restarts whose reduction does not depend on the seed).
        """
        if int(train.sum()) < 2:
            raise ValueError("fewer than 2 usable train rows; nothing to fit")
        self.n_features_in_ = int(features.shape[1])
        if fitted_reducer is None:
            fitted_reducer = fit_reducer(features, usable, train, self.reduce or ReduceConfig(),
                                         seed=self.seed, blocks=self.blocks)
        self.reducer_, reduced = fitted_reducer
        self.clusterers_, self.fit_errors_, self.mappings_, self.densities_ = {}, {}, {}, {}
        self.fit_seconds_: dict[str, float] = {}
        clusters = {}
        for name, method in (self.methods or {}).items():
            started = time.perf_counter()
            try:
                model, clusters[name] = fit_clusterer(reduced, usable, train, method.algorithm, method.params,
                                                      seed=self.seed)
            except FIT_ERRORS as error:
                if not record_errors:
                    raise
                self.fit_errors_[name] = f"{type(error).__name__}: {error}"
                continue
            self.clusterers_[name] = model
            if (clusters[name][train] >= 0).any():
                self.densities_[name] = ClusterDensity().fit(reduced[train], clusters[name][train])
            self.fit_seconds_[name] = time.perf_counter() - started
        self.default_method_ = next(iter(self.clusterers_), None)
        self.answers_ = None
        return reduced, clusters

    def name_clusters(self, clusters: dict[str, np.ndarray], labels: np.ndarray, rows: np.ndarray,
                      reduced: np.ndarray | None = None) -> "FaceModel":
        """Learn each method's cluster → label mapping from the labels of ``rows`` (labelled train), or its manual one.

        A method with neither labelled rows nor a manual mapping stays unnamed (no `predict`,
        no score). With ``reduced`` (every row reduced), the synthetic score is calibrated
        on ``rows``.
        """
        labels = np.asarray(labels, dtype=object)
        for name in self.clusterers_:
            manual = self.methods[name].mapping
            if manual is None and not rows.any():
                self.mappings_.pop(name, None)
                continue
            mapping, source, default = train_mapping(clusters[name], labels, rows, manual, self.naming)
            self.mappings_[name] = {"mapping": mapping, "source": source, "default": default, "calibration": None}
            if reduced is not None and rows.any() and name in self.densities_:
                self.mappings_[name]["calibration"] = calibrate(self._log_odds(reduced[rows], name), labels[rows])
        return self

    def set_mapping(self, method: str, mapping: dict[int, str]) -> "FaceModel":
        """Name ``method``'s clusters by hand (the study's way, by eye); no re-fitting.

        The synthetic score then follows the new names, uncalibrated (its calibration was
        learnt for the old ones).
        """
        method = self._method(method)
        if method == ANSWERS:
            raise ModelError("the method 'answers' is a classifier, its names are fixed; name a clusterer's clusters")
        unknown = sorted(set(mapping.values()) - {"real", "fake"})
        if unknown:
            raise ModelError(f"cluster names must be 'real' or 'fake'; got {unknown}")
        known = set(self.densities_[method].clusters_.tolist()) if method in self.densities_ else None
        missing = sorted(int(k) for k in mapping if known is not None and int(k) not in known)
        if missing:
            raise ModelError(f"method {method!r} has no cluster {missing}; its clusters are {sorted(known)}")
        default = self.mappings_.get(method, {}).get("default") or "real"
        self.mappings_[method] = {"mapping": {int(k): v for k, v in mapping.items()}, "source": "manual",
                                  "default": default, "calibration": None}
        return self

    def fit_answers(self, reduced: np.ndarray, labels: np.ndarray) -> "FaceModel":
        """Learn the method ``"answers"`` from a few labelled rows (already reduced: `transform`'s output).

        A class-balanced logistic regression on the model's reduced features (`AnswersClassifier`),
        which becomes the default method; the clusterers and their names are left as they are.
        """
        self.answers_ = AnswersClassifier().fit(reduced, labels)
        self.mappings_[ANSWERS] = {"mapping": {0: "real", 1: "fake"}, "default": "real", "calibration": None,
                                   "source": f"a linear classifier on {self.answers_.n_answers_} answers"}
        self.default_method_ = ANSWERS
        return self

    def method_names(self) -> list[str]:
        """Every method this model can assign with: its fitted clusterers, then ``"answers"`` if fitted."""
        return list(self.clusterers_) + ([ANSWERS] if getattr(self, "answers_", None) is not None else [])

    def can_score(self, method: str) -> bool:
        """Whether ``method`` gives synthetic scores: it is named and has a density (or is the answers' classifier)."""
        return method in self.mappings_ and (method in self.densities_ or method == ANSWERS)

    def describe_method(self, method: str) -> tuple[str, dict]:
        """The algorithm and parameters of ``method``, for results and reports."""
        if method == ANSWERS:
            return "answers", {"classifier": "logistic regression, class-balanced", "C": self.answers_.C,
                               "n_answers": self.answers_.n_answers_}
        return self.methods[method].algorithm, self.methods[method].params

    # -- applying ------------------------------------------------------------------------

    def _check_features(self, X) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ModelError(f"features have shape {X.shape}; this model was fitted on {self.n_features_in_} "
                             f"columns of {(self.features or {}).get('extractor', 'unknown')} features")
        return X, finite_rows(X)

    def transform(self, X) -> np.ndarray:
        """Every row reduced; rows with a non-finite feature are NaN."""
        X, rows = self._check_features(X)
        return reduce_rows(self.reducer_, X, rows)

    def predict_clusters(self, X, method: str | None = None) -> np.ndarray:
        """The cluster of every row under ``method`` (the first one by default); -1 where features are unusable."""
        return self.assign(self.transform(X), self._method(method))

    def assign(self, reduced: np.ndarray, method: str | None = None) -> np.ndarray:
        """The cluster of every already-reduced row (`transform`'s output); -1 where a row is NaN."""
        method = self._method(method)
        rows = np.isfinite(reduced).all(axis=1)
        clusters = np.full(len(reduced), -1, dtype=int)
        if rows.any():
            clusters[rows] = (self.answers_.decision_function(reduced[rows]) > 0 if method == ANSWERS
                              else self.clusterers_[method].predict(reduced[rows]))
        return clusters

    def predict(self, X, method: str | None = None) -> np.ndarray:
        """The label of every row ("real"/"fake"; None where features are unusable)."""
        method = self._named(method)
        return self.names_of(self.predict_clusters(X, method), method)

    def names_of(self, clusters: np.ndarray, method: str | None = None) -> np.ndarray:
        """The label ("real"/"fake") of each cluster id under ``method``'s names; None for -1 (no cluster)."""
        method = self._named(method)
        named = self.mappings_[method]
        clusters = np.asarray(clusters)
        out = np.full(len(clusters), None, dtype=object)
        rows = clusters >= 0
        out[rows] = apply_mapping(clusters[rows], named["mapping"], named["default"])
        return out

    def synthetic_score(self, X, method: str | None = None) -> np.ndarray:
        """How synthetic each row looks, in [0, 1] (see `facecluster.synthetic`); NaN where features are unusable."""
        return self.score_reduced(self.transform(X), method)

    def score_reduced(self, reduced: np.ndarray, method: str | None = None) -> np.ndarray:
        """`synthetic_score` of already-reduced rows; NaN where a row is NaN."""
        method = self._named(method)
        if method == ANSWERS:
            return self.answers_.predict_proba(reduced)[:, 1]
        if method not in self.densities_:
            raise ModelError(f"method {method!r} has no clustered train rows to score against")
        return probability(self._log_odds(reduced, method), self.mappings_[method]["calibration"])

    def fake_clusters(self, method: str) -> list[int]:
        """The ids of ``method``'s clusters named "fake"."""
        ids = np.array([0, 1]) if method == ANSWERS else self.densities_[method].clusters_
        return ids[self.names_of(ids, method) == "fake"].tolist()

    def _log_odds(self, reduced: np.ndarray, method: str) -> np.ndarray:
        return self.densities_[method].log_odds(reduced, self.fake_clusters(method))

    def _named(self, method: str | None) -> str:
        method = self._method(method)
        if method not in self.mappings_:
            raise ModelError(f"method {method!r} has no cluster names yet: fit with labels, or name its clusters "
                             "(facecluster name MODEL_DIR 0=fake 1=real …)")
        return method

    def _method(self, method: str | None) -> str:
        if method is None:
            if not self.clusterers_:
                raise ModelError("this model has no fitted method")
            default = getattr(self, "default_method_", None)
            return default if default in self.method_names() else next(iter(self.clusterers_))
        if method not in self.method_names():
            raise ModelError(f"no method {method!r} in this model; it has {sorted(self.method_names())}")
        return method

    # -- saving ----------------------------------------------------------------------------

    def save(self, folder: Path, card: dict | None = None) -> Path:
        """Write the model into ``folder`` (replaced whole, atomically); ``card`` describes it for people."""
        estimators = {"reducer": self.reducer_, **{f"clusterer.{k}": v for k, v in self.clusterers_.items()},
                      **{f"density.{k}": v for k, v in self.densities_.items()},
                      **({ANSWERS: self.answers_} if getattr(self, "answers_", None) is not None else {})}
        encoded, arrays = encode_estimators(estimators)
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": {
                "reduce": (self.reduce or ReduceConfig()).model_dump(mode="json"),
                "methods": {k: v.model_dump(mode="json") for k, v in (self.methods or {}).items()},
                "seed": self.seed,
                "blocks": [list(b) for b in self.blocks] if self.blocks else None,
                "features": self.features,
                "features_config": self.features_config,
                "faces": self.faces,
                "naming": self.naming,
            },
            "n_features_in": self.n_features_in_,
            "fit_errors": self.fit_errors_,
            "default_method": self.default_method_,
            "mappings": {k: {"mapping": {str(c): v for c, v in sorted(m["mapping"].items())},
                             "source": m["source"], "default": m["default"],
                             "calibration": list(m["calibration"]) if m.get("calibration") else None}
                         for k, m in self.mappings_.items()},
            "estimators": encoded,
        }
        documents = {MODEL_DOCUMENT: document}
        if card is not None:
            documents["card.json"] = card
        write_bundle(folder, documents, arrays, format_name=FORMAT, format_version=FORMAT_VERSION)
        return Path(folder)

    @classmethod
    def load(cls, folder: Path) -> "FaceModel":
        """A model written by `save`; refuses a damaged, tampered or unknown-version one in one line."""
        _, documents, arrays = read_bundle(folder, format_name=FORMAT, format_versions=(FORMAT_VERSION,))
        where = str(folder)
        document = documents.get(MODEL_DOCUMENT)
        if not isinstance(document, dict):
            raise ModelError(f"{where}: no {MODEL_DOCUMENT}; the model is incomplete")
        try:
            params = document["params"]
            model = cls(reduce=ReduceConfig.model_validate(params["reduce"]),
                        methods={k: MethodConfig.model_validate(v) for k, v in params["methods"].items()},
                        seed=int(params["seed"]),
                        blocks=[tuple(b) for b in params["blocks"]] if params["blocks"] else None,
                        features=params["features"], features_config=params.get("features_config"),
                        faces=params["faces"], naming=params["naming"])
            estimators = decode_estimators(document["estimators"], arrays, where)
            model.reducer_ = estimators.pop("reducer")
            model.answers_ = estimators.pop(ANSWERS, None)
            model.clusterers_ = {k.split(".", 1)[1]: v for k, v in estimators.items() if k.startswith("clusterer.")}
            model.densities_ = {k.split(".", 1)[1]: v for k, v in estimators.items() if k.startswith("density.")}
            model.n_features_in_ = int(document["n_features_in"])
            model.fit_errors_ = dict(document.get("fit_errors", {}))
            model.default_method_ = document.get("default_method")
            model.mappings_ = {k: {"mapping": {int(c): v for c, v in m["mapping"].items()}, "source": m["source"],
                                   "default": m["default"],
                                   "calibration": tuple(m["calibration"]) if m.get("calibration") else None}
                               for k, m in document["mappings"].items()}
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise ModelError(f"{where}/{MODEL_DOCUMENT}: malformed ({type(error).__name__}: {error}); "
                             "the model is damaged") from None
        return model

    @staticmethod
    def card(folder: Path) -> dict | None:
        """The model card saved beside the model, if any (read without loading the model)."""
        _, documents, _ = read_bundle(folder, format_name=FORMAT, format_versions=(FORMAT_VERSION,))
        return documents.get("card.json")


def auto_n_clusters(model) -> dict | None:
    """What a clusterer with ``n_clusters = "auto"`` chose: k, the criterion and its score per k."""
    if not hasattr(model, "criterion_scores_"):
        return None
    return {"n_clusters": int(model.n_clusters_), "criterion": model.criterion_,
            "scores": {str(k): v for k, v in model.criterion_scores_.items()}}


class Restart(NamedTuple):
    """One seed's fit in `fit_and_evaluate`: the model, its output, and its train criteria."""

    model: FaceModel
    reduced: np.ndarray
    clusters: dict[str, np.ndarray]
    criteria: dict[str, float | None]  # per method
    criterion: float | None  # the best method's


def best_restart(criteria: list[float | None]) -> int:
    """The restart to keep: the best train criterion; ties, and fits without one (no labels), the first."""
    scores = [-1.0 if c is None else c for c in criteria]
    return scores.index(max(scores))


def fit_and_evaluate(features: np.ndarray, status, labels: np.ndarray, splits: np.ndarray, *,
                     reduce: ReduceConfig, methods: dict[str, MethodConfig], seed: int = 0, blocks=None,
                     naming: str = "majority",
                     n_resamples: int = 1000, record_errors: bool = False,
                     model_params: dict | None = None, restarts: int = 1,
                     fitted_reducer: tuple | None = None) -> tuple[FaceModel, dict[str, Any]]:
    """Fit a `FaceModel` on the train split, name its clusters with train labels, and score every split.

    With ``restarts`` > 1 the model is fitted with the seeds ``seed, seed + 1, …`` and the one kept
    is the one whose best method has the best train-only criterion (the cross-validated mapping's
    balanced accuracy on train labels; ties and label-free fits: the first seed). Validation
    labels are never read to choose. ``evaluation["restarts"]`` records each seed's criterion. When
    no method depends on its seed (`cluster.depends_on_seed`: Mean-Shift, BIRCH, HDBSCAN,
    agglomerative) there is one fit.

    The one evaluation behind `run`, `sweep` and the audit. Rows with an unusable status or a
    non-finite feature take no part and get no cluster (``usable`` says which).

    Returns
    -------
    model : FaceModel
    evaluation : dict
        ``usable`` and ``train`` (bool arrays), ``reduced`` (NaN where unusable), ``clusters``
        (method → cluster id per row, -1 where none) and ``methods`` (method → its results:
        algorithm, params, n_clusters, bandwidth, mapping, mapping_source, clusters per split,
        scores per split, train_criteria, auto_n_clusters, seconds; or algorithm, params, error).
    """
    labels = np.asarray(labels, dtype=object)
    usable = usable_rows(status, features)
    train = usable & (splits == "train")
    labelled = labelled_rows(labels)

    if not any(depends_on_seed(m.algorithm, m.params) for m in methods.values()):
        restarts = 1  # every seed would give the same clusters
    # A reduction every seed would give alike (e.g. typicality: seconds of SVDs) is fitted once for all restarts,
    # or given (``fitted_reducer``: `protocol.fit_reducer`'s output on these rows, e.g. by the sweep).
    shared = fitted_reducer
    if shared is None and restarts > 1 and not reducer_depends_on_seed(reduce):
        shared = fit_reducer(features, usable, train, reduce, seed=seed, blocks=blocks)

    def fit_once(fit_seed: int):
        model = FaceModel(reduce=reduce, methods=methods, seed=fit_seed, blocks=blocks, naming=naming,
                          **(model_params or {}))
        reduced, clusters = model.fit_rows(features, usable, train, record_errors=record_errors, fitted_reducer=shared)
        model.name_clusters(clusters, labels, train & labelled, reduced)
        criteria = {name: cross_validated_mapping_score(clusters[name][train & labelled], labels[train & labelled],
                                                        seed=fit_seed, naming=naming) for name in model.clusterers_}
        known = [c for c in criteria.values() if c is not None]
        return Restart(model, reduced, clusters, criteria, max(known) if known else None)

    seeds = [seed + r for r in range(max(1, restarts))]
    tried = [fit_once(s) for s in seeds]
    criteria = [t.criterion for t in tried]
    best = best_restart(criteria)
    model, reduced, clusters, cv_criteria, _ = tried[best]
    restart_record = {"seeds": seeds, "criterion": criteria, "chosen_seed": seeds[best]}
    seed = seeds[best]
    del tried
    results: dict[str, Any] = {}
    synthetic: dict[str, np.ndarray] = {}
    for name, method in methods.items():
        if name in model.fit_errors_:
            results[name] = {"algorithm": method.algorithm, "params": method.params, "error": model.fit_errors_[name]}
            continue
        started = time.perf_counter()
        fitted, assigned = model.clusterers_[name], clusters[name]
        if name in model.mappings_ and name in model.densities_:
            synthetic[name] = model.score_reduced(reduced, name)
        results[name] = {
            **method_evaluation(model, name, assigned, labels, splits, usable, reduced, synthetic.get(name),
                                n_resamples=n_resamples, seed=seed),
            "n_clusters": n_clusters_of(fitted, assigned[train]),
            "bandwidth": getattr(fitted, "bandwidth_", None),
            "train_criteria": {
                "silhouette": silhouette(reduced[train], assigned[train], seed=seed),
                "cv_mapping_balanced_accuracy": cv_criteria.get(name),
            },
            "seconds": round(model.fit_seconds_[name] + time.perf_counter() - started, 4),
        }
        chosen = auto_n_clusters(fitted)
        if chosen is not None:
            results[name]["auto_n_clusters"] = chosen
    model.default_method_ = _default_method(model, results)
    return model, {"usable": usable, "train": train, "reduced": reduced, "clusters": clusters,
                   "synthetic": synthetic, "methods": results, "restarts": restart_record}


def method_evaluation(model: FaceModel, name: str, assigned: np.ndarray, labels: np.ndarray, splits: np.ndarray,
                      usable: np.ndarray, reduced: np.ndarray, synthetic: np.ndarray | None = None, *,
                      n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """One method's clusters on a dataset under the model's names: mapping, members per split, scores.

    What `fit_and_evaluate` (on the fitting data) and scoring (on new data) both report. The
    scores are on the usable, labelled rows of each split, and ``{}`` while nothing names the
    clusters.
    """
    (algorithm, params), named = model.describe_method(name), model.mappings_.get(name)
    labels = np.asarray(labels, dtype=object)
    present = [s for s in SPLIT_ORDER if (splits == s).any()]
    return {
        "algorithm": algorithm,
        "params": params,
        "mapping": {str(k): v for k, v in sorted(named["mapping"].items())} if named else None,
        "mapping_source": named["source"] if named else None,
        "calibration": list(named["calibration"]) if named and named["calibration"] else None,
        "clusters": {split: cluster_summary(assigned[usable & (splits == split)], labels[usable & (splits == split)])
                     for split in present},
        "scores": (score_splits(labels, splits, usable & labelled_rows(labels), assigned, named["mapping"],
                                named["default"], reduced, n_resamples=n_resamples, seed=seed, synthetic=synthetic)
                   if named else {}),
    }


def _default_method(model: FaceModel, results: dict[str, Any]) -> str | None:
    """The named method with the best train-only criterion (cross-validated mapping), else the first fitted."""
    criterion = {name: results[name]["train_criteria"]["cv_mapping_balanced_accuracy"] for name in model.mappings_}
    scored = {name: value for name, value in criterion.items() if value is not None}
    if scored:
        return max(scored, key=lambda name: scored[name])  # ties: the first configured
    return next(iter(model.mappings_), next(iter(model.clusterers_), None))
