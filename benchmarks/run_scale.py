"""How the whole run grows with the number of images: `facecluster run` and `score` at 1k, 10k, 100k.

The images are *perturbed copies* of the dev set (`../shared/datasets/faces-dev`): every copy a
real JPEG with its own bytes (a random crop of up to 6 px a side, mild brightness, contrast and
colour jitter, re-encoded at a random quality of 80–95), in the dev set's ``<split>/<label>/``
layout so that the run is labelled. For each size two folders are made under ``--data-dir``:
``fit-N`` (for `run`) and ``score-N`` (other copies, for `score` with the fitted model). They are
written by this script with both cores, reused when complete (a ``.json`` marker beside each
folder), and never belong in the repository.

Each measurement runs in its own child process, which starts the command and reports its peak
memory two ways: the largest single process (``getrusage(RUSAGE_CHILDREN)``) and the whole tree
(main process + extraction workers, summed, polled from /proc). `run` starts on a cold feature
store; `score` then uses the same store (its images are all new, so every feature is computed).
Recorded per command: wall time, peak RSS, results.json and report.html sizes, the stage timings
that results.json gives, and the report's time to interactive in headless Chromium (from the
navigation to every Bokeh root drawn), itself measured in a separate child.

    python benchmarks/run_scale.py --sizes 1000,10000,100000 --data-dir /work/scratch/scale-data
    python benchmarks/run_scale.py --sizes 1000 --data-dir DIR --compare-configs   # choose the config
    python benchmarks/run_scale.py --sizes 100000 --data-dir DIR --generate-only    # make the folders only

Writes benchmarks/results/run_scale.json and prints a table with the growth ratio per 10x.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import REPO, DEV_SET, PeakMemory, machine, print_table

RECIPE = 1  # bump when the perturbation changes: complete folders of another recipe are made again
KINDS = ("fit", "score")
MAX_SHIFT, MIN_QUALITY, MAX_QUALITY = 6, 80, 95

# Over the study preset. The chosen one must be real (the study's FaceNet features, labelled
# splits, audit and supervised ceiling on) and finish 100k images in about 25 minutes on 2 cores:
# see docs/scale.md for the per-image costs that chose it.
STREAMING_METHODS = {
    "meanshift": {"algorithm": "meanshift-stream", "params": {"quantile": 0.0855}},
    "birch": {"algorithm": "birch-stream", "params": {"n_clusters": 4, "threshold": 0.08}},
}
CONFIGS = {
    "study": {},
    "study-yunet-int8": {"faces": {"detector": "yunet"}, "features": {"precision": "int8"}},
    "yunet-int8-stream": {"faces": {"detector": "yunet"}, "features": {"precision": "int8"},
                          "reduce": {"incremental": True}, "methods": STREAMING_METHODS},
    "none-spectrum-stream": {"faces": {"detector": "none"}, "features": {"extractor": "spectrum"},
                             "reduce": {"incremental": True}, "methods": STREAMING_METHODS},
}
DEFAULT_CONFIG = "yunet-int8-stream"


# ---------------------------------------------------------------- the copies


def dev_images(dev: Path) -> list[Path]:
    """The dev set's images as ``<split>/<label>/<file>`` paths, sorted."""
    images = sorted(p for p in dev.glob("*/*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not images:
        sys.exit(f"{dev}: no <split>/<label>/ images; the dev set sits in ../shared/datasets beside the clone")
    return images


def perturbed_jpeg(data: bytes, rng: np.random.Generator) -> bytes:
    """A new JPEG of the image in ``data``: random crop, colour jitter, random quality."""
    from PIL import Image, ImageEnhance

    image = Image.open(io.BytesIO(data))
    image = image.convert("L" if image.mode in ("L", "LA", "I;16") else "RGB")
    left, top, right, bottom = rng.integers(0, MAX_SHIFT + 1, size=4)
    image = image.crop((int(left), int(top), image.width - int(right), image.height - int(bottom)))
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.94, 1.06)))
    image = ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.94, 1.06)))
    if image.mode == "RGB":
        image = ImageEnhance.Color(image).enhance(float(rng.uniform(0.92, 1.08)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(rng.integers(MIN_QUALITY, MAX_QUALITY + 1)))
    return out.getvalue()


def copy_name(source: Path, index: int) -> Path:
    """Where copy ``index`` of ``source`` goes, relative to the folder: same split and label."""
    return Path(source.parent.parent.name, source.parent.name, f"{source.stem}-c{index:06d}.jpg")


_SOURCES: dict[Path, bytes] = {}


def _write_copies(job) -> int:
    """In a worker: write copies ``start..stop`` of folder ``kind``; those already there are kept."""
    folder, kind, start, stop, sources = job
    written = 0
    for index in range(start, stop):
        source = sources[index % len(sources)]  # shuffled once: every size is a mix of all splits and labels
        target = folder / copy_name(source, index)
        if target.exists():
            continue
        if source not in _SOURCES:
            _SOURCES[source] = source.read_bytes()
        rng = np.random.default_rng([RECIPE, KINDS.index(kind), index])
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(perturbed_jpeg(_SOURCES[source], rng))
        os.replace(tmp, target)
        written += 1
    return written


def marker_of(folder: Path) -> Path:
    return folder.with_name(folder.name + ".json")


def make_copies(data_dir: Path, kind: str, n: int, dev: Path, workers: int) -> Path:
    """The folder of ``n`` copies for ``kind`` ('fit' or 'score'), made (or completed) if needed."""
    sources = dev_images(dev)
    sources = [sources[i] for i in np.random.default_rng(RECIPE).permutation(len(sources))]
    folder = data_dir / f"{kind}-{n}"
    want = {"recipe": RECIPE, "kind": kind, "n": n, "dev": str(dev), "dev_images": len(sources),
            "dev_names": hashlib.sha256("\n".join(map(str, sources)).encode()).hexdigest()[:16]}
    marker = marker_of(folder)
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return folder
    if marker.is_file():  # another recipe or set: start again
        shutil.rmtree(folder, ignore_errors=True)
        marker.unlink()
    started = time.perf_counter()
    step = 500
    jobs = [(folder, kind, start, min(start + step, n), sources) for start in range(0, n, step)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        written = sum(pool.imap_unordered(_write_copies, jobs))
    count = sum(1 for _ in folder.glob("*/*/*.jpg"))
    if count != n:
        sys.exit(f"{folder}: {count} copies, expected {n}; delete the folder and run again")
    marker.write_text(json.dumps(want, indent=2))
    print(f"{folder}: {written} copies written in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return folder


# ---------------------------------------------------------------- measuring, in children


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure_command(argv: list[str], env: dict) -> dict:
    """In a child of the benchmark: run ``argv``; wall time, peak RSS of its largest process and of its tree."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        process = subprocess.Popen(argv, env=env, stdout=devnull, stderr=subprocess.PIPE)
        with PeakMemory(process.pid, interval=0.2) as memory:
            _, stderr = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}):\n{stderr.decode()[-3000:]}")
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(largest / 2**20, 1),
            "peak_tree_rss_mib": round(memory.peak / 2**20, 1)}


def measure_browser(report: Path, roots: int, timeout_s: float) -> dict:
    """In a child: seconds from navigating to ``report`` until Bokeh has drawn ``roots`` roots."""
    from facecluster.report.browser import chromium_page, wait_for_plots

    with chromium_page() as page:
        started = time.perf_counter()
        page.goto(report.resolve().as_uri(), wait_until="commit", timeout=timeout_s * 1000)
        wait_for_plots(page, roots, timeout_ms=timeout_s * 1000)
        seconds = time.perf_counter() - started
        in_page = page.evaluate("() => performance.now() / 1000")  # from the navigation's start
    return {"interactive_seconds": round(seconds, 2), "interactive_in_page_seconds": round(in_page, 2)}


def _child(args: list[str], timeout: float) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                          env=child_env())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_env(cache: Path | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    if cache is not None:  # converted models (int8) live here and stay warm; the feature store is --cache-dir
        env["FACECLUSTER_CACHE_DIR"] = str(cache)
    return env


def measure_one(command: str, n: int, folder: Path, work: Path, config_file: Path, model_cache: Path,
                store: Path, timeout: float, browser_timeout: float) -> dict:
    """One `run` or `score` at size ``n``: the child's numbers, the output's sizes and timings, the browser."""
    out = work / f"{command}-{n}"
    shutil.rmtree(out, ignore_errors=True)
    cli = [sys.executable, "-m", "facecluster"]
    if command == "run":
        argv = cli + ["run", str(folder), "--config", str(config_file), "--out", str(out), "--cache-dir", str(store),
                      "--quiet"]
    else:
        argv = cli + ["score", str(folder), "--model", str(work / f"run-{n}"), "--out", str(out), "--cache-dir",
                      str(store), "--quiet"]
    print(f"{command} {n:,} …", file=sys.stderr, flush=True)
    row = {"command": command, "n": n, **_child(["--measure-command", json.dumps({"argv": argv, "cache": str(model_cache)})],
                                                timeout)}
    results = json.loads((out / "results.json").read_text())
    report = out / "report.html"
    row.update({"images_per_second": round(n / row["seconds"], 1),
                "results_json_mib": round((out / "results.json").stat().st_size / 2**20, 3),
                "report_html_mib": round(report.stat().st_size / 2**20, 3),
                "outputs_mib": round(_tree_size(out) / 2**20, 2),
                "timings": results.get("timings", {}), "faces": results.get("faces", {}),
                "methods": sorted(results.get("methods", {}))})
    try:
        row.update(_child(["--measure-browser", str(report), "--roots", str(len(results.get("methods", {}))),
                           "--browser-timeout", str(browser_timeout)], browser_timeout + 120))
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        row["interactive_error"] = str(error).splitlines()[-1][:300]
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


# ---------------------------------------------------------------- the table


def growth(rows: list[dict], command: str, key: str) -> dict[int, float]:
    """Ratio of ``key`` at each size to the size 10x smaller, where both were measured."""
    by_n = {r["n"]: r[key] for r in rows if r["command"] == command and key in r}
    return {n: by_n[n] / by_n[n // 10] for n in by_n if n // 10 in by_n and by_n[n // 10]}


def show(rows: list[dict]) -> None:
    header = ["command", "images", "wall s", "img/s", "peak RSS MiB (largest / tree)", "results.json MiB",
              "report.html MiB", "interactive s", "time x per 10x", "memory x per 10x"]
    table = []
    for command in ("run", "score"):
        time_growth, memory_growth = growth(rows, command, "seconds"), growth(rows, command, "peak_tree_rss_mib")
        for r in sorted((r for r in rows if r["command"] == command), key=lambda r: r["n"]):
            table.append([command, f"{r['n']:,}", r["seconds"], r["images_per_second"],
                          f"{r['peak_rss_mib']:.0f} / {r['peak_tree_rss_mib']:.0f}", r["results_json_mib"],
                          r["report_html_mib"], r.get("interactive_seconds", "failed"),
                          f"{time_growth[r['n']]:.1f}" if r["n"] in time_growth else "–",
                          f"{memory_growth[r['n']]:.2f}" if r["n"] in memory_growth else "–"])
    print_table(header, table)
    stages = sorted({k for r in rows for k, v in r["timings"].items() if k.endswith("_seconds")})
    if stages:
        print("\nstage timings from results.json (seconds)")
        print_table(["command", "images", *[s.removesuffix("_seconds") for s in stages]],
                    [[r["command"], f"{r['n']:,}", *[r["timings"].get(s, "–") for s in stages]] for r in rows])


def write_config(config_name: str, path: Path) -> Path:
    import tomli_w

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(CONFIGS[config_name]) or "# the study preset as is\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--data-dir", type=Path, required="--measure-command" not in sys.argv
                        and "--measure-browser" not in sys.argv, help="Where the copies and the runs go (scratch)")
    parser.add_argument("--dev", type=Path, default=DEV_SET)
    parser.add_argument("--config", default=DEFAULT_CONFIG, choices=sorted(CONFIGS))
    parser.add_argument("--compare-configs", action="store_true",
                        help="`run` every configuration at the first size only: the per-image cost of each")
    parser.add_argument("--generate-only", action="store_true", help="Make the folders of copies and stop")
    parser.add_argument("--no-score", action="store_true", help="Measure `run` only")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="Processes writing the copies")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="Seconds one command may take")
    parser.add_argument("--browser-timeout", type=float, default=120)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "run_scale.json")
    parser.add_argument("--measure-command", help=argparse.SUPPRESS)
    parser.add_argument("--measure-browser", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--roots", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_command:
        job = json.loads(args.measure_command)
        print(json.dumps(measure_command(job["argv"], child_env(Path(job["cache"])))))
        return
    if args.measure_browser:
        print(json.dumps(measure_browser(args.measure_browser, args.roots, args.browser_timeout)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    data_dir = args.data_dir.resolve()
    for n in sizes:
        for kind in KINDS if not (args.no_score or args.compare_configs) else ("fit",):
            make_copies(data_dir, kind, n, args.dev, args.workers)
    if args.generate_only:
        return
    configs = sorted(CONFIGS) if args.compare_configs else [args.config]
    sizes = sizes[:1] if args.compare_configs else sizes
    rows = []
    for config_name in configs:
        work = data_dir / "runs" / config_name
        config_file = write_config(config_name, work / "config.toml")
        for n in sizes:
            store = work / f"store-{n}"
            shutil.rmtree(store, ignore_errors=True)  # cold: nothing extracted before
            for command in ("run",) if args.no_score or args.compare_configs else ("run", "score"):
                folder = data_dir / f"{'fit' if command == 'run' else 'score'}-{n}"
                row = measure_one(command, n, folder, work, config_file, data_dir / "model-cache", store,
                                  args.timeout, args.browser_timeout)
                rows.append({"config": config_name, **row})
            shutil.rmtree(store, ignore_errors=True)
    from facecluster.outputs import package_versions

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "run_scale", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                    "machine": machine(), "configs": {c: CONFIGS[c] for c in configs},
                                    "rows": rows, "versions": package_versions(),
                                    "perturbation": {"recipe": RECIPE, "max_shift_px": MAX_SHIFT,
                                                     "jpeg_quality": [MIN_QUALITY, MAX_QUALITY]}}, indent=2))
    for config_name in configs:
        print(f"\n{config_name}: {json.dumps(CONFIGS[config_name])}")
        show([r for r in rows if r["config"] == config_name])
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
