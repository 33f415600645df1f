"""Where feature extraction runs: the local engine (worker processes on this machine).

Extraction goes through the samples in chunks, as a two-stage pipeline: worker processes
decode each image, find its face and crop it, while the main process embeds the crops of
the previous chunk in large batches. So detection and embedding overlap and every core
stays busy, and at most two chunks are in flight, which bounds memory by the chunk size,
not the dataset. Each chunk's results are written as one cache shard per stage, so a
killed run resumes from the shards already written; an image that cannot be read is
recorded with its reason and the run goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import numpy as np
from tqdm import tqdm

from facecluster.config import FacesConfig
from facecluster.dataset import Sample
from facecluster.errors import ConfigError
from facecluster.faces import RECORD_SIZE, cut_face, locate_face, make_detector
from facecluster.features import Extractor
from facecluster.images import ImageError, decode_rgb, display_name, read_bytes
from facecluster.store import FeatureStore, FeatureTable

log = logging.getLogger(__name__)

CHUNK = 256


@dataclass
class Extraction:
    """Per-sample outputs, aligned with the input samples."""

    features: np.ndarray  # (N, D) float32, NaN rows where the image could not be used
    records: np.ndarray  # (N, RECORD_SIZE) face records
    status: list[str]  # "ok", "no_face" or an error code
    messages: list[str | None]
    computed: dict[str, int] = field(default_factory=dict)  # how much was computed, not read from cache
    seconds: dict[str, float] = field(default_factory=dict)


class FaceResult(NamedTuple):
    """What a worker returns for one image: its face record and crop, or the reason it failed."""

    record: np.ndarray | None
    crop: np.ndarray | None
    error: tuple[str, str] | None  # (code, one-line message)
    decode_seconds: float
    detect_seconds: float


_worker_detector = None
_worker_config: FacesConfig | None = None


def _init_worker(faces_config: FacesConfig) -> None:
    """Load the detector once per process (and again only if the settings change)."""
    global _worker_detector, _worker_config
    if _worker_config != faces_config:
        import cv2

        cv2.setNumThreads(1)
        _worker_detector = make_detector(faces_config)
        _worker_config = faces_config


def _face_work(job) -> FaceResult:
    """Decode one image, find its face (unless its record is cached) and crop it."""
    path, name, record, faces_config = job
    _init_worker(faces_config)
    try:
        started = time.perf_counter()
        rgb = decode_rgb(read_bytes(path, name), name)
        decoded = time.perf_counter()
        if record is None:
            record = locate_face(rgb, _worker_detector, faces_config)
        detected = time.perf_counter()
        crop = cut_face(rgb, record, faces_config)
        return FaceResult(record, crop, None, decoded - started, detected - decoded)
    except ImageError as error:
        return FaceResult(None, None, (error.code, str(error)), 0.0, 0.0)


def _face_job(job):
    """`_face_work` as a plain tuple ``(record, crop, error, detect_seconds)``."""
    result = _face_work(job)
    return result.record, result.crop, result.error, result.detect_seconds


def detection_identity(faces_config: FacesConfig) -> dict:
    """What a face record depends on: the detector and its settings (not the crop)."""
    identity = {"stage": "faces", "detector": faces_config.detector,
                "min_confidence": faces_config.confidence_threshold}
    if faces_config.detector == "yunet":
        identity["detect_side"] = faces_config.detect_side
    return identity


def cache_tables(store: FeatureStore, faces_config: FacesConfig, extractor: Extractor) -> tuple:
    """The store tables of face records and of features for these settings, shared by every engine.

    Detection depends on the detector only; the crop (and so the features) on all face settings.
    """
    face_table = store.table("faces", detection_identity(faces_config))
    feature_table = store.table(extractor.name, {**extractor.cache_identity(),
                                                 "faces": faces_config.model_dump(mode="json")})
    return face_table, feature_table


def save_computed(face_table, feature_table, new_faces: dict, new_features: dict, computed: dict) -> None:
    """Write the face records and vectors just computed (keyed by content hash) to the store; count them."""
    if new_faces:
        face_table.put(list(new_faces), np.stack(list(new_faces.values())))
    if new_features:
        feature_table.put(list(new_features), np.stack(list(new_features.values())))
    computed["faces"] += len(new_faces)
    computed["features"] += len(new_features)


def mark_no_face(status: list[str], records: np.ndarray) -> None:
    """An image that was read but where no face was detected (record flag 0) is ``no_face``, not ``ok``."""
    for i, state in enumerate(status):
        if state == "ok" and records[i, 0] == 0:
            status[i] = "no_face"


@dataclass
class _Chunk:
    """One chunk in flight: which samples still need work, and the workers' results as they come."""

    index: list[int]
    todo: list[tuple[int, np.ndarray | None]]  # (sample row, cached face record or None)
    results: Iterator[FaceResult]


class LocalEngine:
    """Extraction on this machine: ``workers`` processes decode and detect, the main process embeds.

    Parameters
    ----------
    workers : int or None
        Worker processes for decoding and detection; None uses every core, 0 runs inline.
    chunk_size : int
        Images per chunk: the unit of overlap, of the cache shards and of memory use.
    pipelined : bool
        Detect the next chunk while embedding the current one (default). False runs the
        stages one after the other, chunk by chunk; the results are the same.
    """

    name = "local"

    def __init__(self, workers: int | None = None, chunk_size: int = CHUNK, pipelined: bool = True):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.chunk_size = chunk_size
        self.pipelined = pipelined
        self._pool = None
        self._keep_pool = False

    def start(self, faces_config: FacesConfig) -> None:
        """Start the worker processes now and load their detector, and keep them until `close`.

        Without it, `extract` starts them on demand and stops them when it returns.
        """
        if self.workers and self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.workers, initializer=_init_worker, initargs=(faces_config,))
            self._pool.map(_init_worker, [faces_config] * self.workers)  # returns once they are ready
        self._keep_pool = True

    def _faces(self, jobs, faces_config: FacesConfig) -> Iterator[FaceResult]:
        """Start face jobs on the process pool (or lazily inline for few jobs or ``workers=0``), in order."""
        if self.workers == 0 or (len(jobs) < 16 and self._pool is None):
            _init_worker(faces_config)
            return map(_face_work, jobs)
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.workers, initializer=_init_worker, initargs=(faces_config,))
        # imap hands the jobs to the workers now; the results are read later, in order.
        return self._pool.imap(_face_work, jobs, chunksize=4)

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        self._keep_pool = False
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def extract(self, samples: list[Sample], faces_config: FacesConfig, extractor: Extractor,
                store: FeatureStore, progress: bool = True) -> Extraction:
        """Face records and feature vectors for every sample, from the cache or computed."""
        face_table, feature_table = cache_tables(store, faces_config, extractor)
        bar = tqdm(total=len(samples), unit="img", desc="extract", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        try:
            return _Run(self, samples, faces_config, extractor, face_table, feature_table, bar).run()
        finally:
            bar.close()
            if not self._keep_pool:
                self.close()


class _Run:
    """The state of one extraction: per-sample outputs filled chunk by chunk."""

    def __init__(self, engine: LocalEngine, samples: list[Sample], faces_config: FacesConfig,
                 extractor: Extractor, face_table: FeatureTable, feature_table: FeatureTable, bar):
        self.engine, self.samples, self.faces_config, self.extractor = engine, samples, faces_config, extractor
        self.face_table, self.feature_table, self.bar = face_table, feature_table, bar
        n = len(samples)
        self.records = np.full((n, RECORD_SIZE), np.nan, dtype=np.float32)
        self.features: list[np.ndarray | None] = [None] * n
        self.status: list[str] = ["ok"] * n
        self.messages: list[str | None] = [None] * n
        self.computed = {"faces": 0, "features": 0}
        self.seconds = {"decode": 0.0, "detect": 0.0, "embed": 0.0}

    def run(self) -> Extraction:
        n = len(self.samples)
        in_flight: _Chunk | None = None
        for start in range(0, n, self.engine.chunk_size):
            chunk = self._start(list(range(start, min(n, start + self.engine.chunk_size))))
            if not self.engine.pipelined:
                self._finish(chunk)
                continue
            if in_flight is not None:
                self._finish(in_flight)  # embeds while the workers detect `chunk`
            in_flight = chunk
        if in_flight is not None:
            self._finish(in_flight)
        return self._result()

    def _start(self, index: list[int]) -> _Chunk:
        """Read the chunk's cache entries and hand what is missing to the workers."""
        keys = [self.samples[i].sha256 for i in index]
        cached_faces = self.face_table.get(keys)
        cached_features = self.feature_table.get(keys)
        todo, queued = [], set()
        for i, key in zip(index, keys):
            if key in cached_faces and key in cached_features:
                self.records[i], self.features[i] = cached_faces[key], cached_features[key]
            elif key and key in queued:
                continue  # identical content earlier in the chunk: copied in _fill_duplicates
            else:
                todo.append((i, cached_faces.get(key)))
                queued.add(key)
        self.bar.update(len(index) - len(todo))
        jobs = [(self.samples[i].path, self.samples[i].relpath, cached, self.faces_config) for i, cached in todo]
        return _Chunk(index, todo, self.engine._faces(jobs, self.faces_config))

    def _finish(self, chunk: _Chunk) -> None:
        """Collect the chunk's faces, embed them in one go and write its cache shards."""
        samples, records = self.samples, self.records
        crops, crop_rows, new_faces, new_features = [], [], {}, {}
        for (i, cached), result in zip(chunk.todo, chunk.results):
            self.seconds["decode"] += result.decode_seconds
            self.seconds["detect"] += result.detect_seconds
            self.bar.update(1)
            if result.error is not None:
                self.status[i], self.messages[i] = result.error
                log.warning(result.error[1])
                continue
            records[i] = result.record
            if cached is None and samples[i].sha256:
                new_faces[samples[i].sha256] = result.record
            crops.append(result.crop)
            crop_rows.append(i)
        if crops:
            started = time.perf_counter()
            vectors = self.extractor.transform(np.stack(crops), records[crop_rows])
            self.seconds["embed"] += time.perf_counter() - started
            for i, vector in zip(crop_rows, vectors):
                self.features[i] = vector
                if samples[i].sha256:
                    new_features[samples[i].sha256] = vector
        save_computed(self.face_table, self.feature_table, new_faces, new_features, self.computed)
        _fill_duplicates(samples, chunk.index, records, self.features, self.status, self.messages)

    def _result(self) -> Extraction:
        n = len(self.samples)
        mark_no_face(self.status, self.records)
        dim = next((len(f) for f in self.features if f is not None), 0)
        matrix = np.full((n, dim), np.nan, dtype=np.float32)
        for i, vector in enumerate(self.features):
            if vector is not None:
                matrix[i] = vector
        return Extraction(matrix, self.records, self.status, self.messages, self.computed, self.seconds)


def _fill_duplicates(samples, index, records, features, status, messages) -> None:
    """Give identical files inside a chunk the result of the first of them."""
    first: dict[str, int] = {}
    for i in index:
        key = samples[i].sha256
        if not key:
            continue
        if key not in first:
            first[key] = i
        elif features[i] is None and status[i] == "ok":
            j = first[key]
            records[i], features[i], status[i] = records[j], features[j], status[j]
            # The copied message must name this file, not its twin.
            messages[i] = messages[j] and messages[j].replace(display_name(samples[j].relpath),
                                                              display_name(samples[i].relpath), 1)
            if messages[i]:
                log.warning(messages[i])


def make_engine(name: str = "local", workers: int | None = None, address: str | None = None):
    """The extraction engine called ``name``: ``local`` (default) or ``ray`` (optional extra).

    Raises
    ------
    ConfigError
        For an unknown engine name.
    """
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        from facecluster.ray_engine import RayEngine

        return RayEngine(workers=workers, address=address)
    raise ConfigError(f"unknown engine {name!r}; choose 'local' or 'ray'")
