"""The ray engine against the local engine, on a real local Ray instance (2 CPUs) and synthetic faces."""

import json
import shutil

import numpy as np
import pytest

from facecluster.engines.local import LocalEngine
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.store import FeatureStore
from tests.conftest import image_rows, make_dataset

ray = pytest.importorskip("ray", reason="the ray engine needs Ray, an optional extra: pip install 'facecluster[ray]'")


@pytest.fixture
def ray_instance(isolated_cache):
    from facecluster.engines.ray import local_runtime_env

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
             runtime_env=local_runtime_env())  # after isolated_cache: the actors use the test's model cache
    yield
    ray.shutdown()


def _features(store: FeatureStore) -> dict[str, np.ndarray]:
    folder = next(store.root.glob("facenet-*"))
    table = store.table("facenet", json.loads((folder / "identity.json").read_text()))
    return {key: value for shard in table.iter_shards() for key, value in zip(shard.keys, np.asarray(shard.values))}


def test_ray_engine_gives_the_local_engine_features_and_clusters(tmp_path, ray_instance):
    from facecluster.engines.ray import RayEngine

    data = make_dataset(tmp_path / "data", {"train": {"real": 6, "fake": 6}, "valid": {"real": 2, "fake": 2}})
    shutil.copy(data / "train" / "real" / "img_000.jpg", data / "train" / "real" / "copy.jpg")  # a duplicate
    (data / "train" / "fake" / "empty.jpg").write_bytes(b"")  # an unusable file
    config = build_config("study", {"methods": {"birch": {"algorithm": "birch", "params": {"n_clusters": 2, "threshold": 0.01}},
                                                "kmeans": {"algorithm": "minibatch-kmeans-stream",
                                                           "params": {"n_clusters": 2}}}})
    on_ray = run(data, config, tmp_path / "ray", store=FeatureStore(tmp_path / "ray-store"),
                 engine=RayEngine(workers=2), progress=False)
    local = run(data, config, tmp_path / "local", store=FeatureStore(tmp_path / "local-store"),
                engine=LocalEngine(workers=0), progress=False)

    assert on_ray["provenance"]["engine"] == "ray"
    assert on_ray["timings"]["computed"] == local["timings"]["computed"] == {"faces": 16, "features": 16}
    ray_features, local_features = _features(FeatureStore(tmp_path / "ray-store")), _features(
        FeatureStore(tmp_path / "local-store"))
    assert set(ray_features) == set(local_features) and len(ray_features) == 16  # the copy shares its key, the empty file has none
    for key, vector in ray_features.items():
        np.testing.assert_allclose(vector, local_features[key], atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "ray" / "reduced.npy"), np.load(tmp_path / "local" / "reduced.npy"),
                               atol=1e-4)
    ray_images, local_images = image_rows(tmp_path / "ray"), image_rows(tmp_path / "local")
    for ray_image, local_image in zip(ray_images, local_images, strict=True):
        assert ray_image["path"] == local_image["path"]
        assert ray_image["status"] == local_image["status"]
        assert ray_image["clusters"] == local_image["clusters"]
    statuses = {image["path"]: image["status"] for image in ray_images}
    assert statuses["train/fake/empty.jpg"] == "empty_file"
    for name in ("birch", "kmeans"):
        assert on_ray["methods"][name]["scores"] == local["methods"][name]["scores"]

    # Both engines key the store the same way: the ray engine finds all the local engine computed.
    again = run(data, config, tmp_path / "again", store=FeatureStore(tmp_path / "local-store"),
                engine=RayEngine(workers=2), progress=False)
    assert again["timings"]["computed"] == {"faces": 0, "features": 0}
    assert [i["clusters"] for i in image_rows(tmp_path / "again")] == [i["clusters"] for i in local_images]


def test_ray_actors_compute_image_families_as_the_local_engine_does(tmp_path, ray_instance):
    from facecluster.config import DatasetConfig, FacesConfig, FeaturesConfig
    from facecluster.dataset import discover
    from facecluster.engines.ray import RayEngine
    from facecluster.features import make_extractor

    data = make_dataset(tmp_path / "data", {"train": {"real": 4, "fake": 4}})
    (data / "train" / "fake" / "broken.jpg").write_bytes(b"not a jpeg")
    samples = discover(data, DatasetConfig()).samples
    faces = FacesConfig(detector="none")  # no face: the whole-image families still give a vector
    extractor = make_extractor(FeaturesConfig(extractor="spectrum-full+noise+noise-full"))
    on_ray = RayEngine(workers=1).extract(samples, faces, extractor, FeatureStore(tmp_path / "ray"), progress=False)
    local = LocalEngine(workers=0).extract(samples, faces, extractor, FeatureStore(tmp_path / "local"), progress=False)
    assert on_ray.status == local.status and on_ray.status.count("no_face") == 8
    np.testing.assert_allclose(on_ray.features, local.features, atol=1e-5)  # NaN for the broken file in both
    again = RayEngine(workers=1).extract(samples, faces, extractor, FeatureStore(tmp_path / "local"), progress=False)
    assert again.computed == {"faces": 0, "features": 0}
