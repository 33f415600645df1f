"""Mean-Shift: facecluster's all-seeds-at-once shifting against scikit-learn's MeanShift, same results.

The study's Mean-Shift seeds a kernel on every train point (no bin seeding) and scikit-learn
shifts the seeds one at a time, one neighbour query per seed per iteration; facecluster's
``QuantileMeanShift`` makes one query per iteration for every seed still moving, with the same
arithmetic. Both run on the same data in the same process; the centres and labels are checked
to be identical, then timed (best of ``--repeats``):

- the study's data: the dev set's FaceNet embeddings of the train split, PCA to 2-D;
- 2-D Gaussian blobs of growing size (scikit-learn's cost grows with seeds × iterations × calls).

    python benchmarks/meanshift.py [--sizes 1000 4000 16000] [--repeats 3]

Writes ``benchmarks/results/meanshift-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import dev_crops, dev_samples, print_table, write_results
from sklearn.cluster import MeanShift
from sklearn.datasets import make_blobs

from facecluster.cluster import QuantileMeanShift
from facecluster.features.facenet_model import FaceNetEmbedder
from facecluster.reduce import make_reducer
from facecluster.resolve import build_config


def best_time(fit, repeats: int):
    times, model = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - started)
    return min(times), model


def compare(name: str, X: np.ndarray, quantile: float, repeats: int) -> dict:
    X = np.asarray(X, dtype=np.float64)  # QuantileMeanShift fits in float64 (scikit-learn would keep float32)
    ours_seconds, ours = best_time(lambda: QuantileMeanShift(quantile=quantile).fit(X), repeats)
    theirs_seconds, theirs = best_time(lambda: MeanShift(bandwidth=ours.bandwidth_).fit(X), repeats)
    identical = bool(np.array_equal(ours.cluster_centers_, theirs.cluster_centers_)
                     and np.array_equal(ours.labels_, theirs.labels_))
    return {"data": name, "points": int(len(X)), "clusters": int(ours.n_clusters_), "identical": identical,
            "facecluster_seconds": ours_seconds, "scikit_learn_seconds": theirs_seconds,
            "speedup": theirs_seconds / ours_seconds}


def study_points() -> np.ndarray:
    """The study preset's 2-D train points: FaceNet fp32 on facecluster's MTCNN crops, PCA fitted on train."""
    data = dev_crops(dev_samples(), "mtcnn")
    train = data["split"] == "train"
    vectors = FaceNetEmbedder(backend="onnx", batch_size=64).embed(data["crops"][train])
    config = build_config("study")
    return make_reducer(config.reduce, seed=config.seed).fit_transform(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rows = [compare("dev set, study preset (train, PCA 2-D)", study_points(), 0.0855, args.repeats)]
    for size in args.sizes:
        X, _ = make_blobs(size, n_features=2, centers=4, cluster_std=1.5, random_state=0)
        rows.append(compare(f"2-D blobs, {size} points", X, 0.0855, args.repeats if size <= 4000 else 1))
        print(rows[-1], flush=True)
    path = write_results("meanshift", {"repeats": args.repeats, "rows": rows})
    print_table(["data", "points", "clusters", "identical", "scikit-learn (s)", "facecluster (s)", "speed-up"],
                [[r["data"], r["points"], r["clusters"], r["identical"], r["scikit_learn_seconds"],
                  r["facecluster_seconds"], f"{r['speedup']:.1f}x"] for r in rows])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
