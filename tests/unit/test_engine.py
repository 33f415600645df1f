"""The local engine: the pipelined path gives what the sequential one does, and a killed run resumes."""

from __future__ import annotations

import numpy as np
import pytest

from facecluster.config import DatasetConfig, FacesConfig
from facecluster.dataset import discover
from facecluster.engines.local import LocalEngine
from facecluster.store import FeatureStore


class ColourFeatures:
    """A fast stand-in for FaceNet: mean colour and spread of each crop, and counts its calls."""

    name = "colour"

    def __init__(self, fail_on_call: int | None = None):
        self.calls = 0
        self.embedded = 0
        self.fail_on_call = fail_on_call

    def cache_identity(self) -> dict:
        return {"extractor": self.name}

    def describe(self) -> dict:
        return self.cache_identity()

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # the user pressing Ctrl-C in the middle of the run
        self.embedded += len(crops)
        pixels = crops.reshape(len(crops), -1, 3).astype(np.float32)
        return np.concatenate([pixels.mean(1), pixels.std(1)], axis=1)


@pytest.fixture
def samples(tiny_dataset):
    """The 36 tiny images, one of them corrupt and one an exact copy of another."""
    (tiny_dataset / "train" / "real" / "img_000.jpg").write_bytes(b"not a jpeg")
    copy = (tiny_dataset / "valid" / "fake" / "img_001.jpg").read_bytes()
    (tiny_dataset / "valid" / "fake" / "img_002.jpg").write_bytes(copy)
    return discover(tiny_dataset, DatasetConfig()).samples


def extract(samples, store, extractor=None, **engine):
    extractor = extractor or ColourFeatures()
    config = FacesConfig(detector="none")
    return LocalEngine(**{"workers": 2, "chunk_size": 16, **engine}).extract(samples, config, extractor, store,
                                                                             progress=False)


def test_pipelined_gives_what_sequential_gives(samples, tmp_path):
    pipelined = extract(samples, FeatureStore(tmp_path / "a"))  # worker processes, stages overlapped
    sequential = extract(samples, FeatureStore(tmp_path / "b"), pipelined=False, workers=0)
    np.testing.assert_array_equal(pipelined.features, sequential.features)
    np.testing.assert_array_equal(pipelined.records, sequential.records)
    assert pipelined.status == sequential.status
    assert pipelined.messages == sequential.messages
    assert pipelined.computed == sequential.computed == {"faces": 34, "features": 34}  # 36 less corrupt and copy
    assert sorted(set(pipelined.status)) == ["no_face", "not_an_image"]
    bad = pipelined.status.index("not_an_image")
    assert "img_000.jpg" in pipelined.messages[bad] and np.isnan(pipelined.features[bad]).all()
    names = [s.relpath for s in samples]
    original, copy = names.index("valid/fake/img_001.jpg"), names.index("valid/fake/img_002.jpg")
    np.testing.assert_array_equal(pipelined.features[original], pipelined.features[copy])


def test_interrupted_run_resumes_with_only_the_rest(samples, tmp_path):
    store = FeatureStore(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        extract(samples, store, ColourFeatures(fail_on_call=2))  # dies while embedding the second chunk
    rerun = ColourFeatures()
    result = extract(samples, FeatureStore(tmp_path / "cache"), rerun, workers=0)
    first_chunk = 16 - 1  # the corrupt image is in it and never embedded
    assert result.computed["features"] == 34 - first_chunk
    assert rerun.embedded == 34 - first_chunk
    complete = extract(samples, FeatureStore(tmp_path / "fresh"), workers=0)
    np.testing.assert_array_equal(result.features, complete.features)


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="chunk_size"):
        LocalEngine(chunk_size=0)


def test_copies_are_computed_once_across_the_whole_input_not_just_a_chunk(tiny_dataset, tmp_path):
    names = [s.relpath for s in discover(tiny_dataset, DatasetConfig()).samples]
    twin, copy = names[1], names[20]  # in the first chunk of 16 and in the next, which is in flight with it
    (tiny_dataset / copy).write_bytes((tiny_dataset / twin).read_bytes())
    samples = discover(tiny_dataset, DatasetConfig()).samples
    extractor = ColourFeatures()
    result = extract(samples, FeatureStore(tmp_path / "cache"), extractor)  # pipelined, 2 workers
    assert extractor.embedded == len(samples) - 1 == result.computed["features"]
    np.testing.assert_array_equal(result.features[names.index(copy)], result.features[names.index(twin)])
    assert result.status[names.index(copy)] == result.status[names.index(twin)]


def test_close_kills_the_workers_when_the_pool_does_not_stop():
    """A pool whose terminate never returns (its task feeder stuck on a lock) does not hang `close`."""
    import threading

    class Worker:
        exitcode = None

        def kill(self):
            self.exitcode = -9

    class StuckPool:
        def __init__(self):
            self._pool = [Worker(), Worker()]
            self.release = threading.Event()

        def terminate(self):
            self.release.wait()

        def join(self):
            pass

    engine = LocalEngine(workers=2)
    engine.close_timeout = 0.2
    engine._pool = stuck = StuckPool()
    engine.close()
    assert engine._pool is None and [w.exitcode for w in stuck._pool] == [-9, -9]
    stuck.release.set()
