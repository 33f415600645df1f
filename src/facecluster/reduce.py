"""Dimensionality reduction, fitted on train only and applied to every split."""

from __future__ import annotations

from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from facecluster.config import ReduceConfig


def make_reducer(config: ReduceConfig, seed: int = 0) -> Pipeline:
    """Standardisation (optional) then PCA (optional), as one scikit-learn pipeline."""
    steps = []
    if config.standardize:
        steps.append(("standardize", StandardScaler()))
    if config.n_components is not None and config.incremental:
        steps.append(("pca", IncrementalPCA(n_components=config.n_components)))
    elif config.n_components is not None:
        steps.append(("pca", PCA(n_components=config.n_components, random_state=seed)))
    if not steps:
        steps.append(("identity", FunctionTransformer()))
    return Pipeline(steps)


def describe_reducer(reducer: Pipeline) -> dict:
    """What a fitted reducer did: steps, and the variance PCA kept."""
    out = {"steps": [name for name, _ in reducer.steps]}
    if "pca" in reducer.named_steps:
        pca = reducer.named_steps["pca"]
        out["n_components"] = int(pca.n_components_)
        out["explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
    return out
