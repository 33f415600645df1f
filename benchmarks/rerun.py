"""What a re-run costs: the dev study cold (empty feature cache) against warm (the same cache, full).

Each run is ``facecluster run DATA --preset study`` in a fresh Python process, as a user starts
it, so imports count: cold runs each get a new ``FACECLUSTER_CACHE_DIR`` (with the converted
FaceNet model already in it: converting it is a once-per-install cost, not a run's), warm runs
all share the cache the first cold run filled. Per run it records the process's wall time,
the stages from results.json's ``timings`` (discover, extract, fit, figures, audit), the time
to import the command's modules, and report.html's build (timed around `write_report`).

    python benchmarks/rerun.py [--data ../shared/datasets/faces-dev] [--warm-rounds 3] [--cold-rounds 1] [--limit N]

Writes ``benchmarks/results/rerun.json`` and prints a table. The goal (issue 14) is a warm run
at most 10 % of the cold one, measured on a quiet machine (see ``machine.load_average``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DEV_SET, REPO, RESULTS, machine, print_table, subset

STAGES = ("discover", "extract", "fit", "figures", "audit")

# The child: the CLI in-process, with its imports and report.html timed; one JSON line on stdout.
CHILD = r"""
import json, sys, time
started = time.perf_counter()
from facecluster.cli import app
import facecluster.pipeline as pipeline
imports = time.perf_counter() - started
report = []
write_report = pipeline.write_report

def timed_report(*args, **kwargs):
    t0 = time.perf_counter()
    try:
        return write_report(*args, **kwargs)
    finally:
        report.append(time.perf_counter() - t0)

pipeline.write_report = timed_report
data, out = sys.argv[1], sys.argv[2]
app(["run", data, "--preset", "study", "--out", out, "--quiet"], standalone_mode=False)
print(json.dumps({"import_seconds": imports, "report_seconds": sum(report),
                  "in_process_seconds": time.perf_counter() - started}))
"""


def one_run(data: Path, cache: Path, out: Path) -> dict:
    """One ``facecluster run`` in a new process on ``cache``; its wall time and stage seconds."""
    env = {**os.environ, "FACECLUSTER_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(data), str(out)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0 or not (out / "results.json").is_file():
        sys.exit(f"facecluster run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    timings = json.loads((out / "results.json").read_text(encoding="utf-8"))["timings"]
    stages = {stage: float(timings.get(f"{stage}_seconds", float("nan"))) for stage in STAGES}
    return {"wall_seconds": wall, "startup_and_import_seconds": wall - child["in_process_seconds"] + child["import_seconds"],
            **{f"{k}_seconds": v for k, v in stages.items()}, "run_seconds": float(timings["total_seconds"]),
            "report_seconds": child["report_seconds"], "computed": timings.get("computed")}


def prepare_models(root: Path, data: Path) -> Path:
    """A cache folder whose ``models/`` holds the converted FaceNet model (made once, by one tiny run)."""
    warmup = root / "models-cache"
    env = {**os.environ, "FACECLUSTER_CACHE_DIR": str(warmup),
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    code = ("from facecluster.features import make_extractor; from facecluster.resolve import build_config; "
            "make_extractor(build_config('study').features).describe()")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    return warmup / "models"


def median_row(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if k.endswith("_seconds")]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEV_SET)
    parser.add_argument("--cold-rounds", type=int, default=1)
    parser.add_argument("--warm-rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="only N images, spread over the set (smoke run)")
    args = parser.parse_args()
    load_before = os.getloadavg()  # the machine must be quiet for figures worth quoting
    with tempfile.TemporaryDirectory(prefix="facecluster-rerun-bench-") as tmp:
        tmp = Path(tmp)
        data = subset(args.data, args.limit, tmp / "data")
        models = prepare_models(tmp, data)
        cold, warm = [], []
        for k in range(args.cold_rounds):
            cache = tmp / f"cache-{k}"
            shutil.copytree(models, cache / "models")
            cold.append(one_run(data, cache, tmp / f"cold-{k}"))
            print(f"cold {k + 1}/{args.cold_rounds}: {cold[-1]['wall_seconds']:.1f} s", file=sys.stderr)
        for k in range(args.warm_rounds):  # the first cold run's cache, now full
            warm.append(one_run(data, tmp / "cache-0", tmp / f"warm-{k}"))
            print(f"warm {k + 1}/{args.warm_rounds}: {warm[-1]['wall_seconds']:.1f} s", file=sys.stderr)
    cold_median, warm_median = median_row(cold), median_row(warm)
    ratio = warm_median["wall_seconds"] / cold_median["wall_seconds"]
    payload = {"benchmark": "rerun", "created": dt.datetime.now().isoformat(timespec="seconds"),
               "machine": machine(), "load_average_before": load_before, "data": str(args.data), "limit": args.limit, "preset": "study",
               "cold": {"median": cold_median, "runs": cold}, "warm": {"median": warm_median, "runs": warm},
               "warm_over_cold": ratio, "goal": 0.10}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "rerun.json"
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    rows = [[name.removesuffix("_seconds").replace("_", " "), cold_median[name], warm_median[name]]
            for name in ("wall_seconds", "startup_and_import_seconds", *(f"{s}_seconds" for s in STAGES),
                         "run_seconds", "report_seconds")]
    print_table(["stage (s)", f"cold (median of {len(cold)})", f"warm (median of {len(warm)})"], rows)
    print(f"\nwarm / cold = {ratio:.3f} (goal ≤ 0.10); load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores; {path}")


if __name__ == "__main__":
    main()
