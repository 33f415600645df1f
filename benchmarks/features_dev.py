"""Every feature family through the real pipeline, on box and on aligned crops.

For each family × crop × PCA dimension the script runs `facecluster.pipeline.run` (features
standardised, PCA fitted on train, clusterers fitted on train without labels, clusters mapped
to labels by train majority) and records the validation balanced accuracy of each method,
the time spent computing the features (from an empty feature cache), and beside it a
supervised ceiling: a logistic regression on the same standardised features, fitted on train.

Usage::

    PYTHONPATH=src python benchmarks/features_dev.py ../shared/datasets/faces-dev \\
        --out benchmarks/results/features_dev.json

Writes JSON and prints a table. Timings on a shared machine are noisy; the accuracies are not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from _common import labelled_features
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from facecluster.engines.local import LocalEngine
from facecluster.features.combine import FamilyStandardizer
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.store import FeatureStore

FAMILIES = ["facenet", "facenet-bottleneck", "spectrum", "dct", "noise", "geometry", "dlib", "spectrum+dct+noise"]
METHODS = {
    "kmeans-2": {"algorithm": "kmeans", "params": {"n_clusters": 2}},
    "gmm-2": {"algorithm": "gmm", "params": {"n_clusters": 2}},
    "birch-4": {"algorithm": "birch", "params": {"n_clusters": 4, "threshold": 0.08}},
    "kmeans-4": {"algorithm": "kmeans", "params": {"n_clusters": 4}},
}


def ceiling(data: Path, config, store: FeatureStore) -> float:
    """Validation balanced accuracy of a logistic regression on the standardised features (train-fitted)."""
    extraction, extractor, labels, splits, usable = labelled_features(data, config, store=store)
    train, valid = usable & (splits == "train"), usable & (splits != "train")
    scaler = FamilyStandardizer(extractor.blocks) if hasattr(extractor, "blocks") else StandardScaler()
    model = make_pipeline(scaler, LogisticRegression(max_iter=5000, class_weight="balanced", C=0.1))
    model.fit(extraction.features[train], labels[train])
    return float(balanced_accuracy_score(labels[valid], model.predict(extraction.features[valid])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, nargs="?", default=Path("../shared/datasets/faces-dev"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/features_dev.json"))
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default: a new temporary one)")
    parser.add_argument("--families", nargs="*", default=FAMILIES)
    parser.add_argument("--dims", nargs="*", type=int, default=[2, 10])
    parser.add_argument("--crops", nargs="*", default=["box", "aligned", "aligned:-0.5"],
                        help="crop[:margin[:size]]; margin and size default to the preset's 0.2 and 160")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if importlib.util.find_spec("dlib") is None and "dlib" in args.families:
        args.families.remove("dlib")
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="facecluster-bench-"))
    store = FeatureStore(cache)
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for variant in args.crops:
            crop, margin, size = (variant.split(":") + ["", ""])[:3]
            for family in args.families:
                for dims in args.dims:
                    config = build_config("study", {
                        "features": {"extractor": family}, "faces": {"crop": crop, "margin": float(margin or 0.2),
                                                                  "size": int(size or 160)},
                        "reduce": {"standardize": True, "n_components": dims}, "methods": METHODS})
                    started = time.perf_counter()
                    results = run(args.data, config, Path(runs) / f"{variant}-{family}-{dims}", store=store,
                                  engine=LocalEngine(), progress=False)
                    timings = results["timings"]
                    valid = [s for s in results["dataset"]["counts"] if s != "train"][0]
                    row = {"crop": variant, "family": family, "pca": dims, "dim": results["features"]["dim"],
                           "valid": {name: m["scores"][valid]["balanced_accuracy"]
                                     for name, m in results["methods"].items()},
                           "train": {name: m["scores"]["train"]["balanced_accuracy"]
                                     for name, m in results["methods"].items()},
                           "n_clusters": {name: m["n_clusters"] for name, m in results["methods"].items()},
                           "features_computed": timings["computed"]["features"],
                           "embed_seconds": timings.get("embed_seconds"),
                           "detect_seconds": timings.get("detect_seconds"),
                           "run_seconds": round(time.perf_counter() - started, 2)}
                    if dims == args.dims[0]:
                        row["supervised_logreg_valid"] = ceiling(args.data, config, store)
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "methods": METHODS, "rows": rows}, indent=2))
    print(f"{'crop':12} {'family':20} {'pca':>3} {'dim':>5} " + " ".join(f"{m:>9}" for m in METHODS)
          + f" {'logreg':>7} {'feat s':>7} {'ms/img':>7}")
    for row in rows:
        per_image = (1000 * row["embed_seconds"] / row["features_computed"]) if row["features_computed"] else None
        print(f"{row['crop']:12} {row['family']:20} {row['pca']:>3} {row['dim']:>5} "
              + " ".join(f"{row['valid'][m]:9.3f}" for m in METHODS)
              + f" {row.get('supervised_logreg_valid', float('nan')):7.3f}"
              + (f" {row['embed_seconds']:7.1f} {per_image:7.1f}" if per_image else f" {'cached':>7} {'':>7}"))


if __name__ == "__main__":
    main()
