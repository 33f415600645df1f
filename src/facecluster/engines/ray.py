"""Extraction on Ray: the same work as the local engine, spread over a Ray cluster.

What runs where:

- **The driver** (the process that runs ``facecluster``) looks every image up in the
  feature store and dedupes them (`Ledger`, as every engine does), sends only the missing
  ones to Ray, and writes what comes back into the same content-addressed store (one shard
  per result batch). It holds one row per image, not the images.
- **Ray actors** (Ray Data ``map_batches`` with a stateful class, one CPU each, on every
  node) each load the face detector and the feature model once, from the facecluster
  installed on their node, then read, decode, detect, crop and embed batch after batch.
  They never see the store: results go back to the driver, which alone writes it.
- **Where the images are read.** An actor reads an image by the driver's path and uses it
  only if its SHA-256 is the one the driver computed when it listed the dataset. An image a
  node cannot read there (no shared filesystem, another mount point) or whose bytes differ
  comes back unread; the driver then reads it and sends its bytes, in a second pass. So a
  dataset at the same path on every node is read where it is, and anything else still works,
  at the cost of the driver reading and sending those images.

Ray is an optional dependency (``pip install 'facecluster[ray]'``), imported only when an
extraction runs. With no ``address`` a local Ray instance is started for the run
(``num_cpus = workers``) and stopped after it; ``address="auto"`` joins the cluster started
on this machine with ``ray start --head``, ``ray://host:port`` a remote one through Ray
Client. A Ray already initialised by the caller is used as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facecluster.config import FacesConfig
from facecluster.engines.base import Extraction, Job, Ledger, cache_tables, face_work_on_bytes, init_worker
from facecluster.errors import MissingExtraError
from facecluster.features.image import image_reader, transform_rows
from facecluster.images import ImageError, read_bytes
from facecluster.records import OK, empty_records

log = logging.getLogger(__name__)

#: An actor's status for an image its node cannot read at the driver's path, or reads with
#: other bytes than the driver's; never a final status: the driver sends the bytes instead.
NOT_ON_NODE = "not_on_node"
#: Image bytes the driver sends in one Ray execution (the second pass holds them in memory).
SEND_BYTES = 256 << 20
#: How long to wait for every actor of the pool to start, so each node gets its share of the
#: work (not only the first node to load its models).
ACTOR_START_SECONDS = 600


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingExtraError("the ray engine needs Ray: pip install 'facecluster[ray]'") from None
    return ray


def local_runtime_env() -> dict:
    """Ray workers on this machine import this very facecluster and share its model cache."""
    package_parent = str(Path(__file__).resolve().parents[2])
    paths = [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
    if os.environ.get("FACECLUSTER_CACHE_DIR"):
        env["FACECLUSTER_CACHE_DIR"] = os.environ["FACECLUSTER_CACHE_DIR"]
    return {"env_vars": env}


class _FaceEmbedder:
    """A Ray actor's work: load the detector and the model once, then read, detect, crop, embed."""

    def __init__(self, faces_config: dict, extractor):
        import ray

        from facecluster.features.facenet_model import THREADS_ENV

        context = ray.get_runtime_context()
        # ONNX Runtime would start a thread per core of the node; this actor was given fewer.
        cpus = context.get_assigned_resources().get("CPU", 1)
        os.environ.setdefault(THREADS_ENV, str(max(1, int(cpus))))
        self.node = context.get_node_id()
        self.faces_config = FacesConfig.model_validate(faces_config)
        init_worker(self.faces_config)
        self.extractor = extractor
        self.reader = image_reader(extractor)  # the families run on each decoded image, here in the actor

    @staticmethod
    def _image_bytes(batch: dict, k: int) -> bytes | None:
        """Row ``k``'s bytes: sent by the driver, or read here if they are the driver's (same SHA-256)."""
        if batch["sent"][k]:
            return bytes(batch["data"][k])
        expected = str(batch["sha256"][k])
        if not expected:  # the driver could not read it either: let the driver say why
            return None
        try:
            data = read_bytes(str(batch["path"][k]), str(batch["name"][k]))
        except ImageError:
            return None
        return data if hashlib.sha256(data).hexdigest() == expected else None

    def __call__(self, batch: dict) -> dict:
        n = len(batch["row"])
        records = empty_records(n)
        status, messages, detect = [""] * n, [""] * n, np.zeros(n)
        crops, crop_rows, image_vectors = [], [], []
        for k in range(n):
            data = self._image_bytes(batch, k)
            if data is None:
                status[k] = NOT_ON_NODE
                continue
            cached = np.frombuffer(batch["record"][k], dtype=np.float32) if len(batch["record"][k]) else None
            result = face_work_on_bytes(data, str(batch["name"][k]), cached, self.faces_config, self.reader)
            detect[k] = result.detect_seconds
            if result.error is not None:
                status[k], messages[k] = result.error
                continue
            status[k], records[k] = OK, result.record
            crops.append(result.crop)
            crop_rows.append(k)
            image_vectors.append(result.image_vector)
        features = [b""] * n
        started = time.perf_counter()
        if crops:
            images = None if self.reader is None else np.stack(image_vectors)
            vectors = np.asarray(transform_rows(self.extractor, np.stack(crops), records[crop_rows], images),
                                 dtype=np.float32)
            for k, vector in zip(crop_rows, vectors):
                features[k] = vector.tobytes()
        embed = np.full(n, (time.perf_counter() - started) / n)
        return {"row": batch["row"], "record": np.array([r.tobytes() for r in records], dtype=object),
                "feature": np.array(features, dtype=object), "status": np.array(status),
                "message": np.array(messages), "detect_seconds": detect, "embed_seconds": embed,
                "node": np.array([self.node] * n)}


class RayEngine:
    """Extraction on a Ray cluster (or a local Ray instance started for the run).

    Parameters
    ----------
    workers : int or None
        Actors (one CPU each); None uses every CPU of the cluster (of this machine when
        Ray is started for the run).
    address : str or None
        None starts a local Ray instance; ``"auto"`` or ``"ray://host:port"`` joins a cluster.
    batch_size : int
        Images per Ray batch (and per store shard).
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, batch_size: int = 64):
        self.workers = None if workers is None else max(1, workers)
        self.address = address
        self.batch_size = batch_size

    def _connect(self, ray) -> bool:
        """Join or start Ray; True when this engine started it (and so must stop it)."""
        if ray.is_initialized():
            return False
        if self.address:
            ray.init(address=self.address, configure_logging=False, log_to_driver=False)
        else:
            ray.init(num_cpus=self.workers or os.cpu_count() or 1, include_dashboard=False,
                     configure_logging=False, log_to_driver=False, runtime_env=local_runtime_env())
        return True

    def _actors(self, ray) -> int:
        """One actor per CPU of the cluster, at most ``workers``."""
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return min(self.workers or cpus, cpus)

    def extract(self, samples, faces_config: FacesConfig, extractor, store, progress: bool = True) -> Extraction:
        """Face records and feature vectors for every sample, from the store or computed on Ray."""
        ray = _import_ray()
        # The same tables as the local engine, so either engine reuses what the other computed.
        face_table, feature_table = cache_tables(store, faces_config, extractor)
        bar = tqdm(total=len(samples), unit="img", desc="extract (ray)", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        started_here = False
        try:
            ledger = Ledger(samples, face_table, feature_table, bar, seconds=("detect", "embed"))
            jobs = ledger.look_up()
            if jobs:  # Ray is joined or started only when there is something to compute
                started_here = self._connect(ray)
                self._compute(ray, ledger, jobs, faces_config, extractor)
            return ledger.result()
        finally:
            bar.close()
            if started_here:
                ray.shutdown()

    def _compute(self, ray, ledger: Ledger, jobs: list[Job], faces_config: FacesConfig, extractor) -> None:
        """Compute ``jobs`` on the actors: read by path on the nodes, then send what they could not read."""
        actors = self._actors(ray)
        arguments = {"faces_config": faces_config.model_dump(mode="json"), "extractor": extractor}
        unread = self._map(ray, ledger, jobs, None, actors, arguments)
        if not unread:
            return
        log.warning("%d of %d images could not be read on the Ray nodes at the driver's paths (or differ there); "
                    "the driver sends their bytes. Mount the dataset at the same path on every node to read "
                    "them where they are", len(unread), len(jobs))
        for part, data in self._driver_reads(ledger, unread):
            ledger.sent_by_driver += len(part)
            self._map(ray, ledger, part, data, actors, arguments)  # sent bytes are never unread

    def _map(self, ray, ledger: Ledger, jobs: list[Job], data: list[bytes] | None, actors: int,
             arguments: dict) -> list[Job]:
        """Run ``jobs`` through the actor pool and fill the ledger; return the jobs no node could read."""
        # Small runs still spread over every actor; large ones go in batch_size blocks.
        block = max(1, min(self.batch_size, -(-len(jobs) // actors)))
        pool = min(actors, -(-len(jobs) // block))  # no actor started (and waited for) without a block to do
        by_row, unread = {job.row: job for job in jobs}, []
        with _ray_data_settings(ray):
            # Every block is made by the driver, so Ray Data's locality would queue them all on the
            # driver's node; one block in flight per actor hands the next block to whichever is free.
            results = self._dataset(ray, ledger.samples, jobs, data, block).map_batches(
                _FaceEmbedder, batch_size=block, batch_format="numpy", num_cpus=1, fn_constructor_kwargs=arguments,
                compute=ray.data.ActorPoolStrategy(size=pool, max_tasks_in_flight_per_actor=1))
            for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                done = []
                for k, i in enumerate(batch["row"].tolist()):
                    if batch["status"][k] == NOT_ON_NODE:
                        unread.append(by_row[i])
                        continue
                    node = str(batch["node"][k])
                    ledger.nodes[node] = ledger.nodes.get(node, 0) + 1
                    ledger.seconds["detect"] += float(batch["detect_seconds"][k])
                    ledger.seconds["embed"] += float(batch["embed_seconds"][k])
                    if batch["status"][k] != OK:
                        ledger.failed(i, str(batch["status"][k]), str(batch["message"][k]))
                        continue
                    ledger.records[i] = np.frombuffer(batch["record"][k], dtype=np.float32)
                    ledger.features[i] = np.frombuffer(batch["feature"][k], dtype=np.float32)
                    done.append(i)
                ledger.save(done)
                ledger.bar.update(len(batch["row"]) - int(np.sum(batch["status"] == NOT_ON_NODE)))
        return unread

    @staticmethod
    def _driver_reads(ledger: Ledger, jobs: list[Job]):
        """Read ``jobs`` here, in parts of at most `SEND_BYTES`; an image the driver cannot read fails here."""
        part, data, size = [], [], 0
        for job in jobs:
            sample = ledger.samples[job.row]
            try:
                content = read_bytes(sample.path, sample.relpath)
            except ImageError as error:
                ledger.failed(job.row, error.code, str(error))
                ledger.bar.update(1)
                continue
            if part and size + len(content) > SEND_BYTES:
                yield part, data
                part, data, size = [], [], 0
            part.append(job)
            data.append(content)
            size += len(content)
        if part:
            yield part, data

    @staticmethod
    def _dataset(ray, samples, jobs: list[Job], data: list[bytes] | None, block: int):
        """The jobs as a Ray dataset of ``block`` rows per block: rows, paths, hashes, stored face
        records and, when the driver sends them, the images' bytes."""
        import pyarrow as pa

        blocks = []
        for start in range(0, len(jobs), block):
            part = jobs[start:start + block]
            blocks.append(pa.table({
                "row": pa.array([job.row for job in part], pa.int64()),
                "path": pa.array([str(samples[job.row].path) for job in part]),
                "name": pa.array([samples[job.row].relpath for job in part]),
                "sha256": pa.array([samples[job.row].sha256 for job in part]),
                "record": pa.array([b"" if job.record is None else np.asarray(job.record).tobytes() for job in part],
                                   pa.binary()),
                "sent": pa.array([data is not None] * len(part), pa.bool_()),
                "data": pa.array(data[start:start + block] if data is not None else [b""] * len(part), pa.binary()),
            }))
        return ray.data.from_arrow(blocks)


@contextlib.contextmanager
def _ray_data_settings(ray):
    """Ray Data's own progress and chatter off (ours is the bar), and the whole actor pool started
    before work is handed out, while a dataset is made and run; then the settings put back."""
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.print_on_execution_start, context.wait_for_min_actors_s
    context.enable_progress_bars, context.print_on_execution_start = False, False
    context.wait_for_min_actors_s = ACTOR_START_SECONDS
    ray_data_log = logging.getLogger("ray.data")
    level = ray_data_log.level
    ray_data_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        ray_data_log.setLevel(level)
        context.enable_progress_bars, context.print_on_execution_start, context.wait_for_min_actors_s = saved
