"""The pipeline's big-run settings (incremental PCA, streaming clusterers) on synthetic faces."""

import numpy as np

from facecluster.engines.local import LocalEngine
from facecluster.pipeline import run
from facecluster.resolve import build_config
from facecluster.store import FeatureStore
from tests.conftest import image_rows


def test_incremental_reduction_and_streaming_clusterers_run_the_study(tiny_dataset, tmp_path):
    store = FeatureStore(tmp_path / "store")
    methods = {"birch": {"algorithm": "birch-stream", "params": {"n_clusters": 2, "threshold": 0.01}},
               "kmeans": {"algorithm": "minibatch-kmeans-stream", "params": {"n_clusters": 2}},
               "meanshift": {"algorithm": "meanshift-stream", "params": {"quantile": 0.3}}}
    streamed = run(tiny_dataset, build_config("study", {"reduce": {"incremental": True}, "methods": methods}),
                   tmp_path / "streamed", store=store, engine=LocalEngine(workers=0), progress=False)
    run(tiny_dataset, build_config("study", {"methods": methods}), tmp_path / "exact", store=store,
        engine=LocalEngine(workers=0), progress=False)

    assert streamed["provenance"]["config"]["reduce"]["incremental"] is True
    assert streamed["reduce"]["steps"] == ["pca"] and streamed["reduce"]["n_components"] == 2
    a, b = np.load(tmp_path / "streamed" / "reduced.npy"), np.load(tmp_path / "exact" / "reduced.npy")
    for k in range(2):  # IncrementalPCA finds the same plane as PCA, up to the sign of each axis
        assert min(np.abs(a[:, k] - b[:, k]).max(), np.abs(a[:, k] + b[:, k]).max()) < 0.02 * np.abs(b[:, k]).max()
    for name in methods:
        method = streamed["methods"][name]
        assert 1 <= method["n_clusters"] <= 8
        assert all(image["clusters"][name] is not None for image in image_rows(tmp_path / "streamed"))
        assert set(method["scores"]) == {"train", "valid"}
