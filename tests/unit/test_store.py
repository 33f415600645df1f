import json
import multiprocessing
import os
import time
import zlib

import numpy as np
import pytest

from facecluster import store as store_module
from facecluster.store import FeatureStore, FeatureTable


def vector(key: str, dim: int = 8) -> np.ndarray:
    """A value that can be recomputed from its key, to check what a reader gets."""
    return np.random.default_rng(zlib.crc32(key.encode())).normal(size=dim).astype(np.float32)


def put_keys(table: FeatureTable, keys: list[str]) -> None:
    table.put(keys, np.stack([vector(k) for k in keys]))


def shard_files(table: FeatureTable, suffix: str) -> list:
    return sorted(table.folder.glob(f"shard-*{suffix}"))


def test_put_get_and_reopen(tmp_path):
    store = FeatureStore(tmp_path)
    table = store.table("x", {"a": 1})
    table.put(["k1", "k2"], np.array([[1, 2], [3, 4]]))
    again = FeatureStore(tmp_path).table("x", {"a": 1})
    got = again.get(["k1", "k2", "k3"])
    assert set(got) == {"k1", "k2"}
    np.testing.assert_array_equal(got["k2"], [3, 4])
    assert got["k2"].dtype == np.float32
    assert len(again) == 2


def test_identity_separates_tables(tmp_path):
    store = FeatureStore(tmp_path)
    store.table("x", {"a": 1}).put(["k"], np.ones((1, 2)))
    assert store.table("x", {"a": 2}).get(["k"]) == {}


def test_put_after_get_is_visible_in_the_same_table_and_others(tmp_path):
    table = FeatureStore(tmp_path).table("x", {})
    assert table.get(["a"]) == {}
    put_keys(table, ["a", "b"])
    np.testing.assert_array_equal(table.get(["a"])["a"], vector("a"))
    assert set(FeatureStore(tmp_path).table("x", {}).get(["a", "b"])) == {"a", "b"}


def test_large_put_is_split_into_shards_streamed_once_each(tmp_path):
    table = FeatureTable(tmp_path / "t", {}, shard_rows=10)
    keys = [f"k{i}" for i in range(35)]
    put_keys(table, keys)
    assert len(shard_files(table, ".json")) == 4
    shards = list(FeatureTable(tmp_path / "t", {}).iter_shards())
    assert sorted(k for s in shards for k in s.keys) == sorted(keys)
    for shard in shards:
        assert isinstance(shard.values, np.memmap)  # read from disk on demand, not loaded whole
        for key, value in zip(shard.keys, shard.values):
            np.testing.assert_array_equal(value, vector(key))


def test_a_key_stored_twice_is_counted_and_streamed_once(tmp_path):
    table = FeatureStore(tmp_path).table("x", {})
    put_keys(table, ["a", "b"])
    put_keys(table, ["b", "c"])
    fresh = FeatureStore(tmp_path).table("x", {})
    assert len(fresh) == 3
    assert sorted(k for s in fresh.iter_shards() for k in s.keys) == ["a", "b", "c"]
    assert sum(len(s.keys) for s in fresh.iter_shards(unique=False)) == 4


def test_corrupt_shard_is_set_aside_not_read_then_recomputed(tmp_path):
    store = FeatureStore(tmp_path)
    table = store.table("x", {"a": 1})
    table.put(["k1"], np.ones((1, 64)))
    table.put(["k2"], np.ones((1, 64)))
    values = shard_files(table, ".values.npy")[0]
    data = bytearray(values.read_bytes())
    data[-10] ^= 0xFF  # inside the vector, past the header: only the checksum can tell
    values.write_bytes(bytes(data))
    reader = FeatureStore(tmp_path).table("x", {"a": 1})
    got = reader.get(["k1", "k2"])
    assert len(got) == 1
    np.testing.assert_array_equal(next(iter(got.values())), np.ones(64))
    assert len(list(table.folder.glob("*.corrupt"))) == 3
    missing = {"k1", "k2"} - set(got)
    reader.put(sorted(missing), np.full((1, 64), 2.0))
    assert set(FeatureStore(tmp_path).table("x", {"a": 1}).get(["k1", "k2"])) == {"k1", "k2"}


@pytest.mark.parametrize("damage", ["manifest", "keys", "missing-values"])
def test_other_damage_is_set_aside_too(tmp_path, damage):
    table = FeatureStore(tmp_path).table("x", {})
    put_keys(table, ["a"])
    put_keys(table, ["b"])
    victim = shard_files(table, ".json")[0].name[:-len(".json")]
    if damage == "manifest":
        (table.folder / f"{victim}.json").write_text("{not json")
    elif damage == "keys":
        (table.folder / f"{victim}.keys.npy").write_bytes(b"\x93NUMPY garbage")
    else:
        (table.folder / f"{victim}.values.npy").unlink()
    fresh = FeatureStore(tmp_path).table("x", {})
    assert len(fresh.get(["a", "b"])) == 1
    assert len([s for s in fresh.iter_shards()]) == 1


def test_pickled_values_are_never_loaded(tmp_path):
    table = FeatureStore(tmp_path).table("x", {})
    put_keys(table, ["a"])
    name = shard_files(table, ".json")[0].name[:-len(".json")]
    values = table.folder / f"{name}.values.npy"
    np.save(values, np.array([[object()]], dtype=object), allow_pickle=True)
    manifest = json.loads((table.folder / f"{name}.json").read_text())
    manifest["values_crc32"] = store_module._crc32(values)  # a forged but consistent checksum
    (table.folder / f"{name}.json").write_text(json.dumps(manifest))
    assert FeatureStore(tmp_path).table("x", {}).get(["a"]) == {}
    assert list(table.folder.glob("*.corrupt"))


@pytest.mark.parametrize("index_damage", ["deleted", "garbage", "stale"])
def test_index_is_only_a_cache(tmp_path, index_damage):
    table = FeatureStore(tmp_path).table("x", {})
    put_keys(table, ["a", "b"])
    assert len(FeatureStore(tmp_path).table("x", {})) == 2  # writes the index
    index = table.folder / "index.npz"
    assert index.exists()
    if index_damage == "deleted":
        index.unlink()
    elif index_damage == "garbage":
        index.write_bytes(b"PK\x03\x04 not a zip")
    else:
        put_keys(FeatureStore(tmp_path).table("x", {}), ["c"])  # a shard the index does not cover
    got = FeatureStore(tmp_path).table("x", {}).get(["a", "b", "c"])
    assert set(got) == ({"a", "b", "c"} if index_damage == "stale" else {"a", "b"})
    for key, value in got.items():
        np.testing.assert_array_equal(value, vector(key))


def test_hash_collisions_still_return_the_right_vectors(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "hash_keys", lambda keys: np.zeros(len(list(keys)), np.uint64))
    table = FeatureStore(tmp_path).table("x", {})
    put_keys(table, ["a", "b"])
    put_keys(table, ["c"])
    got = FeatureStore(tmp_path).table("x", {}).get(["c", "a", "zzz", "b"])
    assert set(got) == {"a", "b", "c"}
    for key, value in got.items():
        np.testing.assert_array_equal(value, vector(key))


def test_no_temporary_files_are_left_and_old_ones_are_swept(tmp_path):
    table = FeatureStore(tmp_path).table("x", {})
    table.put(["k"], np.zeros((1, 3)))
    assert not list(table.folder.glob(".tmp-*"))
    old, new = table.folder / ".tmp-old.npy", table.folder / ".tmp-new.npy"
    orphan = table.folder / "shard-0123.values.npy"  # a killed writer's data without a manifest
    for path in (old, new, orphan):
        path.write_bytes(b"partial")
    hours_ago = time.time() - 2 * store_module.STALE_SECONDS
    os.utime(old, (hours_ago, hours_ago))
    os.utime(orphan, (hours_ago, hours_ago))
    assert len(FeatureStore(tmp_path).table("x", {})) == 1
    assert not old.exists() and not orphan.exists()
    assert new.exists()  # may belong to a writer still running


def _writer(root, worker: int, rounds: int, start) -> None:
    start.wait()
    for r in range(rounds):
        table = FeatureStore(root).table("x", {"shared": True})
        # Half the keys are this writer's own, half shared with the other writer.
        keys = [f"w{worker}-{r}-{i}" for i in range(20)] + [f"both-{r}-{i}" for i in range(20)]
        table.get(keys)
        put_keys(table, keys)
        if r % 3 == 0:
            len(FeatureStore(root).table("x", {"shared": True}))  # rewrites the shared index


def test_two_processes_writing_one_table_never_corrupt_it(tmp_path):
    rounds = 30
    context = multiprocessing.get_context("fork")  # starts at once, so the writers overlap
    start = context.Barrier(2)
    writers = [context.Process(target=_writer, args=(tmp_path, w, rounds, start)) for w in (0, 1)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    table = FeatureStore(tmp_path).table("x", {"shared": True})
    expected = {f"w{w}-{r}-{i}" for w in (0, 1) for r in range(rounds) for i in range(20)}
    expected |= {f"both-{r}-{i}" for r in range(rounds) for i in range(20)}
    got = table.get(sorted(expected))
    assert set(got) == expected
    for key, value in got.items():
        np.testing.assert_array_equal(value, vector(key))
    assert len(table) == len(expected)
    assert sorted(k for s in table.iter_shards() for k in s.keys) == sorted(expected)
    assert not list(table.folder.glob("*.corrupt")) and not list(table.folder.glob(".tmp-*"))


def pixels(n: int, side: int = 4) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, size=(n, side * side * 3), dtype=np.uint8)


def test_uint8_pixels_round_trip_exactly_in_a_folder_of_their_own(tmp_path):
    store = FeatureStore(tmp_path)
    table = store.table("crops", {"size": 4}, dtype="uint8")
    stored = pixels(3)
    table.put(["a", "b", "c"], stored)
    got = FeatureStore(tmp_path).table("crops", {"size": 4}, dtype="uint8").get(["a", "c"])
    assert got["a"].dtype == np.uint8
    np.testing.assert_array_equal(got["c"], stored[2])
    manifest = json.loads(shard_files(table, ".json")[0].read_text())
    assert manifest["dtype"] == "uint8"
    # the same name and identity as float32 is another table: neither reader sets the other's shards aside
    assert store.table("crops", {"size": 4}).folder != table.folder
    assert store.table("crops", {"size": 4}).get(["a"]) == {}
    # reopened from its identity.json alone (as a tool walking the cache does), with its dtype
    again = store.table("crops", json.loads((table.folder / "identity.json").read_text()))
    assert again.folder == table.folder and again.dtype == np.uint8
    np.testing.assert_array_equal(again.get(["b"])["b"], stored[1])
    assert not list(table.folder.glob("*.corrupt"))
    with pytest.raises(ValueError, match="names dtype 'uint8'"):
        store.table("crops", {"size": 4, "dtype": "uint8"}, dtype="float64")


def test_uint8_table_refuses_values_it_would_wrap(tmp_path):
    table = FeatureStore(tmp_path).table("crops", {}, dtype="uint8")
    with pytest.raises(ValueError, match="uint8 pixels"):
        table.put(["a"], np.array([[300.0, 1.0]]))
    with pytest.raises(ValueError, match="float32, float64, uint8"):
        FeatureStore(tmp_path).table("x", {}, dtype="int64")


def test_corrupt_uint8_shard_is_set_aside_and_a_dtype_mismatch_counts_as_corrupt(tmp_path):
    table = FeatureStore(tmp_path).table("crops", {}, dtype="uint8")
    table.put(["a"], pixels(1))
    table.put(["b"], pixels(1))
    first, second = shard_files(table, ".values.npy")
    data = bytearray(first.read_bytes())
    data[-3] ^= 0xFF
    first.write_bytes(bytes(data))
    # the other shard rewritten as float32 with a consistent checksum: not what a uint8 table holds
    np.save(second, np.asarray(np.load(second), dtype=np.float32), allow_pickle=False)
    name = second.name[:-len(".values.npy")]
    manifest = json.loads((table.folder / f"{name}.json").read_text())
    manifest["values_crc32"] = store_module._crc32(second)
    (table.folder / f"{name}.json").write_text(json.dumps(manifest))
    assert FeatureStore(tmp_path).table("crops", {}, dtype="uint8").get(["a", "b"]) == {}
    assert len(list(table.folder.glob("*.values.npy.corrupt"))) == 2


def test_tables_written_before_the_dtype_was_recorded_are_still_read(tmp_path):
    table = FeatureStore(tmp_path).table("x", {"a": 1})
    put_keys(table, ["k"])
    manifest_path = shard_files(table, ".json")[0]
    manifest = json.loads(manifest_path.read_text())
    del manifest["dtype"]  # as an older writer might have left it
    manifest_path.write_text(json.dumps(manifest))
    (table.folder / "index.npz").unlink(missing_ok=True)
    got = FeatureStore(tmp_path).table("x", {"a": 1}).get(["k"])
    np.testing.assert_array_equal(got["k"], vector("k"))
