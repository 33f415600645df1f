"""Where a run's time goes: each stage on the dev set, cold (empty cache) and warm (everything cached).

Runs ``facecluster run`` (the pipeline, in this process) twice on the same feature cache:
first empty, then full. Decode and detect run in the worker processes, so their seconds
are summed over the workers (CPU-seconds of work); embed, cluster and the totals are wall-clock.

    python benchmarks/stages.py [--detector mtcnn|yunet] [--precision fp32|int8] [--limit N]

Writes ``benchmarks/results/stages-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import DEV_SET, print_table, subset, write_results

from facecluster.engines.local import LocalEngine
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.store import FeatureStore


def one_run(source: Path, config, cache: Path, out: Path) -> dict:
    started = time.perf_counter()
    results = run(source, config, out, store=FeatureStore(cache), engine=LocalEngine(), progress=False)
    timings = results["timings"]
    return {
        "total": time.perf_counter() - started,
        "extract": timings["extract_seconds"],
        "decode (worker CPU-s)": timings.get("decode_seconds", 0.0),
        "detect (worker CPU-s)": timings.get("detect_seconds", 0.0),
        "embed": timings.get("embed_seconds", 0.0),
        "cluster": sum(m["seconds"] for m in results["methods"].values()),
        "computed": timings["computed"],
        "images": results["dataset"]["n_images"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", default="mtcnn", choices=["mtcnn", "yunet"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    parser.add_argument("--limit", type=int, default=None, help="Only N dev images, spread evenly over the set.")
    args = parser.parse_args()
    config = build_config("study", {"faces": {"detector": args.detector}, "features": {"precision": args.precision}})
    with tempfile.TemporaryDirectory(prefix="facecluster-stages-") as scratch:
        scratch = Path(scratch)
        source = subset(DEV_SET, args.limit, scratch / "data")
        cold = one_run(source, config, scratch / "cache", scratch / "cold")
        warm = one_run(source, config, scratch / "cache", scratch / "warm")
    stages = ["decode (worker CPU-s)", "detect (worker CPU-s)", "embed", "extract", "cluster", "total"]
    path = write_results("stages", {"detector": args.detector, "precision": args.precision, "cold": cold,
                                    "warm": warm, "warm_speedup": cold["total"] / warm["total"]})
    print_table(["stage (s)", "cold", "warm"], [[s, cold[s], warm[s]] for s in stages])
    print(f"\n{cold['images']} images; computed cold {cold['computed']}, warm {warm['computed']}; "
          f"warm run {cold['total'] / warm['total']:.1f}x faster")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
