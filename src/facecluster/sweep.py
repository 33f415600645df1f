"""A grid over feature families × face crops × reducers × clusterers, from cached features.

Each (feature family, crop) is extracted once through the engine and the feature store;
every reducer and clusterer of the grid then runs in memory on those features, through the
same protocol as `facecluster run` (fit on train without labels, map clusters with train
labels, score the other splits).

The configuration written to ``best.toml`` is chosen with a TRAIN-ONLY criterion, never with
a validation score (see `SELECTION_CRITERIA`); validation scores are reported beside it.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facecluster.cluster import depends_on_seed
from facecluster.config import (
    Config,
    FacesConfig,
    MethodConfig,
    ReduceConfig,
    TypicalityConfig,
    dump_config,
    read_toml,
)
from facecluster.dataset import Dataset
from facecluster.errors import ConfigError
from facecluster.model import fit_and_evaluate
from facecluster.outputs import provenance, write_json, write_text
from facecluster.protocol import fit_reducer, usable_rows
from facecluster.reduce import depends_on_seed as reducer_depends_on_seed
from facecluster.resolve import build_config
from facecluster.supervised import supervised_ceiling

log = logging.getLogger(__name__)

SELECTION_CRITERIA = {
    # Balanced accuracy on train of the train-majority mapping, cross-validated over train folds
    # (clusters fitted once on all of train without labels; each fold's clusters named by the
    # other folds). It measures what we want (clusters that follow real/fake) with the labels
    # the protocol already uses for the mapping, and gives no credit to memorising.
    "cv_mapping": "train balanced accuracy of the cluster naming (evaluation.naming), 5-fold cross-validated on train",
    # Label-free, but it rewards the most compact structure (identity, pose, framing…),
    # which need not be real/fake, and is not comparable across dimensions.
    "silhouette": "mean silhouette of the train clusters in the reduced space (no labels)",
}

DEFAULT_GRID: dict[str, Any] = {
    "features": ["facenet"],
    "crops": ["box", "aligned"],
    "n_components": ["none", 2, 8, 32],
    "standardize": [False, True],
    "selection": "cv_mapping",
    "bootstrap_resamples": 1000,
    "methods": {
        "meanshift": {"algorithm": "meanshift", "params": {"quantile": [0.0855, 0.2, 0.3], "bin_seeding": [True]}},
        "birch": {"algorithm": "birch", "params": {"n_clusters": [2, 4], "threshold": [0.08, 0.5]}},
        "kmeans": {"algorithm": "kmeans", "params": {"n_clusters": [2, 4, 8, "auto"]}},
        "gmm": {"algorithm": "gmm", "params": {"n_clusters": [2, 4, "auto"], "covariance_type": ["diag"]}},
        "agglomerative": {"algorithm": "agglomerative", "params": {"n_clusters": [2, 4, "auto"]}},
        "spectral": {"algorithm": "spectral", "params": {"n_clusters": [2, 4], "affinity": ["nearest_neighbors"]}},
        "hdbscan": {"algorithm": "hdbscan", "params": {"min_cluster_size": [15, 50]}},
    },
}

GRID_KEYS = {"features", "crops", "n_components", "standardize", "typicality", "typicality_rounds", "selection",
             "bootstrap_resamples", "methods"}


@dataclass
class Grid:
    """The swept values; `from_toml` reads them from a file's ``[sweep]`` table."""

    features: list[str]
    crops: list[str]
    n_components: list[int | None]
    standardize: list[bool]
    methods: dict[str, dict[str, Any]]
    selection: str = "cv_mapping"
    bootstrap_resamples: int = 1000
    base: Config = field(default_factory=Config)
    #: Also (True) or only reduce each face to its typicality (`reduce.Typicality`, the default skip and folds).
    typicality: list[bool] = field(default_factory=lambda: [False])
    #: The typicality's rounds of sharpening by a direction (`reduce.Typicality`; 0: the distance alone).
    typicality_rounds: list[int] = field(default_factory=lambda: [0])

    @classmethod
    def from_dict(cls, sweep: dict[str, Any], base: Config, source: str = "grid") -> "Grid":
        """Validate a ``[sweep]`` table (missing keys take `DEFAULT_GRID`'s values)."""
        unknown = set(sweep) - GRID_KEYS
        if unknown:
            raise ConfigError(f"{source}: sweep.{sorted(unknown)[0]}: unknown key; allowed: {sorted(GRID_KEYS)}")
        values = {"typicality": [False], "typicality_rounds": [0], **DEFAULT_GRID, **sweep}
        for key in ("features", "crops", "n_components", "standardize", "typicality", "typicality_rounds"):
            if not isinstance(values[key], list) or not values[key]:
                raise ConfigError(f"{source}: sweep.{key} must be a non-empty list")
        if values["selection"] not in SELECTION_CRITERIA:
            raise ConfigError(f"{source}: sweep.selection = {values['selection']!r}; choose one of {sorted(SELECTION_CRITERIA)}")
        bad_crops = [c for c in values["crops"] if c not in ("box", "aligned")]
        if bad_crops:
            raise ConfigError(f"{source}: sweep.crops: {bad_crops[0]!r} is not 'box' or 'aligned'")
        dims = []
        for value in values["n_components"]:
            try:
                dims.append(ReduceConfig(n_components=value).n_components)
            except ValueError:
                raise ConfigError(f"{source}: sweep.n_components: {value!r} is not a positive integer or \"none\"") from None
        methods = values["methods"]
        for name, method in methods.items():
            if not isinstance(method, dict) or "algorithm" not in method:
                raise ConfigError(f"{source}: sweep.methods.{name} needs an algorithm")
            try:
                build_config(None, {"methods": {name: {"algorithm": method["algorithm"]}}})
            except ConfigError as error:
                raise ConfigError(f"{source}: sweep.methods.{name}: {error}") from None
        if not all(isinstance(v, bool) for v in values["typicality"]):
            raise ConfigError(f"{source}: sweep.typicality must be a list of true/false")
        for value in values["typicality_rounds"]:
            try:  # the bounds are TypicalityConfig's
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(value)
                TypicalityConfig(rounds=value)
            except ValueError:
                raise ConfigError(f"{source}: sweep.typicality_rounds must be a list of whole numbers from 0 to 100") from None
        return cls(values["features"], values["crops"], dims, [bool(v) for v in values["standardize"]], methods,
                   values["selection"], int(values["bootstrap_resamples"]), base, values["typicality"],
                   values["typicality_rounds"])

    @classmethod
    def from_toml(cls, path: Path | None, preset: str | None = "study") -> "Grid":
        """A grid file: ``[sweep]`` holds the grid; every other table overrides the base settings."""
        data = read_toml(path, "grid")
        sweep = data.pop("sweep", {})
        base = build_config(preset, data, source=str(path) if path else "grid")
        return cls.from_dict(sweep, base, str(path) if path else "grid")

    def method_variants(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every (method name, algorithm, params) of the grid: the product of each method's value lists."""
        out = []
        for name, method in self.methods.items():
            params = method.get("params", {})
            keys = list(params)
            lists = [v if isinstance(v, list) and not _is_k_range(k, v) else [v] for k, v in params.items()]
            for combo in itertools.product(*lists):
                variant = dict(zip(keys, combo))
                if variant.get("n_clusters") != "auto":  # k_range and criterion only mean something with "auto"
                    variant.pop("k_range", None)
                    variant.pop("criterion", None)
                if (name, method["algorithm"], variant) not in out:
                    out.append((name, method["algorithm"], variant))
        return out

    def reducers(self) -> list[ReduceConfig]:
        """Every reducer of the grid (standardisation × components × typicality and its rounds);
        typicality only where components remain after its skip."""
        skip = TypicalityConfig().skip
        typicalities = [TypicalityConfig(rounds=r) for r in self.typicality_rounds] if True in self.typicality else []
        return [ReduceConfig(standardize=s, n_components=d, typicality=t)
                for t in ([None] if False in self.typicality else []) + typicalities
                for s in self.standardize for d in self.n_components if t is None or d is None or d > skip]


def _is_k_range(key: str, value: Any) -> bool:
    return key == "k_range" and len(value) == 2 and all(isinstance(v, int) for v in value)


def faces_with_crop(faces: FacesConfig, crop: str) -> FacesConfig | None:
    """The face settings with ``crop`` set, or None when this build cannot make such crops.

    Hook: ``faces.crop`` ("box" | "aligned") comes with the 5-point alignment of the
    features branch; without it, only "box" (the detector's box with margin) exists.
    """
    if "crop" in FacesConfig.model_fields:
        return FacesConfig.model_validate({**faces.model_dump(), "crop": crop})
    return faces if crop == "box" else None


def config_of(row: dict, base: Config) -> Config:
    """The full run configuration of one leaderboard row (what ``best.toml`` holds)."""
    data = base.model_dump(mode="json", exclude_none=True)
    data["features"]["extractor"] = row["features"]
    if "crop" in FacesConfig.model_fields:
        data["faces"]["crop"] = row["crop"]
    data["reduce"] = {"standardize": row["standardize"], "n_components": row["n_components"] or "none"}
    if row.get("typicality"):
        data["reduce"]["typicality"] = {"rounds": row.get("typicality_rounds", 0)}
    data["methods"] = {row["method"]: {"algorithm": row["algorithm"], "params": row["params"]}}
    return build_config(None, data, source="sweep")


def _label(row: dict) -> str:
    params = ",".join(f"{k}={v}" for k, v in row["params"].items())
    dims = "all" if row["n_components"] is None else row["n_components"]
    reducer = "pca"
    if row.get("typicality"):
        reducer = f"typicality-r{row['typicality_rounds']}-" if row.get("typicality_rounds") else "typicality"
    return f"{row['features']}|{row['crop']}|{'std+' if row['standardize'] else ''}{reducer}{dims}|{row['method']}({params})"


def _criterion(row: dict, selection: str) -> float:
    value = row["train"].get("cv_mapping_balanced_accuracy" if selection == "cv_mapping" else "silhouette")
    return -math.inf if value is None else value


def rank(rows: list[dict], selection: str) -> list[dict]:
    """Rows ordered by the train-only criterion; ties go to fewer clusters, then higher silhouette."""
    usable = [r for r in rows if "error" not in r]

    def key(r):
        sil = r["train"].get("silhouette")
        return (-round(_criterion(r, selection), 6), r["n_clusters"], -(sil if sil is not None else -1))

    return sorted(usable, key=key)


def _spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None and np.isfinite(x) and np.isfinite(y)]
    if len(pairs) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant column: undefined, reported as None
        value = spearmanr(*zip(*pairs)).statistic
    return None if not np.isfinite(value) else float(value)


def restart_groups(variants: list[tuple[str, str, dict]], restarts: int) -> list[tuple[list[int], int]]:
    """Which variants are fitted together, and with how many restarts.

    With ``restarts`` > 1 each variant whose clusters depend on the seed is fitted on its own, so
    that it keeps its own best seed (as `facecluster run` with that one method would); the others
    share one fit. With one restart, one fit for all.
    """
    if restarts <= 1:
        return [(list(range(len(variants))), 1)]
    seeded = [i for i, (_, algorithm, params) in enumerate(variants) if depends_on_seed(algorithm, params)]
    fixed = [i for i in range(len(variants)) if i not in seeded]
    return ([(fixed, 1)] if fixed else []) + [([i], restarts) for i in seeded]


def _rows_of(results: list[dict], variants: list[tuple[str, str, dict]], reduce_cfg: ReduceConfig,
             features_name: str, crop: str) -> list[dict]:
    """One leaderboard row per method variant, from its result in `model.fit_and_evaluate` (in
    ``variants``' order) and the seed its clusters come from (``seed``)."""
    rows = []
    for result, (name, algorithm, params) in zip(results, variants):
        row: dict[str, Any] = {"features": features_name, "crop": crop, "standardize": reduce_cfg.standardize,
                               "n_components": reduce_cfg.n_components,
                               "typicality": reduce_cfg.typicality is not None,
                               "typicality_rounds": reduce_cfg.typicality.rounds if reduce_cfg.typicality else 0,
                               "method": name,
                               "algorithm": algorithm, "params": params}
        if "error" in result:
            rows.append({**row, "error": result["error"]})
            continue
        scores = result["scores"]
        row["n_clusters"] = result["n_clusters"]
        if "auto_n_clusters" in result:
            row["auto_n_clusters"] = result["auto_n_clusters"]
        row["train"] = {**result["train_criteria"], "balanced_accuracy": scores["train"]["balanced_accuracy"]}
        for split, scored in scores.items():
            if split != "train":
                row[split] = {k: scored[k] for k in ("balanced_accuracy", "accuracy", "ari", "nmi", "purity", "ci")
                              if k in scored}
        row["seconds"] = result["seconds"]
        row["seed"] = result["seed"]
        rows.append(row)
    return rows


def sweep(dataset: Dataset, grid: Grid, engine, store, progress: bool = True) -> dict:
    """Run the whole grid; return the sweep's results (see docs/results.md, ``sweep.json``).

    The many small fits run with one BLAS/OpenMP thread each: on a shared machine,
    per-fit thread pools oversubscribe the cores (KMeans ran 30× slower under load).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _sweep(dataset, grid, engine, store, progress)


def _sweep(dataset: Dataset, grid: Grid, engine, store, progress: bool) -> dict:
    from facecluster.features import make_extractor

    labels = np.array([s.label for s in dataset.samples], dtype=object)
    splits = np.array([s.split for s in dataset.samples], dtype=object)
    rows: list[dict] = []
    families: list[dict] = []
    seen: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}  # family → crop → (features, usable)
    started = time.perf_counter()
    for features_name, crop in itertools.product(grid.features, grid.crops):
        family = {"features": features_name, "crop": crop}
        families.append(family)
        faces = faces_with_crop(grid.base.faces, crop)
        if faces is None:
            family["skipped"] = "this build has no aligned crops (faces.crop); only 'box' is available"
            log.warning("%s|%s: %s", features_name, crop, family["skipped"])
            continue
        t0 = time.perf_counter()
        try:
            extractor = make_extractor(grid.base.features.model_copy(update={"extractor": features_name}))
            extraction = engine.extract(dataset.samples, faces, extractor, store, progress=progress)
        except (ImportError, FileNotFoundError, ValueError, RuntimeError, OSError) as error:
            family["skipped"] = f"{type(error).__name__}: {error}"
            log.warning("%s|%s: extraction failed: %s", features_name, crop, error)
            continue
        usable = usable_rows(extraction.status, extraction.features)
        same_as = next((other for other, (features, rows) in seen.get(features_name, {}).items()
                        if np.array_equal(rows, usable) and np.allclose(features[rows], extraction.features[usable])), None)
        seen.setdefault(features_name, {})[crop] = (extraction.features, usable)
        if same_as is not None:
            # E.g. landmark positions in the whole image: the crop does not enter them, so they keep
            # whatever framing separates the labels, aligned or not. Not counted as "aligned".
            family["skipped"] = f"the features do not depend on the crop: identical to the {same_as} crop's"
            family["same_as"] = same_as
            continue
        family.update({"dim": int(extraction.features.shape[1]), "usable": int(usable.sum()),
                       "computed": extraction.computed, "extract_seconds": round(time.perf_counter() - t0, 2),
                       "supervised": supervised_ceiling(extraction.features, labels, splits, usable, seed=grid.base.seed)})
        ceiling = {model: {split: s["balanced_accuracy"] for split, s in by_split.items()}
                   for model, by_split in family["supervised"].items()}
        for reduce_cfg in grid.reducers():
            if reduce_cfg.n_components is not None and reduce_cfg.n_components >= extraction.features.shape[1]:
                continue  # same as "none"
            variants = grid.method_variants()
            results: list[dict | None] = [None] * len(variants)  # each filled by its group below
            # A reduction that does not depend on the seed (typicality) is fitted once for every group.
            shared = None if reducer_depends_on_seed(reduce_cfg) else fit_reducer(
                extraction.features, usable, usable & (splits == "train"), reduce_cfg, seed=grid.base.seed,
                blocks=getattr(extractor, "blocks", None))
            for group, restarts in restart_groups(variants, grid.base.evaluation.restarts):
                methods = {str(i): MethodConfig(algorithm=variants[i][1], params=variants[i][2]) for i in group}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _, evaluation = fit_and_evaluate(extraction.features, extraction.status, labels, splits,
                                                     reduce=reduce_cfg, methods=methods, seed=grid.base.seed,
                                                     naming=grid.base.evaluation.naming,
                                                     blocks=getattr(extractor, "blocks", None),
                                                     n_resamples=grid.bootstrap_resamples, record_errors=True,
                                                     restarts=restarts, fitted_reducer=shared)
                for i in group:
                    results[i] = {**evaluation["methods"][str(i)], "seed": evaluation["restarts"]["chosen_seed"]}
            for row in _rows_of(results, variants, reduce_cfg, features_name, crop):
                row["id"] = _label(row)
                row["supervised"] = ceiling
                rows.append(row)
        family["seconds"] = round(time.perf_counter() - t0, 2)
    return summarise(rows, families, grid, dataset, time.perf_counter() - started)


def summarise(rows: list[dict], families: list[dict], grid: Grid, dataset: Dataset, seconds: float) -> dict:
    """The leaderboard (ranked by the train-only criterion), the choice, and per-family bests."""
    ranked = rank(rows, grid.selection)
    failed = [r for r in rows if "error" in r]
    best_by: dict[str, dict] = {}
    for row in ranked:  # first in rank order = train-chosen within the group
        best_by.setdefault(f"{row['features']}|{row['crop']}", row)
        best_by.setdefault(f"crop:{row['crop']}", row)
    criterion = [_criterion(r, grid.selection) for r in ranked]
    valid = [r.get("valid", {}).get("balanced_accuracy") for r in ranked]
    return {
        "dataset": {"root": str(dataset.root), "fingerprint": dataset.fingerprint(), "counts": dataset.counts()},
        "grid": {"features": grid.features, "crops": grid.crops,
                 "n_components": ["none" if d is None else d for d in grid.n_components],
                 "standardize": grid.standardize, "typicality": grid.typicality, "methods": grid.methods,
                 "bootstrap_resamples": grid.bootstrap_resamples},
        "selection": {
            "criterion": grid.selection,
            "description": SELECTION_CRITERIA[grid.selection],
            "uses": "train split only (features without labels to fit; train labels to map and to choose)",
            # How far the train criterion predicts the validation score across the grid (reported, never used).
            "spearman_train_criterion_vs_valid": _spearman([c if np.isfinite(c) else None for c in criterion], valid),
        },
        "best": ranked[0] if ranked else None,
        "best_by_crop": {k.split(":", 1)[1]: v["id"] for k, v in best_by.items() if k.startswith("crop:")},
        "best_by_family": {k: v["id"] for k, v in best_by.items() if not k.startswith("crop:")},
        "families": families,
        "leaderboard": ranked,
        "failed": failed,
        "n_configurations": len(rows),
        "seconds": round(seconds, 2),
    }


def best_toml(row: dict, base: Config, selection: str) -> str:
    """``best.toml``: the chosen row as a complete run configuration, with how it was chosen."""
    header = [
        f"# Chosen by `facecluster sweep` with the train-only criterion {selection!r}:",
        f"#   {SELECTION_CRITERIA[selection]}",
        f"#   = {_criterion(row, selection):.4f} on train; validation balanced accuracy (reported, not used to choose)"
        f" = {row.get('valid', {}).get('balanced_accuracy')}",
        f"# configuration {row['id']}",
        "# Apply it unchanged to other data: facecluster run OTHER_DATA --config best.toml",
        "# (its [methods] table replaces the preset's methods).",
        "",
    ]
    return "\n".join(header) + dump_config(config_of(row, base))


def write_outputs(result: dict, grid: Grid, out: Path) -> dict[str, Path]:
    """Write sweep.json, best.toml (+ best-<crop>.toml) and the score-against-parameter plots."""
    from facecluster.report.sweep_figures import parameter_plots

    out.mkdir(parents=True, exist_ok=True)
    files = {"sweep": out / "sweep.json"}
    if result["best"] is not None:
        files["best"] = out / "best.toml"
        write_text(files["best"], best_toml(result["best"], grid.base, grid.selection))
        by_id = {row["id"]: row for row in result["leaderboard"]}
        for crop, row_id in result["best_by_crop"].items():
            files[f"best-{crop}"] = out / f"best-{crop}.toml"
            write_text(files[f"best-{crop}"], best_toml(by_id[row_id], grid.base, grid.selection))
    result["plots"] = {name: path.name for name, path in
                       parameter_plots(result["leaderboard"], out / "plots", grid.selection).items()}
    result["provenance"] = provenance(grid.base)
    write_json(files["sweep"], result)
    return files
