"""Feature combinations: raw concatenation cached, per-family standardisation fitted on train only."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline

from facecluster.config import FeaturesConfig, ReduceConfig
from facecluster.engines.local import LocalEngine
from facecluster.features import make_extractor
from facecluster.features.combine import CombinedFeatures, FamilyStandardizer, standardize_families
from facecluster.pipeline import run
from facecluster.reduce import make_reducer
from facecluster.resolve import build_config
from facecluster.store import FeatureStore

from .test_features_handcrafted import batch, records


def test_combination_concatenates_its_members_in_order():
    combined = make_extractor(FeaturesConfig(extractor="spectrum+dct+geometry"))
    assert isinstance(combined, CombinedFeatures) and combined.name == "spectrum+dct+geometry"
    assert combined.blocks == [("spectrum", 0, 80), ("dct", 80, 208), ("geometry", 208, 223)]
    crops, rec = batch(3), records(3)
    parts = [make_extractor(FeaturesConfig(extractor=n)).transform(crops, rec) for n in ("spectrum", "dct", "geometry")]
    out = combined.transform(crops, rec)
    assert out.dtype == np.float32 and out.shape == (3, combined.dim)
    np.testing.assert_array_equal(out, np.concatenate(parts, axis=1))
    identity = combined.cache_identity()
    assert [m["extractor"] for m in identity["members"]] == ["spectrum", "dct", "geometry"]
    assert identity != make_extractor(FeaturesConfig(extractor="dct+spectrum+geometry")).cache_identity()


def test_a_family_listed_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        make_extractor(FeaturesConfig(extractor="dct+dct"))


def test_family_standardizer_weights_every_family_equally_with_train_statistics():
    rng = np.random.default_rng(0)
    train = np.hstack([rng.normal(5, 100, (200, 40)), rng.normal(-2, 0.01, (200, 2)), np.ones((200, 1))])
    blocks = [("wide", 0, 40), ("narrow", 40, 42), ("constant", 42, 43)]
    scaler = FamilyStandardizer(blocks).fit(train)
    out = scaler.transform(train)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-9)
    assert out[:, :40].var(axis=0).sum() == pytest.approx(1.0)  # a family's total variance is 1
    assert out[:, 40:42].var(axis=0).sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(out[:, 42], 0.0)  # constant column: 0, not NaN
    other = scaler.transform(train + 50)  # statistics stay the train ones
    assert (other[:, :40].mean(axis=0) > 0).all()
    with pytest.raises(ValueError, match="43 columns"):
        FamilyStandardizer(blocks[:2] + [("x", 42, 50)]).fit(train)


def test_standardize_families_prepends_only_for_combinations():
    reducer = make_reducer(ReduceConfig(n_components=2))
    single = make_extractor(FeaturesConfig(extractor="spectrum"))
    assert standardize_families(reducer, getattr(single, "blocks", None)) is reducer
    combined = make_extractor(FeaturesConfig(extractor="spectrum+geometry"))
    steps = standardize_families(reducer, combined.blocks)
    assert isinstance(steps, Pipeline) and [name for name, _ in steps.steps] == ["families", "pca"]
    assert isinstance(steps.named_steps["pca"], PCA)


def test_pipeline_runs_a_combination_on_aligned_crops(tiny_dataset, tmp_path):
    config = build_config("study", {"features": {"extractor": "spectrum+geometry"}, "faces": {"crop": "aligned"},
                                    "reduce": {"n_components": 2},
                                    "methods": {"kmeans": {"algorithm": "kmeans", "params": {"n_clusters": 2}}}})
    results = run(tiny_dataset, config, tmp_path / "run", store=FeatureStore(tmp_path / "cache"),
                  engine=LocalEngine(workers=0), progress=False)
    assert results["features"]["extractor"] == "spectrum+geometry" and results["features"]["dim"] == 95
    assert results["reduce"]["steps"] == ["families", "pca"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["provenance"]["config"]["faces"]["crop"] == "aligned"
    assert results["methods"]["kmeans"]["scores"]["valid"]["n"] == 12


def test_every_family_names_a_known_cue_type():
    from facecluster.features import CUE_TYPES, CUES, EXTRACTORS, cues_of

    assert set(CUES) == set(EXTRACTORS), "a registered family without a cue type, or a cue for no family"
    assert set(CUES.values()) <= set(CUE_TYPES)
    assert cues_of("facenet+spectrum+dct+geometry") == ["identity", "generator-artifact", "generation-pipeline"]
