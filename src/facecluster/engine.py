"""Where feature extraction runs: the local engine (worker processes on this machine).

Extraction goes through the samples in chunks. For each chunk it looks up the cache,
decodes and detects the missing faces in worker processes, embeds the crops in batches in
the main process, and writes one cache shard per stage and chunk. Memory is bounded by the
chunk, and a killed run resumes from the shards already written.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from facecluster.config import ConfigError, FacesConfig
from facecluster.dataset import Sample
from facecluster.faces import RECORD_SIZE, cut_face, locate_face, make_detector
from facecluster.features import Extractor
from facecluster.images import ImageError, decode_rgb, display_name, read_bytes
from facecluster.store import FeatureStore

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


def _face_job(job):
    """Decode one image, find its face (unless its record is cached) and crop it."""
    path, name, record, faces_config = job
    try:
        rgb = decode_rgb(read_bytes(path, name), name)
        started = time.perf_counter()
        if record is None:
            record = locate_face(rgb, _worker_detector, faces_config)
        detect_seconds = time.perf_counter() - started
        return record, cut_face(rgb, record, faces_config), None, detect_seconds
    except ImageError as error:
        return None, None, (error.code, str(error)), 0.0


class LocalEngine:
    """Extraction on this machine: ``workers`` processes decode and detect, the main process embeds.

    Parameters
    ----------
    workers : int or None
        Worker processes for decoding and detection; None uses every core, 0 runs inline.
    """

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._pool = None

    def _faces(self, jobs, faces_config: FacesConfig):
        """Run face jobs inline (few jobs, or ``workers=0``) or on the process pool, in order."""
        if self.workers == 0 or (len(jobs) < 16 and self._pool is None):
            _init_worker(faces_config)
            return map(_face_job, jobs)
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.workers, initializer=_init_worker, initargs=(faces_config,))
        return self._pool.imap(_face_job, jobs, chunksize=4)

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def extract(self, samples: list[Sample], faces_config: FacesConfig, extractor: Extractor,
                store: FeatureStore, progress: bool = True) -> Extraction:
        """Face records and feature vectors for every sample, from the cache or computed."""
        # Detection depends on the detector only; the crop (and so the features) on all face settings.
        detection_identity = {"stage": "faces", "detector": faces_config.detector,
                              "min_confidence": faces_config.min_confidence}
        face_table = store.table("faces", detection_identity)
        feature_table = store.table(extractor.name, {**extractor.cache_identity(),
                                                     "faces": faces_config.model_dump(mode="json")})
        bar = tqdm(total=len(samples), unit="img", desc="extract", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        try:
            return self._extract(samples, faces_config, extractor, face_table, feature_table, bar)
        finally:
            bar.close()
            self.close()

    def _extract(self, samples, faces_config, extractor, face_table, feature_table, bar) -> Extraction:
        n = len(samples)
        records = np.full((n, RECORD_SIZE), np.nan, dtype=np.float32)
        features: list[np.ndarray | None] = [None] * n
        status: list[str] = ["ok"] * n
        messages: list[str | None] = [None] * n
        computed = {"faces": 0, "features": 0}
        seconds = {"detect": 0.0, "embed": 0.0}
        for start in range(0, n, CHUNK):
            index = list(range(start, min(n, start + CHUNK)))
            keys = [samples[i].sha256 for i in index]
            cached_faces = face_table.get(keys)
            cached_features = feature_table.get(keys)
            todo, queued, new_faces, new_features = [], set(), {}, {}
            for i, key in zip(index, keys):
                if key in cached_faces and key in cached_features:
                    records[i], features[i] = cached_faces[key], cached_features[key]
                elif key and key in queued:
                    continue  # identical content earlier in the chunk: copied in _fill_duplicates
                else:
                    todo.append((i, cached_faces.get(key)))
                    queued.add(key)
            bar.update(len(index) - len(todo))
            jobs = [(samples[i].path, samples[i].relpath, cached, faces_config) for i, cached in todo]
            crops, crop_rows = [], []
            for (i, cached), (record, crop, error, detect_seconds) in zip(todo, self._faces(jobs, faces_config)):
                seconds["detect"] += detect_seconds
                bar.update(1)
                if error is not None:
                    status[i], messages[i] = error
                    log.warning(error[1])
                    continue
                records[i] = record
                if cached is None and samples[i].sha256:
                    new_faces[samples[i].sha256] = record
                crops.append(crop)
                crop_rows.append(i)
            if crops:
                started = time.perf_counter()
                vectors = extractor.transform(np.stack(crops), records[crop_rows])
                seconds["embed"] += time.perf_counter() - started
                for i, vector in zip(crop_rows, vectors):
                    features[i] = vector
                    if samples[i].sha256:
                        new_features[samples[i].sha256] = vector
            if new_faces:
                face_table.put(list(new_faces), np.stack(list(new_faces.values())))
            if new_features:
                feature_table.put(list(new_features), np.stack(list(new_features.values())))
            computed["faces"] += len(new_faces)
            computed["features"] += len(new_features)
            _fill_duplicates(samples, index, records, features, status, messages)
        for i in range(n):
            if status[i] == "ok" and records[i, 0] == 0:
                status[i] = "no_face"
        dim = next((len(f) for f in features if f is not None), 0)
        matrix = np.full((n, dim), np.nan, dtype=np.float32)
        for i, vector in enumerate(features):
            if vector is not None:
                matrix[i] = vector
        return Extraction(matrix, records, status, messages, computed, seconds)


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
