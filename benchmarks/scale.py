"""How clustering and extraction cost grow with the number of images.

Clustering: synthetic 512-d, L2-normalised "embeddings" (8 Gaussian blobs on the sphere,
FaceNet-like distances) are written to a feature store in 16k-row shards, then each
clusterer is measured at each size in its own child process (so peak memory is its own):
wall time of fit + assignment of every image, peak RSS, clusters found and the adjusted
Rand index against the blobs. The streaming clusterers read the store shard by shard; the
in-memory ones (scikit-learn as is, the study's recipe) load everything first. A
measurement that passes ``--timeout`` is marked unusable and larger sizes are skipped.
Children run single-threaded (OMP/BLAS threads = 1): the machine is shared, and this keeps
the comparison per core.

Extraction: ``local`` vs ``ray`` engines on the dev images (cold feature store each time;
Ray's start-up counted), images per second.

    python benchmarks/scale.py                         # 1k, 10k, 100k, 1M + extraction
    python benchmarks/scale.py --sizes 1000,10000 --no-extraction   # quick look
    python benchmarks/scale.py --clusterers meanshift --no-extraction --merge   # re-measure one row

Writes benchmarks/results/scale.json, prints a table, draws docs/scale.png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM, CENTERS, NOISE, SHARD = 512, 8, 0.03, 16384
CLUSTERERS = {
    # name: (streams from the store?, description)
    "birch-stream": (True, "BIRCH, partial_fit shard by shard (threshold 0.6, 8 clusters)"),
    "minibatch-kmeans-stream": (True, "mini-batch k-means over shards (k=8, 2 epochs)"),
    "ipca+meanshift-stream": (True, "IncrementalPCA to 2-D over shards, then binned Mean-Shift (quantile 0.0855)"),
    "birch": (False, "scikit-learn Birch.fit on all features in memory"),
    "minibatch-kmeans": (False, "scikit-learn MiniBatchKMeans.fit on all features in memory"),
    "meanshift": (False, "the study's recipe: PCA 2-D, exact bandwidth, Mean-Shift without bin seeding"),
}


def synthetic_table(data_dir: Path, n: int, seed: int = 0):
    """The store table of ``n`` synthetic rows, written shard by shard if not there yet; keys hold the blob."""
    from facecluster.store import FeatureStore

    table = FeatureStore(data_dir).table("synthetic", {"n": n, "dim": DIM, "centers": CENTERS, "noise": NOISE,
                                                       "seed": seed})
    if table.folder.exists() and len(table) == n:
        return table
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CENTERS, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for start in range(0, n, SHARD):
        rows = min(SHARD, n - start)
        blob = rng.integers(CENTERS, size=rows)
        x = centres[blob] + rng.normal(scale=NOISE, size=(rows, DIM))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        table.put([f"c{b}-{start + i:09d}" for i, b in enumerate(blob)], x.astype(np.float32))
    return table


def _truth(keys) -> np.ndarray:
    return np.array([int(k[1:k.index("-")]) for k in keys], dtype=np.int8)


def _peak_rss_mib(reset: bool = False) -> float:
    """Peak resident memory of this process (VmHWM); ``reset`` starts a new peak from the current RSS."""
    status = Path("/proc/self/status")
    if not status.exists():  # not Linux: the lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def measure_clustering(name: str, n: int, data_dir: Path) -> dict:
    """In a child: fit ``name`` on the n-row table and label every row; time, peak RSS, quality."""
    from sklearn.metrics import adjusted_rand_score

    from facecluster.stream import (
        StreamingBirch,
        StreamingMeanShift,
        StreamingMiniBatchKMeans,
        array_source,
        table_source,
    )

    table = synthetic_table(data_dir, n)
    truth = np.concatenate([_truth(s.keys) for s in table.iter_shards()])
    table = synthetic_table(data_dir, n)  # fresh: nothing cached from the pass above
    baseline = _peak_rss_mib(reset=True)  # the imports and the truth labels are not the clusterer's
    started = time.perf_counter()
    if CLUSTERERS[name][0]:
        source = table_source(table)
        if name == "ipca+meanshift-stream":
            from sklearn.decomposition import IncrementalPCA

            ipca = IncrementalPCA(n_components=2)
            for chunk in source():
                ipca.partial_fit(chunk)
            reduced = np.concatenate([ipca.transform(chunk) for chunk in source()])  # N×2: 16 bytes a row
            model = StreamingMeanShift(quantile=0.0855, n_samples=10000).fit_stream(array_source(reduced))
            labels = np.concatenate(list(model.predict_stream(array_source(reduced))))
        else:
            model = (StreamingBirch(threshold=0.6, n_clusters=CENTERS) if name == "birch-stream"
                     else StreamingMiniBatchKMeans(n_clusters=CENTERS))
            model.fit_stream(source)
            labels = np.concatenate(list(model.predict_stream(source)))
    else:
        X = np.concatenate([np.asarray(s.values) for s in table.iter_shards()])
        labels = _in_memory(name, X)
    seconds = time.perf_counter() - started
    return {"clusterer": name, "n": n, "seconds": round(seconds, 3), "peak_rss_mib": round(_peak_rss_mib(), 1),
            "baseline_rss_mib": round(baseline, 1), "n_clusters": int(len(np.unique(labels[labels >= 0]))),
            "ari": round(float(adjusted_rand_score(truth, labels)), 4)}


def _in_memory(name: str, X: np.ndarray) -> np.ndarray:
    from sklearn.cluster import Birch, MiniBatchKMeans
    from sklearn.decomposition import PCA

    from facecluster.cluster import QuantileMeanShift

    if name == "birch":
        return Birch(threshold=0.6, n_clusters=CENTERS).fit(X).labels_
    if name == "minibatch-kmeans":
        return MiniBatchKMeans(n_clusters=CENTERS, random_state=0).fit(X).labels_
    reduced = PCA(n_components=2, random_state=0).fit_transform(X)
    return QuantileMeanShift(quantile=0.0855).fit(reduced).labels_


def measure_extraction(engine_name: str, dev: Path) -> dict:
    """In a child: extract every dev image with a cold store on ``engine_name``."""
    from facecluster.dataset import discover
    from facecluster.engines import make_engine
    from facecluster.features import make_extractor
    from facecluster.resolve import build_config
    from facecluster.store import FeatureStore

    config = build_config("study")
    samples = discover(dev, config.dataset).samples
    with tempfile.TemporaryDirectory() as store_dir:
        started = time.perf_counter()
        result = make_engine(engine_name, workers=os.cpu_count()).extract(
            samples, config.faces, make_extractor(config.features), FeatureStore(Path(store_dir)), progress=False)
        seconds = time.perf_counter() - started
    return {"engine": engine_name, "images": len(samples), "seconds": round(seconds, 2),
            "images_per_second": round(len(samples) / seconds, 2), "computed": result.computed["features"]}


def _child(args: list[str], timeout: float, threads: int | None = 1) -> dict | None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    if threads:
        env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    try:
        done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_clustering(sizes, names, data_dir: Path, timeout: float) -> list[dict]:
    results, unusable = [], {}
    for n in sizes:
        print(f"data: {n} rows", file=sys.stderr, flush=True)
        synthetic_table(data_dir, n)
        for name in names:  # interleaved: every clusterer at one size, then the next size
            if name in unusable:
                results.append({"clusterer": name, "n": n, "skipped": f"unusable at {unusable[name]}"})
                continue
            row = _child(["--measure", name, "--n", str(n), "--data-dir", str(data_dir)], timeout)
            if row is None:
                unusable[name] = n
                row = {"clusterer": name, "n": n, "timeout_seconds": timeout}
            print(json.dumps(row), file=sys.stderr, flush=True)
            results.append(row)
    return results


def print_table(clustering: list[dict], extraction: list[dict]) -> None:
    sizes = sorted({r["n"] for r in clustering})
    print("\nclustering 512-d synthetic features: seconds / peak RSS MiB / ARI (single thread)")
    print(f"{'clusterer':26}" + "".join(f"{n:>24,}" for n in sizes))
    for name in dict.fromkeys(r["clusterer"] for r in clustering):
        cells = []
        for n in sizes:
            r = next((r for r in clustering if r["clusterer"] == name and r["n"] == n), {})
            if "seconds" in r:
                cells.append(f"{r['seconds']:.1f}s {r['peak_rss_mib']:.0f}M {r['ari']:.2f}")
            elif "timeout_seconds" in r:
                cells.append(f">{r['timeout_seconds']:.0f}s")
            else:
                cells.append("–")
        print(f"{name:26}" + "".join(f"{c:>24}" for c in cells))
    for stream, memory in (("birch-stream", "birch"), ("minibatch-kmeans-stream", "minibatch-kmeans")):
        for n in sizes:
            a = next((r for r in clustering if r["clusterer"] == stream and r["n"] == n and "seconds" in r), None)
            b = next((r for r in clustering if r["clusterer"] == memory and r["n"] == n and "seconds" in r), None)
            if a and b:
                print(f"  {stream} / {memory} at {n:,}: time x{a['seconds'] / b['seconds']:.2f}, "
                      f"peak RSS x{a['peak_rss_mib'] / b['peak_rss_mib']:.2f}")
    if extraction:
        print("\nextraction on the dev images (cold store)")
        for r in extraction:
            print(f"  {r['engine']:6} {r['images']} images in {r['seconds']:.1f}s = {r['images_per_second']:.1f} img/s")
        by = {r["engine"]: r for r in extraction}
        if {"local", "ray"} <= set(by):
            print(f"  ray / local throughput: x{by['ray']['images_per_second'] / by['local']['images_per_second']:.2f}")


def plot(clustering: list[dict], extraction: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if extraction else 2, figsize=(16 if extraction else 11, 4.6))
    for name in dict.fromkeys(r["clusterer"] for r in clustering):
        rows = [r for r in clustering if r["clusterer"] == name and "seconds" in r]
        style = "-o" if CLUSTERERS[name][0] else "--s"
        for ax, key in zip(axes[:2], ("seconds", "peak_rss_mib")):
            ax.plot([r["n"] for r in rows], [r[key] for r in rows], style, label=name)
        late = [r for r in clustering if r["clusterer"] == name and "timeout_seconds" in r]
        for r in late:
            axes[0].plot([r["n"]], [r["timeout_seconds"]], "x", color="red", markersize=10)
            axes[0].annotate(f"{name}: >{r['timeout_seconds']:.0f}s", (r["n"], r["timeout_seconds"]), fontsize=7,
                             xytext=(-60, 6), textcoords="offset points")
    sizes = sorted({r["n"] for r in clustering})
    axes[0].plot(sizes, [1e-4 * n for n in sizes], ":", color="grey", label="linear (1e-4 s/row)")
    axes[1].axhline(4096, color="red", linestyle=":", label="4 GiB")
    for ax, title, unit in zip(axes[:2], ("clustering time (fit + assign all)", "peak memory (RSS)"),
                               ("seconds", "MiB")):
        ax.set(xscale="log", yscale="log", xlabel="images (512-d features)", ylabel=unit, title=title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    if extraction:
        names = [r["engine"] for r in extraction]
        axes[2].bar(range(len(names)), [r["images_per_second"] for r in extraction], color="#4c72b0")
        axes[2].set_xticks(range(len(names)), names)
        axes[2].set(title=f"extraction, {extraction[0]['images']} dev images (2 cores)", ylabel="images / s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--clusterers", default=",".join(CLUSTERERS))
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "facecluster-scale")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a measurement counts as unusable")
    parser.add_argument("--dev", type=Path, default=ROOT.parent / "shared" / "datasets" / "faces-dev")
    parser.add_argument("--no-extraction", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "scale.png")
    parser.add_argument("--merge", action="store_true",
                        help="Keep --out's rows for the clusterers (and extraction) not measured now")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--measure-extraction", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_clustering(args.measure, args.n, args.data_dir)))
        return
    if args.measure_extraction:
        print(json.dumps(measure_extraction(args.measure_extraction, args.dev)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    clustering = run_clustering(sizes, args.clusterers.split(","), args.data_dir, args.timeout)
    extraction = []
    if not args.no_extraction and (args.dev / "train").is_dir():
        for engine in ("local", "ray"):  # each on a cold store, all cores
            row = _child(["--measure-extraction", engine, "--dev", str(args.dev)], 3 * args.timeout, threads=None)
            print(json.dumps(row), file=sys.stderr, flush=True)
            extraction.append(row)
    if args.merge and args.out.is_file():
        earlier = json.loads(args.out.read_text())
        measured = {row["clusterer"] for row in clustering}
        clustering = [row for row in earlier["clustering"] if row["clusterer"] not in measured] + clustering
        extraction = extraction or earlier["extraction"]
    from facecluster.outputs import package_versions

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"clustering": clustering, "extraction": extraction, "dim": DIM,
                                    "centers": CENTERS, "noise": NOISE, "shard_rows": SHARD,
                                    "cpus": os.cpu_count(), "clusterers": {k: v[1] for k, v in CLUSTERERS.items()},
                                    "versions": package_versions()}, indent=2))
    print_table(clustering, extraction)
    plot(clustering, extraction, args.png)
    print(f"\nwrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
