"""The label-efficiency curve: validation balanced accuracy against how many train labels a person gives.

For each feature set, candidate clusterings (k-means, GMM and the label-free refinement
``refine``, 2 to 8 clusters, PCA 8 or 32) are fitted on train **without labels**. Then:

- **k = 0, all train labels**: the usual unsupervised protocol. The candidate is chosen by
  the train-only criterion ``cv_mapping_balanced_accuracy`` and its clusters are named from
  every train label.
- **k tool-chosen labels** (`facecluster.labelling.choose_rows_to_label`): the medoids of
  the primary clustering (refine, 2 clusters, PCA 32), then the train points where the
  candidates disagree or the refinement is least certain. The candidate is chosen by the
  leave-one-out naming score on those k labels only; its clusters are named from them.
- **k random labels**: the same, with k train images drawn at random (several seeds).
- **supervised ceiling**: a logistic regression on the features with every train label.

Validation labels are only read to score. Features come from the shared feature store
(computed on the first run). Usage::

    PYTHONPATH=src python benchmarks/labels.py                 # both datasets, about 10 minutes on 2 cores
    PYTHONPATH=src python benchmarks/labels.py --sets ffhq --seeds 5

Writes ``benchmarks/results/labels-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, print_table, write_results  # noqa: E402

from facecluster.config import MethodConfig, ReduceConfig  # noqa: E402
from facecluster.dataset import discover  # noqa: E402
from facecluster.engines.local import LocalEngine  # noqa: E402
from facecluster.evaluate import apply_mapping  # noqa: E402
from facecluster.features import make_extractor  # noqa: E402
from facecluster.labelling import (  # noqa: E402
    choose_clustering,
    STRATEGIES,
    choose_rows_to_label,
    name_from_labels,
    partial_labels,
    random_rows,
    spread_to_nearest,
)
from facecluster.model import fit_and_evaluate  # noqa: E402
from facecluster.protocol import usable_rows  # noqa: E402
from facecluster.resolve import build_config  # noqa: E402
from facecluster.store import FeatureStore, default_store_dir  # noqa: E402
from facecluster.supervised import supervised_ceiling  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"
#: name → (dataset folder, feature family extracted, crop, family scored: a member of the extracted one or itself)
SETS = {
    "ffhq": ("faces-ffhq", "facenet-bottleneck", "box", "facenet-bottleneck"),
    "dev-aligned": ("faces-dev", "facenet-bottleneck+spectrum+dct+noise", "aligned", "facenet-bottleneck"),
    "dev-aligned-combined": ("faces-dev", "facenet-bottleneck+spectrum+dct+noise", "aligned",
                             "facenet-bottleneck+spectrum+dct+noise"),
}
DIMS = (8, 32)
# Simplest first: leave-one-out ties go to the earlier candidate.
METHODS = {
    "kmeans-2": ("kmeans", {"n_clusters": 2}),
    "gmm-2": ("gmm", {"n_clusters": 2, "covariance_type": "diag"}),
    "refine-2": ("refine", {"n_clusters": 2}),
    "refine-gmm-2": ("refine", {"n_clusters": 2, "init": "gmm"}),
    "kmeans-4": ("kmeans", {"n_clusters": 4}),
    "refine-4": ("refine", {"n_clusters": 4}),
    "kmeans-8": ("kmeans", {"n_clusters": 8}),
}
PRIMARY = ("refine-2", 32)
NAMING = "enrichment"
VARIANTS = ("doubtful", "doubtful+spread", "typical", "typical+spread")


def load_features(name: str, store: FeatureStore) -> dict:
    """Features, labels and splits of one feature set, from the shared store (computed when missing)."""
    folder, family, crop, scored = SETS[name]
    data = DATASETS / folder
    if not (data / "train").is_dir():
        sys.exit(f"{data} not found; the datasets sit in ../shared/datasets beside the clone")
    config = build_config("study", {"features": {"extractor": family}, "faces": {"crop": crop}})
    samples = discover(data, config.dataset).samples
    extractor = make_extractor(config.features)
    extraction = LocalEngine().extract(samples, config.faces, extractor, store, progress=False)
    features, blocks = extraction.features, list(getattr(extractor, "blocks", []) or [])
    if scored != family:  # one member of a combination: its columns are that family's raw vector
        (start, stop), = [(a, b) for member, a, b in blocks if member == scored]
        features, blocks = features[:, start:stop], []
    return {"features": features, "blocks": blocks or None, "status": extraction.status,
            "labels": np.array([s.label for s in samples], dtype=object),
            "splits": np.array([s.split if s.split != "validation" else "valid" for s in samples], dtype=object),
            "family": scored, "crop": crop, "dataset": folder}


def fit_candidates(data: dict, seed: int) -> dict:
    """Every method at every PCA size, fitted on train without labels; train/valid clusters per candidate."""
    methods = {name: MethodConfig(algorithm=algorithm, params=params) for name, (algorithm, params) in METHODS.items()}
    candidates = {}
    for dims in DIMS:
        reduce = ReduceConfig(standardize=data["blocks"] is None, n_components=dims)
        model, evaluation = fit_and_evaluate(data["features"], data["status"], data["labels"], data["splits"],
                                             reduce=reduce, methods=methods, seed=seed, blocks=data["blocks"],
                                             naming=NAMING, n_resamples=0)
        for name, result in evaluation["methods"].items():
            candidates[f"{name}/pca{dims}"] = {
                "clusters": evaluation["clusters"][name], "reduced": evaluation["reduced"],
                "model": model.clusterers_[name], "cv_mapping": result["train_criteria"]["cv_mapping_balanced_accuracy"],
                "valid_all_labels": result["scores"]["valid"]["balanced_accuracy"],
                "train_all_labels": result["scores"]["train"]["balanced_accuracy"]}
    return candidates


def with_labels(candidates: dict, labels: np.ndarray, train_rows: np.ndarray, valid: np.ndarray,
                chosen: np.ndarray, spread_in: np.ndarray | None) -> dict:
    """Choose a candidate and name it from the labels of ``chosen`` (positions in ``train_rows``) only; score it.

    With ``spread_in`` (the train rows' features), each answer is first spread to its nearest train rows.
    """
    partial = partial_labels(labels[train_rows], chosen)
    train_clusters = {n: c["clusters"][train_rows] for n, c in candidates.items()}
    best, loo = choose_clustering(train_clusters, partial, NAMING, spread_in)
    naming_labels = spread_to_nearest(spread_in, partial) if spread_in is not None else partial
    mapping, default = name_from_labels(train_clusters[best], naming_labels, NAMING)
    unlabelled = np.setdiff1d(np.arange(len(train_rows)), chosen)

    def balanced(rows, clusters):
        return float(balanced_accuracy_score(labels[rows].astype(str),
                                             apply_mapping(clusters, mapping, default).astype(str)))

    return {"candidate": best, "leave_one_out": loo[best],
            "valid": balanced(valid, candidates[best]["clusters"][valid]),
            "train_unlabelled": balanced(train_rows[unlabelled], train_clusters[best][unlabelled])}


def one_set(name: str, store: FeatureStore, ks: list[int], n_seeds: int, seed: int) -> dict:
    data = load_features(name, store)
    labels, splits = data["labels"], data["splits"]
    usable = usable_rows(data["status"], data["features"])
    train_rows = np.flatnonzero(usable & (splits == "train"))
    valid = np.flatnonzero(usable & (splits == "valid"))
    candidates = fit_candidates(data, seed)
    unsupervised = max(candidates, key=lambda n: (candidates[n]["cv_mapping"] or -1.0, -list(candidates).index(n)))
    primary = candidates[f"{PRIMARY[0]}/pca{PRIMARY[1]}"]
    reduced_train = primary["reduced"][train_rows]
    certainty = primary["model"].predict_proba(reduced_train).max(axis=1)
    clusterings = [primary["clusters"][train_rows]] + [c["clusters"][train_rows] for c in candidates.values()
                                                       if c is not primary]
    curve = []
    for k in ks:
        point = {"k": k}
        for strategy in STRATEGIES:
            order = choose_rows_to_label(reduced_train, clusterings, k, certainty,
                                         n_clusters=METHODS[PRIMARY[0]][1]["n_clusters"], then=strategy, seed=seed)
            point.setdefault("fake_labels", {})[strategy] = int((labels[train_rows[order]] == "fake").sum())
            for spread in (False, True):
                point[strategy + ("+spread" if spread else "")] = with_labels(
                    candidates, labels, train_rows, valid, order, reduced_train if spread else None)
        for spread in (False, True):
            point["random" + ("+spread" if spread else "")] = [
                with_labels(candidates, labels, train_rows, valid, random_rows(len(train_rows), k, s),
                            reduced_train if spread else None) for s in range(n_seeds)]
        curve.append(point)
        print(f"{name} k={k}: " + ", ".join(f"{v}: {point[v]['valid']:.3f}" for v in VARIANTS)
              + f", random: {np.mean([r['valid'] for r in point['random']]):.3f}", file=sys.stderr, flush=True)
    ceiling = supervised_ceiling(data["features"], labels, splits, usable, models=("logistic_regression",), seed=seed)
    return {"dataset": data["dataset"], "family": data["family"], "crop": data["crop"],
            "n_train": int(len(train_rows)), "n_valid": int(len(valid)),
            "all_train_labels": {"candidate": unsupervised, "cv_mapping": candidates[unsupervised]["cv_mapping"],
                                 "valid": candidates[unsupervised]["valid_all_labels"]},
            "candidates": {n: {k: v for k, v in c.items() if k in ("cv_mapping", "valid_all_labels", "train_all_labels")}
                           for n, c in candidates.items()},
            "curve": curve,
            "supervised_logistic_regression_valid": ceiling["logistic_regression"]["valid"]["balanced_accuracy"]}


def train_choice(results: dict) -> str:
    """The tool variant with the best train balanced accuracy on unlabelled train rows, averaged over every set and k.

    One choice for all sets: a person labelling a new set has no train labels to choose with.
    """
    def mean_train(variant):
        return np.mean([p[variant]["train_unlabelled"] for r in results.values() for p in r["curve"]])

    return max(VARIANTS, key=lambda v: (mean_train(v), -VARIANTS.index(v)))


def print_tables(results: dict) -> None:
    """The label-efficiency curve per set, then every candidate clustering named from all train labels."""
    chosen = train_choice(results)
    rows = []
    for name, result in results.items():
        rows.append([name, "all train", f"{result['all_train_labels']['valid']:.3f}", "", "", "", "", "",
                     result["all_train_labels"]["candidate"]])
        for point in result["curve"]:
            cells = [f"{point[v]['valid']:.3f} ({point[v]['train_unlabelled']:.3f})" for v in VARIANTS]
            for variant in ("random", "random+spread"):
                valid = [r["valid"] for r in point[variant]]
                train = np.mean([r["train_unlabelled"] for r in point[variant]])
                cells.append(f"{np.mean(valid):.3f} ({train:.3f}) [{min(valid):.3f}–{max(valid):.3f}]")
            rows.append([name, point["k"], *cells, point[chosen]["candidate"]])
        rows.append([name, "supervised (all train)", f"{result['supervised_logistic_regression_valid']:.3f}",
                     "", "", "", "", "", "logistic regression"])
    print(f"valid balanced accuracy (train balanced accuracy on the unlabelled train rows); random: mean over "
          f"seeds (mean) [range]; chosen by train over all sets: {chosen}")
    print_table(["set", "labels", *VARIANTS, "random", "random+spread", f"clustering chosen ({chosen})"], rows)
    print()
    names = list(next(iter(results.values()))["candidates"])
    print_table(["candidate", *[f"{s}: train cv / valid" for s in results]],
                [[n, *[f"{r['candidates'][n]['cv_mapping']:.3f} / {r['candidates'][n]['valid_all_labels']:.3f}"
                       for r in results.values()]] for n in names])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--ks", nargs="*", type=int, default=[8, 16, 32, 64])
    parser.add_argument("--seeds", type=int, default=10, help="random-k draws per k")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reducers and clusterers")
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature store (default: the user cache's)")
    parser.add_argument("--from-json", type=Path, default=None, help="print the tables of a saved result, run nothing")
    args = parser.parse_args()
    if args.from_json:
        print_tables(json.loads(args.from_json.read_text(encoding="utf-8"))["sets"])
        return
    logging.basicConfig(level=logging.ERROR)
    store = FeatureStore(args.cache_dir or default_store_dir())
    results = {name: one_set(name, store, args.ks, args.seeds, args.seed) for name in args.sets}
    path = write_results("labels", {"methods": METHODS, "dims": DIMS, "primary": PRIMARY, "naming": NAMING,
                                    "seeds": args.seeds, "sets": results})
    print_tables(results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
