"""Where feature extraction runs: the `Engine` protocol, and `make_engine` to pick one.

Two engines: ``local`` (worker processes on this machine, `facecluster.engines.local`) and
``ray`` (a Ray cluster, `facecluster.engines.ray`; Ray is an optional extra). They share the
store look-up, the dedupe by content hash and the save (`facecluster.engines.base`), so they
give the same results and reuse each other's stored face records and features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from facecluster.engines.base import Extraction

if TYPE_CHECKING:
    from facecluster.config import FacesConfig
    from facecluster.dataset import Sample
    from facecluster.features import Extractor
    from facecluster.store import FeatureStore

__all__ = ["Engine", "Extraction", "make_engine"]


@runtime_checkable
class Engine(Protocol):
    """What the orchestrators (run, sweep, audit) need from an engine."""

    name: str  #: recorded in results.json's provenance

    def extract(self, samples: list[Sample], faces_config: FacesConfig, extractor: Extractor,
                store: FeatureStore, progress: bool = True) -> Extraction:
        """Face records, statuses and feature vectors for every sample, one row each, in order:
        from ``store`` where it holds them, computed (and saved to it) otherwise."""
        ...


def make_engine(name: str = "local", workers: int | None = None, address: str | None = None) -> Engine:
    """The extraction engine called ``name``: ``local`` (default) or ``ray`` (optional extra).

    Raises
    ------
    ConfigError
        For an unknown engine name.
    """
    if name == "local":
        from facecluster.engines.local import LocalEngine

        return LocalEngine(workers)
    if name == "ray":
        from facecluster.engines.ray import RayEngine

        return RayEngine(workers=workers, address=address)
    from facecluster.config import ConfigError

    raise ConfigError(f"unknown engine {name!r}; choose 'local' or 'ray'")
