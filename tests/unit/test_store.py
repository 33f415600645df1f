import numpy as np

from facecluster.store import FeatureStore


def test_put_get_and_reopen(tmp_path):
    store = FeatureStore(tmp_path)
    table = store.table("x", {"a": 1})
    table.put(["k1", "k2"], np.array([[1, 2], [3, 4]]))
    again = FeatureStore(tmp_path).table("x", {"a": 1})
    got = again.get(["k1", "k2", "k3"])
    assert set(got) == {"k1", "k2"}
    np.testing.assert_array_equal(got["k2"], [3, 4])


def test_identity_separates_tables(tmp_path):
    store = FeatureStore(tmp_path)
    store.table("x", {"a": 1}).put(["k"], np.ones((1, 2)))
    assert store.table("x", {"a": 2}).get(["k"]) == {}


def test_corrupt_shard_is_set_aside_not_read(tmp_path):
    store = FeatureStore(tmp_path)
    table = store.table("x", {"a": 1})
    table.put(["k1"], np.ones((1, 4)))
    table.put(["k2"], np.ones((1, 4)))
    shard = sorted(table.folder.glob("shard-*.npz"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    got = FeatureStore(tmp_path).table("x", {"a": 1}).get(["k1", "k2"])
    assert len(got) == 1
    assert list(table.folder.glob("*.corrupt"))


def test_no_temporary_files_are_left(tmp_path):
    table = FeatureStore(tmp_path).table("x", {})
    table.put(["k"], np.zeros((1, 3)))
    assert not list(table.folder.glob(".tmp-*"))
