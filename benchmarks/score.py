"""Scoring speed of a saved model: cold feature cache (extraction bound) against warm, and against re-fitting.

Fits a model once on a dataset (``facecluster fit``'s pipeline, warm-up cache), then, in this
process and on the same images:

* ``score, cold``: `FittedModel.score` (the Python API: the per-image table, no report) with an
  empty feature cache, so every face is detected and embedded;
* ``score, warm``: the same call again, every feature from the cache;
* ``score command, warm``: `score_folder` (what ``facecluster score`` runs: table, figures, report);
* ``run (re-fit), warm``: what users had before a saved model — re-fitting on the folder with
  ``facecluster run`` (the alternative; warm cache too).

Each is repeated ``--rounds`` times (median shown); cold rounds each start from a new cache.

    python benchmarks/score.py [--data ../shared/datasets/faces-dev] [--preset study] [--rounds 3]

Writes ``benchmarks/results/score-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import DEV_SET, print_table, write_results

from facecluster.dataset import discover
from facecluster.engines.local import LocalEngine
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.scoring import load_model, score_folder
from facecluster.store import FeatureStore


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEV_SET)
    parser.add_argument("--preset", default="study")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = build_config(args.preset, {"evaluation": {"bootstrap_resamples": 0}})
    n_images = len(discover(args.data, config.dataset).samples)
    times: dict[str, list[float]] = {"score, cold": [], "score, warm": [], "score command, warm": [],
                                     "run (re-fit), warm": []}
    with tempfile.TemporaryDirectory(prefix="facecluster-score-bench-") as tmp:
        tmp = Path(tmp)
        warm = FeatureStore(tmp / "warm-cache")
        run(args.data, config, tmp / "fit", store=warm, engine=LocalEngine(), progress=False)
        model = load_model(tmp / "fit")
        for k in range(args.rounds):
            cold = FeatureStore(tmp / f"cold-cache-{k}")
            times["score, cold"].append(timed(lambda: model.score(args.data, store=cold, engine=LocalEngine())))
            times["score, warm"].append(timed(lambda: model.score(args.data, store=warm, engine=LocalEngine())))
            times["score command, warm"].append(timed(lambda: score_folder(
                args.data, tmp / "fit", tmp / f"score-{k}", store=warm, engine=LocalEngine(), progress=False)))
            times["run (re-fit), warm"].append(timed(lambda: run(
                args.data, config, tmp / f"run-{k}", store=warm, engine=LocalEngine(), progress=False)))
    refit = statistics.median(times["run (re-fit), warm"])
    rows, table = [], []
    for name, seconds in times.items():
        median = statistics.median(seconds)
        rows.append({"what": name, "seconds": seconds, "median_seconds": median, "images_per_second": n_images / median,
                     "x_refit": refit / median})
        table.append([name, median, round(n_images / median), f"{refit / median:.2f}",
                      " / ".join(f"{s:.2f}" for s in seconds)])
    path = write_results("score", {"data": str(args.data), "preset": args.preset, "n_images": n_images,
                                   "rounds": args.rounds, "rows": rows})
    print_table(["what", "median s", "img/s", "× re-fit (speed-up)", "rounds (s)"], table)
    print(f"\n{n_images} images; written {path}")


if __name__ == "__main__":
    main()
