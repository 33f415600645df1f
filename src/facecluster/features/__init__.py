"""Feature extractors, one module per family, one registry.

An extractor turns a batch of face crops (uint8 RGB, N×S×S×3) and their face records
(see `facecluster.faces.face_record`) into float32 vectors (N×D). Its ``cache_identity()``
names everything its output depends on (model checksum, preprocessing), and keys the
feature cache; ``describe()`` is what results.json records about it.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from facecluster.config import FeaturesConfig


class Extractor(Protocol):
    """What every feature family provides."""

    name: str

    def cache_identity(self) -> dict: ...

    def describe(self) -> dict: ...

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray: ...


def _facenet(config: FeaturesConfig) -> Extractor:
    from facecluster.features.facenet import FaceNetFeatures

    return FaceNetFeatures(backend=config.backend, batch_size=config.batch_size, precision=config.precision)


EXTRACTORS: dict[str, Callable[[FeaturesConfig], Extractor]] = {
    "facenet": _facenet,
}


def make_extractor(config: FeaturesConfig) -> Extractor:
    """The extractor named by ``config.extractor``.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if config.extractor not in EXTRACTORS:
        raise ValueError(f"features.extractor = {config.extractor!r} is unknown; choose one of {sorted(EXTRACTORS)}")
    return EXTRACTORS[config.extractor](config)
