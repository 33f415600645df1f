"""What every engine shares: the per-image work, the store look-up, the dedupe and the save.

An engine only decides *where* the missing images are decoded, detected, cropped and
embedded. Everything around that is here, written once:

- `Ledger.look_up` reads the store for the whole input set and dedupes it by content hash:
  an image whose face record and features are both stored is filled in, an exact copy of an
  earlier image is left to be copied from it, and the rest is returned as jobs;
- `Ledger.save` writes what was just computed to the store (one shard per call), keyed by
  content hash, so a killed run resumes from what was saved and either engine reuses what
  the other computed;
- `Ledger.result` copies results to the duplicates, marks ``no_face`` and returns the
  `Extraction`.

`init_worker` and `face_work` are the work one worker does for one image, whichever
engine runs the worker: decode it, find and crop its face and, for the families that read the
decoded image itself (`facecluster.features.image`), compute their vector there, at the file's
own resolution, so that only vectors travel back, never the images.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from facecluster.config import FacesConfig
from facecluster.faces import cut_face, locate_face, make_detector
from facecluster.features.image import reads_crops
from facecluster.images import ImageError, decode_rgb, display_name, read_bytes
from facecluster.records import NO_FACE, OK, empty_records, found

log = logging.getLogger(__name__)

LOOKUP_CHUNK = 4096  # keys looked up in the store at once
IN_MEMORY_BYTES = 1 << 30  # a larger feature matrix is kept in a temporary file (memory-mapped)


@dataclass
class Extraction:
    """Per-sample outputs, aligned with the input samples."""

    features: np.ndarray  # (N, D) float32, NaN rows where the image could not be used
    records: np.ndarray  # (N, records.RECORD_SIZE) packed face records
    status: list[str]  # records.OK, records.NO_FACE or an error code
    messages: list[str | None]
    computed: dict[str, int] = field(default_factory=dict)  # how much was computed, not read from cache
    seconds: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)  # images worked on per Ray node id (empty for local)
    sent_by_driver: int = 0  # images whose bytes the driver sent because a node could not read them


class FaceResult(NamedTuple):
    """What a worker returns for one image: its face record, crop and image vector, or the reason it failed."""

    record: np.ndarray | None
    crop: np.ndarray | None
    error: tuple[str, str] | None  # (code, one-line message)
    decode_seconds: float
    detect_seconds: float
    image_vector: np.ndarray | None = None  # the image families' vector, when the extractor has any


_worker_detector = None
_worker_config: FacesConfig | None = None


def init_worker(faces_config: FacesConfig) -> None:
    """Set up this process to work on images: one OpenCV thread, the detector loaded once
    (and again only if the settings change)."""
    global _worker_detector, _worker_config
    if _worker_config != faces_config:
        import cv2

        cv2.setNumThreads(1)
        _worker_detector = make_detector(faces_config)
        _worker_config = faces_config


def face_work(job) -> FaceResult:
    """Read one image, find its face (unless its record is given, from the store) and crop it.

    ``job`` is ``(path, name, cached face record or None, faces config, image reader or None)``;
    the reader (`facecluster.features.image.image_reader`) computes the image families' vector
    from the decoded image, face or no face.
    """
    path, name, record, faces_config, reader = job
    started = time.perf_counter()
    try:
        data = read_bytes(path, name)
    except ImageError as error:
        return FaceResult(None, None, (error.code, str(error)), 0.0, 0.0)
    read_seconds = time.perf_counter() - started
    result = face_work_on_bytes(data, name, record, faces_config, reader)
    if result.error is None:  # reading has always counted as decoding
        result = result._replace(decode_seconds=result.decode_seconds + read_seconds)
    return result


def face_work_on_bytes(data: bytes, name: str, record, faces_config: FacesConfig, reader=None) -> FaceResult:
    """`face_work` on an image's bytes already read (by this worker, or sent by the driver)."""
    init_worker(faces_config)
    try:
        started = time.perf_counter()
        rgb = decode_rgb(data, name)
        decoded = time.perf_counter()
        if record is None:
            record = locate_face(rgb, _worker_detector, faces_config)
        detected = time.perf_counter()
        crop = cut_face(rgb, record, faces_config)
        image_vector = None if reader is None else reader.image_features(rgb, record)
        return FaceResult(record, crop, None, decoded - started, detected - decoded, image_vector)
    except ImageError as error:
        return FaceResult(None, None, (error.code, str(error)), 0.0, 0.0)


def detection_identity(faces_config: FacesConfig) -> dict:
    """What a face record depends on: the detector and its settings (not the crop)."""
    identity = {"stage": "faces", "detector": faces_config.detector,
                "min_confidence": faces_config.confidence_threshold}
    if faces_config.detector == "yunet":
        identity["detect_side"] = faces_config.detect_side
    return identity


def cache_tables(store, faces_config: FacesConfig, extractor) -> tuple:
    """The store tables of face records and of features for these settings, shared by every engine.

    Detection depends on the detector only; the crop (and so the features) on all face settings.
    Families that read only the decoded image depend on the detection, not on the crop: box and
    aligned crops share their vectors.
    """
    face_table = store.table("faces", detection_identity(faces_config))
    faces_key = faces_config.model_dump(mode="json") if reads_crops(extractor) else detection_identity(faces_config)
    feature_table = store.table(extractor.name, {**extractor.cache_identity(), "faces": faces_key})
    return face_table, feature_table


class FeatureMatrix:
    """N×D float32 rows filled as they come, NaN elsewhere; D is learnt from the first row.

    Above `IN_MEMORY_BYTES` the matrix lives in a temporary file (memory-mapped).
    """

    def __init__(self, n: int):
        self.n, self.array = n, None

    def __setitem__(self, i, vector) -> None:
        if self.array is None:
            shape = (self.n, len(vector))
            if self.n * len(vector) * 4 > IN_MEMORY_BYTES:
                self.array = np.memmap(tempfile.TemporaryFile(), dtype=np.float32, mode="w+", shape=shape)
                self.array[:] = np.nan
            else:
                self.array = np.full(shape, np.nan, dtype=np.float32)
        self.array[i] = vector

    def __getitem__(self, i):
        return self.array[i]

    def result(self) -> np.ndarray:
        return self.array if self.array is not None else np.full((self.n, 0), np.nan, dtype=np.float32)


class Job(NamedTuple):
    """An image to compute: its row in the samples and its stored face record, if any."""

    row: int
    record: np.ndarray | None


class Ledger:
    """One extraction's per-sample outputs, filled from the store and from the engine's workers.

    The engine reads `records` and `features` and fills them for the jobs it computes, calls
    `failed` for an image that could not be used, and `save` once per batch.
    """

    def __init__(self, samples, face_table, feature_table, bar, seconds: tuple[str, ...]):
        n = len(samples)
        self.samples, self.face_table, self.feature_table, self.bar = samples, face_table, feature_table, bar
        self.records = empty_records(n)
        self.features = FeatureMatrix(n)
        self.status: list[str] = [OK] * n
        self.messages: list[str | None] = [None] * n
        self.computed = {"faces": 0, "features": 0}
        self.seconds = {name: 0.0 for name in seconds}
        self.nodes: dict[str, int] = {}  # images worked on per Ray node (the ray engine fills it)
        self.sent_by_driver = 0
        self._copies: list[tuple[int, int]] = []  # (row, row of the first image with the same content)
        self._stored_face: set[int] = set()  # rows computed from a stored face record

    def look_up(self) -> list[Job]:
        """Fill what the store holds; return the first image of each content still to compute."""
        samples, jobs, first = self.samples, [], {}
        for start in range(0, len(samples), LOOKUP_CHUNK):
            index = range(start, min(len(samples), start + LOOKUP_CHUNK))
            keys = [samples[i].sha256 for i in index]
            cached_faces, cached_features = self.face_table.get(keys), self.feature_table.get(keys)
            for i, key in zip(index, keys):
                if key and key in first:
                    self._copies.append((i, first[key]))
                    self.bar.update(1)
                    continue
                if key:
                    first[key] = i
                if key in cached_faces and key in cached_features:
                    self.records[i], self.features[i] = cached_faces[key], cached_features[key]
                    self.bar.update(1)
                else:
                    jobs.append(Job(i, cached_faces.get(key)))
                    if key in cached_faces:
                        self._stored_face.add(i)
        return jobs

    def failed(self, i: int, code: str, message: str) -> None:
        """Image ``i`` could not be used: keep its code and one-line message, and say it."""
        self.status[i], self.messages[i] = code, message
        log.warning(message)

    def save(self, rows) -> None:
        """Write the face records and vectors just computed for ``rows`` to the store (a shard each)."""
        samples = self.samples
        new_faces = {samples[i].sha256: self.records[i] for i in rows
                     if samples[i].sha256 and i not in self._stored_face}
        new_features = {samples[i].sha256: self.features[i] for i in rows if samples[i].sha256}
        if new_faces:
            self.face_table.put(list(new_faces), np.stack(list(new_faces.values())))
        if new_features:
            self.feature_table.put(list(new_features), np.stack(list(new_features.values())))
        self.computed["faces"] += len(new_faces)
        self.computed["features"] += len(new_features)

    def result(self) -> Extraction:
        """Copy results to the duplicates, mark images without a face and return the whole."""
        samples, records, status, messages = self.samples, self.records, self.status, self.messages
        for i, j in self._copies:
            records[i], status[i] = records[j], status[j]
            if status[j] == OK:
                self.features[i] = self.features[j]
            # A copied message must name this file, not its twin.
            messages[i] = messages[j] and messages[j].replace(display_name(samples[j].relpath),
                                                              display_name(samples[i].relpath), 1)
            if messages[i]:
                log.warning(messages[i])
        has_face = found(records)
        for i, state in enumerate(status):
            if state == OK and not has_face[i]:
                status[i] = NO_FACE
        return Extraction(self.features.result(), records, status, messages, self.computed, self.seconds,
                          dict(self.nodes), self.sent_by_driver)
