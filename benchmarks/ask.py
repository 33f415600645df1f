"""`facecluster ask` end to end on a folder nobody labelled: k answers → named clusters → every face's label.

The benchmark copies a labelled dataset (default faces-ffhq) into one flat folder under shuffled
neutral names (the truth kept aside), fits the ``recommended`` preset on it **without labels**,
then for each k and strategy: `ask_for_labels` picks k images, the truth answers them, `name`
names the clusters from those answers only (`rename_clusters`, as ``facecluster name --labels``),
and the model scores the folder (`FittedModel.score`). Scored on the images nobody answered:
balanced accuracy of the predicted label and ROC AUC of the synthetic score, and on the ones whose
origin is the dataset's valid split.

Beside it, two other uses of the same answers: re-fitting the preset on the folder with the
answers as its only labels (``facecluster fit FOLDER --labels answers.csv``: they choose among its
restarts and name the clusters), and ``facecluster name --labels … --images …``: the
method ``answers``, a class-balanced logistic regression (C = 0.1) on the model's reduced
features of the k answered images (`FaceModel.fit_answers`), applied to the rest; and both
again with k random answers (``--seeds``). The reference row uses every train-origin label for
both (scored on the valid-origin images).

    PYTHONPATH=src python benchmarks/ask.py [--data ../shared/datasets/faces-ffhq] [--ks 8,16,32,64] [--seeds 3]

Writes ``benchmarks/results/ask-<time>.json`` and prints a table. A few minutes on 2 cores
once the feature cache is warm (the first run extracts every face).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import REPO, print_table, write_results
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from facecluster.dataset import discover
from facecluster.engines.local import LocalEngine
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.scoring import ask_for_labels, load_model, rename_clusters
from facecluster.store import FeatureStore

FFHQ = REPO.parent / "shared" / "datasets" / "faces-ffhq"


def flat_copy(data: Path, flat: Path, seed: int = 0) -> pd.DataFrame:
    """Every image of ``data`` (<split>/<label>/) copied into ``flat`` under shuffled names; the truth table."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    random.Random(seed).shuffle(files)
    flat.mkdir(parents=True)
    rows = []
    for i, path in enumerate(files):
        name = f"{i:05d}{path.suffix.lower()}"
        shutil.copy(path, flat / name)
        rows.append({"path": name, "label": path.parent.name, "origin": path.relative_to(data).parts[0]})
    return pd.DataFrame(rows).set_index("path")


def scored_on_rest(truth: pd.DataFrame, asked: list[str], label: pd.Series, score: pd.Series) -> dict:
    rest = truth.drop(index=asked)
    valid = rest["origin"] == "valid"
    fake = rest["label"] == "fake"
    return {"balanced_accuracy": balanced_accuracy_score(rest["label"], label[rest.index]),
            "roc_auc": roc_auc_score(fake, score[rest.index]),
            "valid_origin_balanced_accuracy": balanced_accuracy_score(rest["label"][valid], label[rest.index][valid])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=FFHQ)
    parser.add_argument("--ks", default="8,16,32,64")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    store, engine = FeatureStore(), LocalEngine()
    with tempfile.TemporaryDirectory(prefix="facecluster-ask-") as tmp:
        tmp = Path(tmp)
        truth = flat_copy(args.data, tmp / "flat")
        run(tmp / "flat", build_config("recommended", {}), tmp / "fit", store=store, engine=engine, progress=False)
        applied = load_model(tmp / "fit").apply(discover(tmp / "flat"), store=store, engine=engine)
        paths = [s.relpath for s in applied.dataset.samples]
        results, rows = {"data": str(args.data), "n_images": len(truth), "ks": ks, "curve": []}, []

        def name_and_score(asked: list[str], tag: str) -> dict:
            model = tmp / f"fit-{tag}"
            shutil.copytree(tmp / "fit", model)
            answers = pd.DataFrame({"path": asked, "label": truth.loc[asked, "label"].to_numpy(),
                                    **{f"cluster_{m}": c for m, c in clusters_of(applied, paths, asked).items()}})
            answers.to_csv(tmp / f"{tag}.csv", index=False)
            _, method, _, _ = rename_clusters(model, None, labels=tmp / f"{tag}.csv", images=tmp / "flat",
                                              store=store, engine=engine)
            out = {}
            for key, name in (("clusters_named", method), ("answers", "answers")):
                table = load_model(model).score(tmp / "flat", name, store=store, engine=engine).set_index("path")
                out[key] = scored_on_rest(truth, asked, table["label"], table["score"])
            shutil.rmtree(model)
            # The third use: re-fit on the folder with the answers as its only labels; they choose among
            # the preset's restarts (the train-only criterion on the answered rows) and name its clusters.
            config = build_config("recommended", {"dataset": {"labels": str(tmp / f"{tag}.csv")}})
            refit = run(tmp / "flat", config, tmp / f"refit-{tag}", store=store, engine=engine, progress=False)
            table = pd.read_parquet(tmp / f"refit-{tag}" / "scores.parquet").set_index("path")  # the re-fit scored every image
            out["refit"] = {**scored_on_rest(truth, asked, table["label"], table["score"]),
                            "chosen_seed": refit["restarts"]["chosen_seed"]}
            shutil.rmtree(tmp / f"refit-{tag}")
            return out

        for k in ks:
            for strategy in ("typical", "doubtful"):
                table, _, _ = ask_for_labels(tmp / "flat", tmp / "fit", tmp / f"ask-{strategy}-{k}", k, strategy,
                                             store=store, engine=engine, progress=False)
                asked = table["path"].tolist()
                point = {"k": k, "strategy": strategy, "fakes_asked": int((truth.loc[asked, "label"] == "fake").sum()),
                         **name_and_score(asked, f"{strategy}-{k}")}
                results["curve"].append(point)
                rows.append(_row(point))
            for seed in range(args.seeds):
                asked = truth.index[np.random.default_rng(seed).choice(len(truth), k, replace=False)].tolist()
                point = {"k": k, "strategy": f"random (seed {seed})",
                         "fakes_asked": int((truth.loc[asked, "label"] == "fake").sum()),
                         **name_and_score(asked, f"random{seed}-{k}")}
                results["curve"].append(point)
                rows.append(_row(point))
        train = truth.index[truth["origin"] == "train"].tolist()
        everyone = {"k": len(train), "strategy": "all train-origin labels", "fakes_asked": int((truth.loc[train, "label"] == "fake").sum()),
                    **name_and_score(train, "all")}
        results["all_train_labels"] = everyone
        rows.append(_row(everyone))
    path = write_results("ask", results)
    print_table(["k", "chosen", "fakes", "named clusters: bal. acc", "AUC", "method answers: bal. acc", "AUC",
                 "re-fit, answers choose: bal. acc", "AUC", "seed"], rows)
    print(f"\n{path}")


def clusters_of(applied, paths: list[str], asked: list[str]) -> dict[str, np.ndarray]:
    index = {p: i for i, p in enumerate(paths)}
    rows = [index[p] for p in asked]
    return {name: clusters[rows] for name, clusters in applied.clusters.items()}


def _row(point: dict) -> list:
    named, linear, refit = point["clusters_named"], point["answers"], point["refit"]
    return [point["k"], point["strategy"], point["fakes_asked"], named["balanced_accuracy"], named["roc_auc"],
            linear["balanced_accuracy"], linear["roc_auc"], refit["balanced_accuracy"], refit["roc_auc"],
            refit["chosen_seed"]]


if __name__ == "__main__":
    main()
