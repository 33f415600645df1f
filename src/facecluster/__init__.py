"""facecluster: cluster face embeddings and measure how well clusters separate real from fake faces."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Names are imported on first use (PEP 562), so that a process that needs one part — a worker
# process decoding and detecting faces — does not load scikit-learn, SciPy and matplotlib.
_EXPORTS = {
    "CLUSTERERS": "cluster", "QuantileMeanShift": "cluster", "make_clusterer": "cluster",
    "Config": "config", "ConfigError": "errors", "build_config": "resolve", "load_config": "resolve",
    "Dataset": "dataset", "DatasetError": "dataset", "Sample": "dataset", "discover": "dataset",
    "majority_mapping": "evaluate", "score": "evaluate",
    "run": "pipeline",
    "FaceModel": "model", "load_model": "scoring", "FittedModel": "scoring", "ModelError": "errors",
    "FeatureStore": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"facecluster.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'facecluster' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
