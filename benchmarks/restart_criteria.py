"""Can a fit without labels choose among its restarts? Label-free criteria against the labelled one.

The `recommended` preset fits its GMM with 10 seeds and keeps the one with the best train-only
criterion (the cluster naming's cross-validated train balanced accuracy), which needs train
labels. A folder nobody labelled has none, so the fit keeps its first seed. This script fits the
preset once per seed on a labelled dataset (default faces-ffhq, train split) and records, per seed,
the labelled criterion, validation balanced accuracy (reported, never used to choose), and three
criteria that need no labels: the GMM's mean log-likelihood of the train rows, the silhouette of
its train assignment in the reduced space, and its consensus (mean adjusted Rand index with every
other seed's assignment). A label-free criterion is useful only if the seed it prefers scores well.

    PYTHONPATH=src python benchmarks/restart_criteria.py [--data ../shared/datasets/faces-ffhq] [--seeds 12]

Writes ``benchmarks/results/restart_criteria-<time>.json`` and prints a table. Accuracies, not
timings: valid under load. A few minutes on 2 cores once the feature cache is warm.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import REPO, labelled_features, print_table, write_results
from sklearn.metrics import adjusted_rand_score, silhouette_score

from facecluster.model import fit_and_evaluate
from facecluster.resolve import build_config

FFHQ = REPO.parent / "shared" / "datasets" / "faces-ffhq"
CRITERIA = ("labelled_cv_criterion", "log_likelihood", "silhouette", "consensus_ari")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=FFHQ)
    parser.add_argument("--seeds", type=int, default=12)
    args = parser.parse_args()
    config = build_config("recommended", {"evaluation": {"restarts": 1}})
    extraction, extractor, labels, splits, usable = labelled_features(args.data, config)
    train = usable & (splits == "train")
    rows, assignments = [], []
    for seed in range(args.seeds):
        model, evaluation = fit_and_evaluate(extraction.features, extraction.status, labels, splits,
                                             reduce=config.reduce, methods=config.methods, seed=seed,
                                             blocks=getattr(extractor, "blocks", None),
                                             naming=config.evaluation.naming, n_resamples=0)
        method = next(iter(evaluation["methods"]))
        result = evaluation["methods"][method]
        reduced = model.transform(extraction.features[train])
        assigned = model.assign(reduced, method)
        mixture = model.clusterers_[method]
        mixture = getattr(mixture, "estimator_", mixture)
        rows.append({"seed": seed, "valid_balanced_accuracy": result["scores"]["valid"]["balanced_accuracy"],
                     "labelled_cv_criterion": result["train_criteria"]["cv_mapping_balanced_accuracy"],
                     "log_likelihood": float(mixture.score(reduced)),
                     "silhouette": float(silhouette_score(reduced, assigned, random_state=0))})
        assignments.append(assigned)
        print(f"seed {seed}: valid {rows[-1]['valid_balanced_accuracy']:.3f}", flush=True)
    for i, row in enumerate(rows):
        row["consensus_ari"] = float(np.mean([adjusted_rand_score(assignments[i], assignments[j])
                                              for j in range(len(rows)) if j != i]))
    chosen = {name: max(rows, key=lambda r: r[name])["seed"] for name in CRITERIA}
    summary = {name: {"chosen_seed": seed, "valid_balanced_accuracy": rows[seed]["valid_balanced_accuracy"]}
               for name, seed in chosen.items()}
    summary["first_seed"] = {"chosen_seed": 0, "valid_balanced_accuracy": rows[0]["valid_balanced_accuracy"]}
    path = write_results("restart_criteria", {"data": str(args.data), "method": method, "seeds": rows,
                                              "chosen_by": summary})
    print_table(["seed", "valid bal. acc", "labelled criterion", "log-likelihood", "silhouette", "consensus ARI"],
                [[r["seed"], f"{r['valid_balanced_accuracy']:.3f}", f"{r['labelled_cv_criterion']:.3f}",
                  f"{r['log_likelihood']:.3f}", f"{r['silhouette']:.3f}", f"{r['consensus_ari']:.3f}"] for r in rows])
    print()
    print_table(["chosen by", "seed", "valid bal. acc"],
                [[name, s["chosen_seed"], f"{s['valid_balanced_accuracy']:.3f}"] for name, s in summary.items()])
    print(path)


if __name__ == "__main__":
    main()
