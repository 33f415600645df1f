"""Faults: a run killed with SIGKILL and started again, two runs sharing one cache, a corrupt cache.

Every run here is a real ``python -m facecluster run`` subprocess. Results are compared with
an uninterrupted run's: the same images, statuses, face boxes, clusters and scores, the same
reduced coordinates bit for bit, and the same feature vectors in the cache.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facecluster.store import FeatureStore
from tests.conftest import image_rows, make_dataset

# ``python -m facecluster`` with extraction chunks of 16 images (64 here), so a run writes
# several cache shards and can be killed between them.
RUN = ("import runpy, sys\n"
       "import facecluster.engines as engines\n"
       "import facecluster.engines.local as local\n"
       "local.CHUNK = 16\n"
       "make = engines.make_engine\n"
       "def small_chunks(*args, **kwargs):\n"
       "    made = make(*args, **kwargs)\n"
       "    if hasattr(made, 'chunk_size'):\n"
       "        made.chunk_size = 16\n"
       "    return made\n"
       "engines.make_engine = small_chunks\n"
       "sys.argv = ['facecluster', *sys.argv[1:]]\n"
       "runpy.run_module('facecluster', run_name='__main__', alter_sys=True)\n")
SPLITS = {"train": {"real": 24, "fake": 24}, "valid": {"real": 8, "fake": 8}}


class Runs:
    """Starts CLI runs on one dataset, with the shared model cache in the environment."""

    def __init__(self, data: Path, base: Path, model_cache: Path):
        self.data, self.base = data, base
        self.env = {**os.environ, "FACECLUSTER_CACHE_DIR": str(model_cache)}

    def start(self, out: str, cache: Path, workers: int = 0) -> subprocess.Popen:
        command = [sys.executable, "-c", RUN, "run", str(self.data), "--out", str(self.base / out),
                   "--cache-dir", str(cache), "--workers", str(workers), "-q"]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
                                start_new_session=True)  # its own process group, to clean up after a kill

    def finish(self, process: subprocess.Popen, out: str) -> dict:
        stdout, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
        results = json.loads((self.base / out / "results.json").read_text())
        # Compared as a whole below: the image table's rows stand in for its summary in results.json.
        return {**results, "images": image_rows(self.base / out)}


def kill_when(process: subprocess.Popen, condition, timeout: float = 600) -> bool:
    """SIGKILL ``process`` as soon as ``condition()`` holds; False if it ended first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            try:
                os.killpg(process.pid, signal.SIGKILL)  # any worker it had started
            except ProcessLookupError:
                pass
            process.communicate()
            return True
        time.sleep(0.02)
    process.communicate(timeout=900)
    return False


def shards(cache: Path) -> int:
    """Whole shards written so far (temporaries excluded), whatever the store's file layout."""
    return sum(1 for p in cache.glob("*/shard-*") if p.suffix in (".npz", ".json"))


def comparable(results: dict) -> dict:
    """Results without what legitimately differs between runs (times, dates, paths of the run).

    Of the extractor's description only its cache identity is kept: a run served wholly
    from the cache never loads the model, so it cannot describe the loaded file.
    """
    results = copy.deepcopy(results)
    for key in ("created", "timings", "provenance"):
        results.pop(key)
    for method in results["methods"].values():
        method.pop("seconds")
    for key in ("backend", "model_sha256", "model_file", "training_data"):
        results["features"].pop(key, None)
    return results


def stored_features(cache: Path, keys: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Every table's vectors for ``keys``, read back through the store's public API."""
    tables = {}
    for folder in sorted(p for p in cache.iterdir() if (p / "identity.json").is_file()):
        identity = json.loads((folder / "identity.json").read_text())
        table = FeatureStore(cache).table(folder.name.rsplit("-", 1)[0], identity)
        assert table.folder == folder
        tables[folder.name] = table.get(keys)
    return tables


def assert_same_as_reference(runs: Runs, out: str, results: dict, reference: dict, cache: Path) -> None:
    assert comparable(results) == comparable(reference["results"])
    reduced = np.load(runs.base / out / "reduced.npy", allow_pickle=False)
    np.testing.assert_array_equal(reduced, reference["reduced"])
    keys = sorted({image["sha256"] for image in results["images"] if image["sha256"]})
    got, expected = stored_features(cache, keys), reference["features"]
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].keys() == expected[name].keys(), name
        for key in expected[name]:
            np.testing.assert_array_equal(got[name][key], expected[name][key])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: its results, reduced coordinates, cache, cached features and duration."""
    base = tmp_path_factory.mktemp("faults")
    data = make_dataset(base / "data", SPLITS, seed=3)
    runs = Runs(data, base, tmp_path_factory.getbasetemp() / "facecluster-cache")
    started = time.monotonic()
    results = runs.finish(runs.start("reference", base / "cache-reference"), "reference")
    seconds = time.monotonic() - started
    keys = sorted({image["sha256"] for image in results["images"]})
    assert results["timings"]["computed"]["features"] == len(keys) == 64
    return {"runs": runs, "results": results, "seconds": seconds, "cache": base / "cache-reference",
            "reduced": np.load(base / "reference" / "reduced.npy", allow_pickle=False),
            "features": stored_features(base / "cache-reference", keys)}


def test_killed_runs_resume_to_the_uninterrupted_result(reference):
    runs, cache = reference["runs"], reference["runs"].base / "cache-killed"
    rng = random.Random(11)
    points = [
        ("first shard written", lambda out: lambda: shards(cache) >= 1),
        ("half-way through extraction", lambda out: (lambda n: lambda: shards(cache) >= n + 4)(shards(cache))),
        ("at a random moment", lambda out: (lambda t: lambda: time.monotonic() > t)(
            time.monotonic() + rng.uniform(0.3, 1.0) * reference["seconds"])),
        ("while drawing figures", lambda out: lambda: any((runs.base / out).glob("*.png"))),
    ]
    killed = []
    for k, (point, condition) in enumerate(points):
        out = f"killed-{k}"
        if kill_when(runs.start(out, cache), condition(out)):
            killed.append(point)
            results_file = runs.base / out / "results.json"
            assert not results_file.exists() or json.loads(results_file.read_text())  # never half a file
    assert len(killed) >= 3, f"only killed {killed}"
    before = shards(cache)
    results = runs.finish(runs.start("resumed", cache), "resumed")
    assert results["timings"]["computed"]["features"] < 64 or before == 0  # it resumed, not restarted
    assert_same_as_reference(runs, "resumed", results, reference, cache)


def test_two_runs_sharing_one_cache_do_not_corrupt_it(reference):
    runs, cache = reference["runs"], reference["runs"].base / "cache-shared"
    first, second = runs.start("writer-1", cache, workers=1), runs.start("writer-2", cache, workers=1)
    results = [runs.finish(first, "writer-1"), runs.finish(second, "writer-2")]
    for out, result in zip(("writer-1", "writer-2"), results):
        assert_same_as_reference(runs, out, result, reference, cache)
    assert not list(cache.glob("*/*.corrupt*"))


def test_a_corrupt_cache_entry_is_recomputed_end_to_end(reference):
    runs, cache = reference["runs"], reference["runs"].base / "cache-corrupt"
    shutil.copytree(reference["cache"], cache)
    table = next(p.parent for p in cache.glob("facenet-*/identity.json"))
    victim = max((p for p in table.iterdir() if p.name.startswith("shard-")), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) * 2 // 3] ^= 0xFF  # one flipped bit, deep inside the vectors
    victim.write_bytes(bytes(data))
    results = runs.finish(runs.start("after-corruption", cache), "after-corruption")
    assert results["timings"]["computed"]["features"] > 0
    assert_same_as_reference(runs, "after-corruption", results, reference, cache)  # the cache healed too
