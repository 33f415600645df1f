"""The local engine: extraction in worker processes on this machine.

The images to compute (what `Ledger.look_up` did not find in the store) go through in chunks,
as a two-stage pipeline: worker processes decode each image, find its face and crop it, while
the main process embeds the crops of the previous chunk in large batches. So detection and
embedding overlap and every core stays busy, and at most two chunks are in flight, which
bounds memory by the chunk size, not the dataset. Each chunk's results are written as one
store shard per stage, so a killed run resumes from the shards already written; an image
that cannot be read is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from tqdm import tqdm

from facecluster.config import FacesConfig
from facecluster.dataset import Sample
from facecluster.engines.base import Extraction, FaceResult, Job, Ledger, cache_tables, face_work, init_worker
from facecluster.features import Extractor
from facecluster.features.image import image_reader, transform_rows
from facecluster.store import FeatureStore

CHUNK = 256


@dataclass
class _Chunk:
    """One chunk in flight: its jobs, and the workers' results as they come."""

    jobs: list[Job]
    results: Iterator[FaceResult]


class LocalEngine:
    """Extraction on this machine: ``workers`` processes decode and detect, the main process embeds.

    Parameters
    ----------
    workers : int or None
        Worker processes for decoding and detection; None uses every core, 0 runs inline.
    chunk_size : int
        Images per chunk: the unit of overlap, of the store shards and of memory use.
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

    def _new_pool(self, faces_config: FacesConfig):
        context = multiprocessing.get_context("spawn")
        return context.Pool(self.workers, initializer=init_worker, initargs=(faces_config,))

    def start(self, faces_config: FacesConfig) -> None:
        """Start the worker processes now and load their detector, and keep them until `close`.

        Without it, `extract` starts them on demand and stops them when it returns.
        """
        if self.workers and self._pool is None:
            self._pool = self._new_pool(faces_config)
            self._pool.map(init_worker, [faces_config] * self.workers)  # returns once they are ready
        self._keep_pool = True

    def _faces(self, jobs, faces_config: FacesConfig) -> Iterator[FaceResult]:
        """Start face jobs on the process pool (or lazily inline for few jobs or ``workers=0``), in order."""
        if self.workers == 0 or (len(jobs) < 16 and self._pool is None):
            init_worker(faces_config)
            return map(face_work, jobs)
        if self._pool is None:
            self._pool = self._new_pool(faces_config)
        # imap hands the jobs to the workers now; the results are read later, in order.
        return self._pool.imap(face_work, jobs, chunksize=4)

    #: Seconds `close` waits for the pool to stop before it kills the workers.
    close_timeout = 30.0

    def close(self) -> None:
        """Stop the worker processes, if any were started.

        `Pool.terminate` stops the workers first and then waits for the pool's task feeder, which can
        wait for ever on its queue's lock after an interrupted extraction (seen once in CI, in
        test_interrupted_run_resumes_with_only_the_rest): so it runs in a helper thread, and past a
        deadline the workers are killed and the pool is left to its (daemon) threads.
        """
        self._keep_pool = False
        pool, self._pool = self._pool, None
        if pool is None:
            return
        workers = list(getattr(pool, "_pool", []))  # the worker processes (multiprocessing's attribute)
        stopper = threading.Thread(target=lambda: (pool.terminate(), pool.join()), daemon=True)
        stopper.start()
        stopper.join(timeout=self.close_timeout)
        if stopper.is_alive():
            for worker in workers:
                if worker.exitcode is None:
                    worker.kill()

    def extract(self, samples: list[Sample], faces_config: FacesConfig, extractor: Extractor,
                store: FeatureStore, progress: bool = True) -> Extraction:
        """Face records and feature vectors for every sample, from the store or computed."""
        face_table, feature_table = cache_tables(store, faces_config, extractor)
        bar = tqdm(total=len(samples), unit="img", desc="extract", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        try:
            ledger = Ledger(samples, face_table, feature_table, bar, seconds=("decode", "detect", "embed"))
            jobs = ledger.look_up()
            reader = image_reader(extractor)  # the families the workers run on each decoded image
            in_flight: _Chunk | None = None
            for start in range(0, len(jobs), self.chunk_size):
                chunk = self._start(ledger, jobs[start:start + self.chunk_size], faces_config, reader)
                if not self.pipelined:
                    self._finish(ledger, chunk, extractor)
                    continue
                if in_flight is not None:
                    self._finish(ledger, in_flight, extractor)  # embeds while the workers detect `chunk`
                in_flight = chunk
            if in_flight is not None:
                self._finish(ledger, in_flight, extractor)
            return ledger.result()
        finally:
            bar.close()
            if not self._keep_pool:
                self.close()

    def _start(self, ledger: Ledger, jobs: list[Job], faces_config: FacesConfig, reader) -> _Chunk:
        """Hand a chunk of jobs to the workers."""
        samples = ledger.samples
        work = [(samples[job.row].path, samples[job.row].relpath, job.record, faces_config, reader) for job in jobs]
        return _Chunk(jobs, self._faces(work, faces_config))

    @staticmethod
    def _finish(ledger: Ledger, chunk: _Chunk, extractor: Extractor) -> None:
        """Collect the chunk's faces, embed them in one go and write its store shards."""
        crops, crop_rows, image_vectors = [], [], []
        for job, result in zip(chunk.jobs, chunk.results):
            ledger.seconds["decode"] += result.decode_seconds
            ledger.seconds["detect"] += result.detect_seconds
            ledger.bar.update(1)
            if result.error is not None:
                ledger.failed(job.row, *result.error)
                continue
            ledger.records[job.row] = result.record
            crops.append(result.crop)
            crop_rows.append(job.row)
            image_vectors.append(result.image_vector)
        if crops:
            started = time.perf_counter()
            images = None if image_vectors[0] is None else np.stack(image_vectors)
            vectors = transform_rows(extractor, np.stack(crops), ledger.records[crop_rows], images)
            ledger.seconds["embed"] += time.perf_counter() - started
            for i, vector in zip(crop_rows, vectors):
                ledger.features[i] = vector
        ledger.save(crop_rows)
