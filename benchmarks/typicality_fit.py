"""What sharpening the typicality costs: `Typicality` fitted alone and with its direction, same rows.

Reads faces-ffhq's facenet-bottleneck features (box crops) from the feature store (computes them
when missing) and times `fit_transform` on the 1540 train rows and `transform` on the 660 valid
rows, ``--repeats`` times each, with ``rounds`` 0 (the distance alone) and 20 (the `recommended`
preset); prints the medians, the ratio, and the rounds run, and the valid ROC AUC as a check that
the two did their work.

    PYTHONPATH=src python benchmarks/typicality_fit.py [--data ../shared/datasets/faces-ffhq] [--repeats 3]

Writes ``benchmarks/results/typicality_fit-<time>.json``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _common import REPO, print_table, write_results
from sklearn.metrics import roc_auc_score

from facecluster.dataset import discover
from facecluster.engines.local import LocalEngine
from facecluster.features import make_extractor
from facecluster.reduce import Typicality
from facecluster.resolve import build_config
from facecluster.store import FeatureStore, default_store_dir

FFHQ = REPO.parent / "shared" / "datasets" / "faces-ffhq"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FFHQ)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = build_config("recommended", {})
    samples = discover(args.data, config.dataset).samples
    extraction = LocalEngine().extract(samples, config.faces, make_extractor(config.features),
                                       FeatureStore(default_store_dir()), progress=False)
    X = extraction.features.astype(np.float64)
    train = np.array([s.split == "train" for s in samples])
    fake = np.array([s.label == "fake" for s in samples])
    rows, results = [], {}
    for rounds in (0, 20):
        fits, transforms = [], []
        for _ in range(args.repeats):
            step = Typicality(rounds=rounds, shrinkage=config.reduce.typicality.shrinkage)
            start = time.perf_counter()
            step.fit_transform(X[train])
            fits.append(time.perf_counter() - start)
            start = time.perf_counter()
            valid = step.transform(X[~train])[:, 0]
            transforms.append(time.perf_counter() - start)
        results[rounds] = {"fit_seconds": fits, "transform_seconds": transforms, "rounds_run": int(step.rounds_),
                           "valid_roc_auc": float(roc_auc_score(fake[~train], valid))}
    base = statistics.median(results[0]["fit_seconds"])
    for rounds, r in results.items():
        fit = statistics.median(r["fit_seconds"])
        rows.append([rounds, r["rounds_run"], fit, fit / base, statistics.median(r["transform_seconds"]), r["valid_roc_auc"]])
    print_table(["rounds", "rounds run", "fit s (median)", "fit ratio", "transform s", "valid ROC AUC"], rows)
    print(write_results("typicality_fit", {"rows": int(train.sum()), "features": int(X.shape[1]),
                                           "repeats": args.repeats, "results": {str(k): v for k, v in results.items()}}))


if __name__ == "__main__":
    main()
