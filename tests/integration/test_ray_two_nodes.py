"""The ray engine on a real two-node Ray cluster on this machine, started as the README tells users to.

A head and a worker node, each a ``ray start --block`` process with one CPU and a resource of its
own, each with facecluster on its own path (as if installed there). Every Python process of the
cluster carries an audit hook (a ``sitecustomize`` on the nodes' path) that logs each file it opens
for writing, creates, renames or removes under a watched folder; the feature store lives there, so
the test sees it if anything but the driver writes the store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from facecluster.dataset import discover
from facecluster.engines.local import LocalEngine
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.store import FeatureStore
from tests.conftest import TinyColourFeatures, image_rows, make_dataset, synthetic_face

ray = pytest.importorskip("ray", reason="the ray engine needs Ray, an optional extra: pip install 'facecluster[ray]'")

REPOSITORY = Path(__file__).resolve().parents[2]
NODE_START_SECONDS = 90

# Logs, from every process of the cluster, what it writes under FACECLUSTER_TEST_WATCH.
WRITE_AUDIT = '''
import os, sys

_watch, _log = os.environ.get("FACECLUSTER_TEST_WATCH"), os.environ.get("FACECLUSTER_TEST_WRITES")
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_CHANGES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "os.link", "os.symlink", "shutil.move"}


def _watched(path):
    try:
        return os.path.abspath(os.fsdecode(path)).startswith(_watch + os.sep)
    except TypeError:  # a file descriptor
        return False


def _audit(event, args):
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITING)
        paths = [path] if writes else []
    elif event in _CHANGES:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for path in paths:
        if _watched(path):
            with open(_log, "a") as log:  # outside the watched folder: not audited again
                log.write(f"{os.getpid()} {event} {os.fsdecode(path)}\\n")


if _watch and _log:
    sys.addaudithook(_audit)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_started(process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + NODE_START_SECONDS
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"the Ray {what} did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to `ray start --block` stops that node's processes (and only them); all nodes at once."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A head and a worker node (one CPU each) on this machine; stopped even when a test fails."""
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.is_file():
        pytest.skip(f"the `ray` command is not installed beside {sys.executable}")
    # Short: Ray's Unix sockets live under the temp dir, and their paths are limited to ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="fc-ray-", dir="/tmp"))
    hooks, watch = root / "hooks", root / "watch"
    hooks.mkdir()
    watch.mkdir()
    (hooks / "sitecustomize.py").write_text(WRITE_AUDIT)
    # The nodes get facecluster from their own path, the driver's model cache (conftest's
    # isolated_cache: models converted once per session) and no token authentication, which
    # Ray 2.60 turns on by default when a token sits in ~/.ray (the test's cluster is private).
    # (The repository root too, so that the nodes can unpickle the tests' own stand-in extractor.)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), str(REPOSITORY / "src"), str(REPOSITORY)]),
           "FACECLUSTER_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "facecluster-cache"),
           "FACECLUSTER_TEST_WATCH": str(watch), "FACECLUSTER_TEST_WRITES": str(root / "writes.log"),
           "RAY_AUTH_MODE": "disabled",
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # nothing to drain: the driver has left by then
    port = _free_port()
    nodes = {"head": ["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(root / "r")],
             "worker": ["--address", f"127.0.0.1:{port}"]}
    processes: list[subprocess.Popen] = []
    saved_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the driver, too
    try:
        for name, options in nodes.items():
            cwd, log = root / f"{name}-cwd", root / f"{name}.log"
            cwd.mkdir()
            with open(log, "w") as out:
                processes.append(subprocess.Popen(
                    [str(ray_cli), "start", "--block", *options, "--num-cpus", "1",
                     "--resources", json.dumps({f"facecluster_{name}": 1}), "--disable-usage-stats"],
                    cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT))
            _wait_started(processes[-1], log, f"{name} node")
        yield {"address": f"127.0.0.1:{port}", "root": root, "watch": watch, "writes": root / "writes.log",
               "cwd": {name: root / f"{name}-cwd" for name in nodes}}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop(processes)
        if saved_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_auth
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def driver(two_nodes):
    """The test process joined to the two-node cluster as its driver (both nodes up), left after the test."""
    ray.init(address=two_nodes["address"], configure_logging=False, log_to_driver=False)
    try:
        deadline = time.monotonic() + NODE_START_SECONDS
        while sum(node["Alive"] for node in ray.nodes()) < 2:
            assert time.monotonic() < deadline, "the worker node never joined the head"
            time.sleep(0.5)
        yield {"head": _node_with("facecluster_head"), "worker": _node_with("facecluster_worker")}
    finally:
        ray.shutdown()


def _node_with(resource: str) -> str:
    return next(node["NodeID"] for node in ray.nodes() if node["Alive"] and resource in node["Resources"])


def _writes(two_nodes, under: Path) -> list[str]:
    log = two_nodes["writes"]
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.split(" ", 2)[2].startswith(str(under))]


def _check_the_audit_sees_both_nodes_write(two_nodes, nodes) -> None:
    """A task on each node writes under the watched folder: the audit must log both."""
    canary = two_nodes["watch"] / "canary"

    @ray.remote(num_cpus=1)
    def write(path: str) -> None:
        Path(path).parent.mkdir(exist_ok=True)
        Path(path).write_text("written by a worker")

    ray.get([write.options(resources={f"facecluster_{name}": 1}).remote(str(canary / name)) for name in nodes])
    logged = {line.split(" ", 2)[2] for line in _writes(two_nodes, canary)}
    assert {str(canary / name) for name in nodes} <= logged


def _store_features(store: FeatureStore) -> dict[str, np.ndarray]:
    folder = next(store.root.glob("facenet-*"))
    table = store.table("facenet", json.loads((folder / "identity.json").read_text()))
    return {key: value for shard in table.iter_shards() for key, value in zip(shard.keys, np.asarray(shard.values))}


def test_two_nodes_share_the_extraction_and_give_the_local_engine_results(tmp_path, two_nodes, driver):
    from facecluster.engines.ray import RayEngine

    data = make_dataset(tmp_path / "data", {"train": {"real": 8, "fake": 8}, "valid": {"real": 3, "fake": 3}})
    shutil.copy(data / "train" / "real" / "img_000.jpg", data / "train" / "real" / "copy.jpg")  # a duplicate
    (data / "train" / "fake" / "empty.jpg").write_bytes(b"")  # an unusable file
    config = build_config("study", {"methods": {"birch": {"algorithm": "birch", "params": {"n_clusters": 2, "threshold": 0.01}},
                                                "kmeans": {"algorithm": "minibatch-kmeans-stream",
                                                           "params": {"n_clusters": 2}}}})
    ray_store = two_nodes["watch"] / "store"
    on_ray = run(data, config, tmp_path / "ray", store=FeatureStore(ray_store), engine=RayEngine(), progress=False)
    local = run(data, config, tmp_path / "local", store=FeatureStore(tmp_path / "local-store"),
                engine=LocalEngine(workers=0), progress=False)

    # Both nodes worked: 23 different files (the copy is computed once), read where they are.
    nodes = on_ray["timings"]["nodes"]
    assert set(nodes) == set(driver.values()) and all(count > 0 for count in nodes.values())
    assert sum(nodes.values()) == 23 and on_ray["timings"]["sent_by_driver"] == 0

    # The same face records, features and clusters as the local engine.
    assert on_ray["timings"]["computed"] == local["timings"]["computed"] == {"faces": 22, "features": 22}
    ray_features, local_features = _store_features(FeatureStore(ray_store)), _store_features(
        FeatureStore(tmp_path / "local-store"))
    assert set(ray_features) == set(local_features) and len(ray_features) == 22
    for key, vector in ray_features.items():
        np.testing.assert_allclose(vector, local_features[key], atol=1e-5)
    ray_images, local_images = image_rows(tmp_path / "ray"), image_rows(tmp_path / "local")
    for ray_image, local_image in zip(ray_images, local_images, strict=True):
        assert ray_image["path"] == local_image["path"]
        assert ray_image["status"] == local_image["status"]
        assert ray_image.get("face") == local_image.get("face")  # face record: confidence, box, landmarks
        assert ray_image.get("message") == local_image.get("message")
        assert ray_image["clusters"] == local_image["clusters"]
    assert {i["path"]: i["status"] for i in ray_images}["train/fake/empty.jpg"] == "empty_file"
    for name in ("birch", "kmeans"):
        assert on_ray["methods"][name]["scores"] == local["methods"][name]["scores"]

    # The store was written, by the driver only: no process of the cluster wrote into it, though
    # the audit does see what those processes write (on either node).
    assert any(ray_store.rglob("*.values.npy"))
    assert _writes(two_nodes, ray_store) == []
    _check_the_audit_sees_both_nodes_write(two_nodes, ["head", "worker"])


def test_a_node_that_cannot_read_an_image_at_the_drivers_path_gets_its_bytes_from_the_driver(
        tmp_path, monkeypatch, two_nodes, driver):
    from facecluster.engines.ray import RayEngine

    data = make_dataset(tmp_path / "data", {"train": {"real": 5, "fake": 5}})
    (data / "train" / "fake" / "empty.jpg").write_bytes(b"")
    (data / "train" / "real" / "gone.jpg").symlink_to(data / "nowhere.jpg")  # unreadable for the driver too
    config = build_config("study", {})
    samples = discover(data, config.dataset).samples
    # "/proc/self/cwd/<relpath>" is the image for the driver (its working folder is the dataset) but
    # whatever the nodes hold under their own working folders: the same file, another one, or nothing.
    monkeypatch.chdir(data)
    moved = [dataclasses.replace(s, path=Path("/proc/self/cwd") / s.relpath) for s in samples]
    same, other = ["train/real/img_000.jpg", "train/fake/img_001.jpg"], ["train/real/img_002.jpg", "train/fake/img_003.jpg"]
    rng = np.random.default_rng(7)
    for cwd in two_nodes["cwd"].values():
        for relpath in same + other:
            (cwd / relpath).parent.mkdir(parents=True, exist_ok=True)
        for relpath in same:
            shutil.copy(data / relpath, cwd / relpath)
        for relpath in other:  # another picture at the same path: its SHA-256 gives it away
            synthetic_face(rng, "real").save(cwd / relpath, quality=90)

    extractor = TinyColourFeatures()  # the crops' colours: what is tested here is where the bytes come from
    store_root = two_nodes["watch"] / "store-sent"
    on_ray = RayEngine().extract(moved, config.faces, extractor, FeatureStore(store_root), progress=False)
    local = LocalEngine(workers=0).extract(samples, config.faces, extractor, FeatureStore(tmp_path / "local-store"),
                                           progress=False)

    unread_on_nodes = len(samples) - len(same)  # other, missing, the empty file and the broken link
    assert on_ray.sent_by_driver == unread_on_nodes - 1  # the driver could not read the broken link either
    assert set(on_ray.nodes) <= set(driver.values()) and sum(on_ray.nodes.values()) == len(samples) - 1
    assert on_ray.status == local.status
    assert on_ray.status[[s.relpath for s in samples].index("train/real/gone.jpg")] == "broken_link"
    np.testing.assert_allclose(on_ray.features, local.features, atol=1e-5)  # NaN rows match too
    np.testing.assert_allclose(on_ray.records, local.records, atol=1e-4)
    assert on_ray.computed == local.computed
    assert _writes(two_nodes, store_root) == []
