"""Candidate uses of k answers on a folder nobody labelled, measured on cached features (issue "labels spent wisely").

The setting of ``benchmarks/ask.py`` without its commands: faces-ffhq copied into one flat folder
under shuffled names (the truth kept aside), the ``recommended`` preset's reducer and GMM fitted on
the folder's train split **without labels** for its 10 restart seeds, then per draw of k answers
(the tool's ``typical`` picks under the label-free fit, and random draws):

- ``answers``: today's method, a class-balanced logistic regression (C = 0.1) on the answered rows'
  reduced features (`AnswersClassifier`);
- ``refit``: the answers choose among the 10 restarts (the train-only criterion on the answered
  rows) and name its clusters (``facecluster fit FOLDER --labels``);
- ``self_training``: the answers' classifier, then its most confident predictions on the unanswered
  train rows (equal numbers per label) added as pseudo-labels, retrained, a few rounds;
- ``posteriors``: the classifier on the reduced features plus the chosen restart's GMM posteriors;
- ``clusters_by_classifier``: the chosen restart's clusters, each named by the classifier's mean
  predicted probability of its train members;
- ``spreading``: LabelSpreading (kNN kernel) on the reduced train rows, seeded by the answers;
- ``ensemble``: the mean of the re-fit's synthetic score and the classifier's probability;
- ``agreeing_restart``: the restart whose clusters, named by the classifier's mean probability,
  agree best with the classifier's own labels on the train rows (no truth read), so named;
- ``agreeing_ensemble``: the mean of that named cluster probability and the classifier's.

Every draw is scored on the **train-origin** images nobody answered (balanced accuracy); that is
the number a candidate is chosen by. The valid-origin images are reported beside it, never used
to choose.

    PYTHONPATH=src python benchmarks/answers_candidates.py [--data ../shared/datasets/faces-ffhq] [--ks 16,32,64] [--seeds 5] [--first-seed 0]

Writes ``benchmarks/results/answers-candidates-<time>.json`` and prints a table (mean and min per k).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
from _common import print_table, write_results
from ask import FFHQ, flat_copy
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score
from sklearn.semi_supervised import LabelSpreading

from facecluster.labelling import AnswersClassifier, choose_rows_to_label
from facecluster.model import FaceModel, best_restart
from facecluster.protocol import cross_validated_mapping_score
from facecluster.resolve import build_config

CANDIDATES = ("answers", "refit", "self_training", "posteriors", "clusters_by_classifier", "spreading", "ensemble",
              "agreeing_restart", "agreeing_ensemble")


def fit_restarts(features, usable, train, config):
    """The preset's label-free fits, one per restart seed: (model, reduced, clusters of its one method)."""
    fits = []
    for r in range(config.evaluation.restarts):
        model = FaceModel(reduce=config.reduce, methods=config.methods, seed=config.seed + r,
                          naming=config.evaluation.naming)
        reduced, clusters = model.fit_rows(features, usable, train)
        fits.append((model, reduced, next(iter(clusters.values()))))
    return fits


def refit_choice(fits, answered, labels, naming):
    """The restart the answers choose (criterion on the answered rows; ties and too few answers: the first)."""
    return best_restart([cross_validated_mapping_score(c[answered], labels[answered], seed=m.seed, naming=naming)
                         for m, _, c in fits])


def self_training(reduced, answered, pool, y, rounds=3, per_round=0.1):
    """The answers' classifier retrained with its most confident pool predictions as pseudo-labels."""
    classifier = AnswersClassifier().fit(reduced[answered], y[answered])
    for _ in range(rounds):
        odds = classifier.decision_function(reduced[pool])
        n = max(1, int(per_round * len(pool) / 2))
        fake, real = pool[np.argsort(-odds)[:n]], pool[np.argsort(odds)[:n]]
        rows = np.concatenate([answered, fake, real])
        labels = np.concatenate([y[answered], ["fake"] * n, ["real"] * n]).astype(object)
        classifier = AnswersClassifier().fit(reduced[rows], labels)
        per_round = min(0.5, per_round * 2)
    return classifier.decision_function(reduced) > 0


def named_by_classifier(clusters, proba, train_rows):
    """Each row's cluster's mean classifier probability of "fake" (over the cluster's train members)."""
    means = {c: proba[train_rows][clusters[train_rows] == c].mean() for c in np.unique(clusters[train_rows])}
    return np.array([means.get(c, 0.5) for c in clusters])


def agreement(named, predicted):
    """Balanced agreement of a restart's classifier-named clusters with the classifier's own labels (no truth)."""
    if len(set(predicted)) < 2:
        return 0.0
    return balanced_accuracy_score(predicted, named > 0.5)


def candidates(fits, answered, train_rows, y, naming):
    """Each candidate's predicted label (True = fake) for every row, from the answers at ``answered``."""
    model0, reduced, clusters0 = fits[0]
    out = {}
    classifier = AnswersClassifier().fit(reduced[answered], y[answered])
    proba = classifier.predict_proba(reduced)[:, 1]
    out["answers"] = proba > 0.5

    chosen = refit_choice(fits, answered, y, naming)
    model, reduced_c, clusters = fits[chosen]
    partial = np.full(len(y), None, dtype=object)
    partial[answered] = y[answered]
    model.name_clusters({next(iter(model.clusterers_)): clusters}, partial, np.isin(np.arange(len(y)), answered),
                        reduced_c)
    method = next(iter(model.clusterers_))
    out["refit"] = model.names_of(clusters, method) == "fake"
    refit_score = model.score_reduced(reduced_c, method)

    pool = np.setdiff1d(train_rows, answered)
    out["self_training"] = self_training(reduced, answered, pool, y)

    posteriors = model.clusterers_[method].predict_proba(reduced_c) if hasattr(
        model.clusterers_[method], "predict_proba") else np.eye(clusters.max() + 1)[clusters]
    extended = np.hstack([reduced, posteriors])
    out["posteriors"] = AnswersClassifier().fit(extended[answered], y[answered]).decision_function(extended) > 0

    out["clusters_by_classifier"] = named_by_classifier(clusters, proba, train_rows) > 0.5

    seeds = np.full(len(y), -1)
    seeds[answered] = (y[answered] == "fake").astype(int)
    spreading = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.2).fit(reduced[train_rows], seeds[train_rows])
    spread = np.zeros(len(y), dtype=bool)
    spread[train_rows] = spreading.transduction_ == 1
    others = np.setdiff1d(np.arange(len(y)), train_rows)
    if len(others):
        spread[others] = spreading.predict(reduced[others]) == 1
    out["spreading"] = spread

    out["ensemble"] = (proba + refit_score) / 2 > 0.5

    agreeing = [named_by_classifier(c, proba, train_rows) for _, _, c in fits]
    best = max(range(len(fits)), key=lambda r: (agreement(agreeing[r][train_rows], proba[train_rows] > 0.5), -r))
    out["agreeing_restart"] = agreeing[best] > 0.5
    out["agreeing_ensemble"] = (agreeing[best] + proba) / 2 > 0.5
    return out, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=FFHQ)
    parser.add_argument("--ks", default="16,32,64")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="random draws use seeds first-seed, first-seed + 1, …")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    from _common import labelled_features

    config = build_config("recommended", {})
    with tempfile.TemporaryDirectory(prefix="facecluster-candidates-") as tmp:
        truth = flat_copy(args.data, Path(tmp) / "flat")
        extraction, _, _, splits, usable = labelled_features(Path(tmp) / "flat", config)
        from facecluster.dataset import discover

        paths = [s.relpath for s in discover(Path(tmp) / "flat", config.dataset).samples]
    y = truth.loc[paths, "label"].to_numpy(dtype=object)
    origin = truth.loc[paths, "origin"].to_numpy()
    train = usable & (splits == "train")
    train_rows = np.flatnonzero(train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fits = fit_restarts(extraction.features, usable, train, config)
        draws = []
        for k in ks:
            _, reduced0, clusters0 = fits[0]
            typical = train_rows[choose_rows_to_label(reduced0[train_rows], [clusters0[train_rows]], k,
                                                      then="typical", seed=config.seed)]
            draws.append((k, "typical", typical))
            usable_rows = np.flatnonzero(usable)
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                draws.append((k, f"random {seed}", np.random.default_rng(seed).choice(usable_rows, k, replace=False)))
        results = []
        for k, draw, answered in draws:
            if len(set(y[answered])) < 2:
                continue
            predicted, chosen = candidates(fits, answered, train_rows, y, config.evaluation.naming)
            rest = np.setdiff1d(np.flatnonzero(usable), answered)
            point = {"k": k, "draw": draw, "refit_seed": int(fits[chosen][0].seed)}
            for name, fake in predicted.items():
                for where in ("train", "valid"):
                    rows = rest[origin[rest] == where]
                    point[f"{name}_{where}"] = balanced_accuracy_score(y[rows] == "fake", fake[rows])
            results.append(point)
            print(k, draw, " ".join(f"{n}={point[f'{n}_train']:.3f}" for n in CANDIDATES), flush=True)
    summary, rows = {}, []
    for k in ks:
        points = [p for p in results if p["k"] == k]
        for name in CANDIDATES:
            train_scores = [p[f"{name}_train"] for p in points]
            valid_scores = [p[f"{name}_valid"] for p in points]
            summary[f"{k}/{name}"] = {"mean": float(np.mean(train_scores)), "min": float(np.min(train_scores)),
                                      "valid_mean": float(np.mean(valid_scores)), "n_draws": len(points)}
            rows.append([k, name, len(points), float(np.mean(train_scores)), float(np.min(train_scores)),
                         float(np.mean(valid_scores))])
    path = write_results("answers-candidates", {"data": str(args.data), "ks": ks, "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
                                                "draws": results, "summary": summary})
    print_table(["k", "candidate", "draws", "train-origin unanswered: mean bal. acc", "min",
                 "valid-origin: mean (not used to choose)"], rows)
    print(f"\n{path}")


if __name__ == "__main__":
    main()
