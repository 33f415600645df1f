"""Clusterers with scikit-learn's default thread pools against one thread, on a quiet and a busy machine.

facecluster fits its clusterers with one thread (`protocol.fit_clusterer`). This measures
why: each clusterer is fitted on the same data with the default OpenMP/BLAS pools and with
``threadpool_limits(1)``, interleaved, first with the cores free, then with ``--busy`` other
processes spinning (as when a sweep, another run or a browser shares the machine).

    python benchmarks/cluster_threads.py [--busy 2] [--repeats 3]

Writes ``benchmarks/results/cluster_threads-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time

import numpy as np
from _common import print_table, write_results
from threadpoolctl import threadpool_limits

from facecluster.cluster import make_clusterer

CLUSTERERS = {"kmeans": {"n_clusters": 4}, "gmm": {"n_clusters": 4},
              "birch": {"n_clusters": 4, "threshold": 0.08}, "agglomerative": {"n_clusters": 4}}
DATA = [(902, 2), (10_000, 8), (100_000, 32)]  # the study's train size in 2-D, then larger


def fit_seconds(name: str, X: np.ndarray, one_thread: bool, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        with threadpool_limits(limits=1) if one_thread else contextlib.nullcontext():
            make_clusterer(name, CLUSTERERS[name]).fit(X)
        best = min(best, time.perf_counter() - started)
    return best


def measure(busy: int, repeats: int) -> list[dict]:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    rows = []
    try:
        rng = np.random.default_rng(0)
        for n, dim in DATA:
            X = rng.normal(size=(n, dim))
            X[: n // 2] += 3
            for name in CLUSTERERS:
                if name in ("agglomerative", "birch") and n > 10_000:
                    continue  # quadratic memory (BIRCH's threshold 0.08 leaves a subcluster per point)
                threaded = fit_seconds(name, X, False, repeats)
                single = fit_seconds(name, X, True, repeats)
                rows.append({"busy_processes": busy, "points": n, "dims": dim, "clusterer": name,
                             "default_seconds": threaded, "one_thread_seconds": single,
                             "ratio": threaded / single})
                print(rows[-1], flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, default=2, help="Spinning processes for the busy measurement.")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = measure(0, args.repeats) + measure(args.busy, args.repeats)
    path = write_results("cluster_threads", {"rows": rows})
    print_table(["other processes", "data", "clusterer", "default threads (s)", "one thread (s)", "default / one"],
                [[r["busy_processes"], f"{r['points']} × {r['dims']}", r["clusterer"], r["default_seconds"],
                  r["one_thread_seconds"], f"{r['ratio']:.2f}"] for r in rows])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
