"""Shared helpers for the benchmark scripts: the dev set, its face crops, memory, JSON and tables."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEV_SET = REPO.parent / "shared" / "datasets" / "faces-dev"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "src"))  # the checkout's code, not whatever is installed

from facecluster.config import DatasetConfig, FacesConfig  # noqa: E402
from facecluster.dataset import Sample, discover  # noqa: E402
from facecluster.store import default_store_dir  # noqa: E402


def dev_samples(root: Path = DEV_SET, limit: int | None = None) -> list[Sample]:
    """The dev images (all splits), or exit with a message when they are absent."""
    if not (root / "train").is_dir():
        sys.exit(f"dev images not found at {root}; they sit in ../shared/datasets beside the clone")
    samples = discover(root, DatasetConfig()).samples
    return samples[:limit] if limit else samples


def subset(root: Path, limit: int | None, folder: Path) -> Path:
    """The dataset itself, or ``limit`` of its images spread over all of it, in ``folder`` (same layout).

    Hard links where the filesystem allows (no bytes copied), else copies; never symbolic links,
    which a dataset refuses (they could lead out of its folder).
    """
    if not limit:
        return root
    samples = dev_samples(root)
    n = len(samples)  # ``limit`` evenly spaced images from first to last: every split and label keeps some
    for sample in [samples[round(k * (n - 1) / max(1, limit - 1))] for k in range(min(limit, n))]:
        target = folder / sample.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(sample.path, target)
        except OSError:  # another filesystem, or links not allowed here
            shutil.copyfile(sample.path, target)
    return folder


def _crop_job(job):
    from facecluster.engines.base import face_work, init_worker

    path, name, config = job
    init_worker(config)
    return face_work((path, name, None, config, None))


def dev_crops(samples: list[Sample], detector: str = "mtcnn", workers: int = 2) -> dict[str, np.ndarray]:
    """facecluster's face crops of ``samples`` with ``detector``, cached on disk after the first call.

    Returns ``crops`` (N×160×160×3 uint8), ``records``, and ``split``/``label``/``path`` per image;
    images that cannot be read are left out.
    """
    import hashlib

    key = hashlib.sha256("".join(s.sha256 for s in samples).encode()).hexdigest()[:16]
    cache = default_store_dir().parent / "benchmarks" / f"dev-crops-{detector}-{key}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    config = FacesConfig(detector=detector)
    jobs = [(s.path, s.relpath, config) for s in samples]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(_crop_job, jobs, chunksize=8)
    keep = [i for i, r in enumerate(results) if r.error is None]
    data = {
        "crops": np.stack([results[i].crop for i in keep]),
        "records": np.stack([results[i].record for i in keep]),
        "split": np.array([samples[i].split for i in keep]),
        "label": np.array([samples[i].label for i in keep]),
        "path": np.array([samples[i].relpath for i in keep]),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    os.replace(tmp, cache)
    return data


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * page
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(children.get(current, []))
    return total


class PeakMemory:
    """Samples the RSS of a process tree in a thread; ``peak`` is the largest sum seen (bytes)."""

    def __init__(self, pid: int | None = None, interval: float = 0.05):
        self.pid = pid or os.getpid()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))


def cpu_seconds() -> float:
    """CPU time of this process, its threads and its waited-for children."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def machine() -> dict:
    """What the numbers were measured on, including how busy the machine was."""
    flags = ""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "isa": [flag for flag in wanted if f" {flag}" in flags], "load_average": os.getloadavg(),
            "python": platform.python_version()}


def labelled_features(data: Path, config, extractor=None, store=None):
    """Every image of ``data`` through `config`'s faces and ``extractor`` (default: its own), from ``store``.

    Returns the extraction, the extractor, and per image its label, split and whether it is usable.
    """
    from facecluster.engines.local import LocalEngine
    from facecluster.features import make_extractor
    from facecluster.pipeline import USABLE
    from facecluster.store import FeatureStore

    dataset = discover(data, config.dataset)
    extractor = extractor if extractor is not None else make_extractor(config.features)
    extraction = LocalEngine().extract(dataset.samples, config.faces, extractor, store or FeatureStore(),
                                       progress=False)
    labels = np.array([s.label for s in dataset.samples], dtype=object)
    splits = np.array([s.split for s in dataset.samples], dtype=object)
    usable = np.array([s in USABLE for s in extraction.status])
    return extraction, extractor, labels, splits, usable


def write_results(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>-<time>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    payload = {"benchmark": name, "created": dt.datetime.now().isoformat(timespec="seconds"),
               "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=float), encoding="utf-8")
    return path


def print_table(header: list[str], rows: list[list]) -> None:
    """A plain Markdown table on stdout (pastes into the README as is)."""
    cells = [[str(c) for c in header]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def elapsed(started: float) -> float:
    return time.perf_counter() - started
