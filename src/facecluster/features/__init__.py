"""Feature extractors, one module per family, one registry.

An extractor turns a batch of face crops (uint8 RGB, N×S×S×3) and their face records
(see `facecluster.faces.face_record`) into float32 vectors (N×D). Its ``cache_identity()``
names everything its output depends on (model checksum, preprocessing), and keys the
feature cache; ``describe()`` is what results.json records about it; ``dim`` is its width.

Families: ``facenet`` (the study's 512-d identity embedding), ``facenet-bottleneck`` (its
1792-d layer before the projection), ``facenet-vggface2`` (the study's exact checkpoint, from
a weights file the user supplies), ``spectrum``, ``dct``, ``noise``, ``geometry`` and ``dlib``
(optional extra). Names joined by ``+`` concatenate families (see `combine`).
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from facecluster.config import FeaturesConfig


class Extractor(Protocol):
    """What every feature family provides."""

    name: str
    dim: int

    def cache_identity(self) -> dict: ...

    def describe(self) -> dict: ...

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray: ...


def _facenet(config: FeaturesConfig) -> Extractor:
    from facecluster.features.facenet import FaceNetFeatures

    return FaceNetFeatures(backend=config.backend, batch_size=config.batch_size,
                           standardization=config.standardization, precision=config.precision)


def _facenet_bottleneck(config: FeaturesConfig) -> Extractor:
    from facecluster.features.facenet import FaceNetFeatures

    return FaceNetFeatures(backend=config.backend, batch_size=config.batch_size, output="bottleneck",
                           standardization=config.standardization)


def _facenet_vggface2(config: FeaturesConfig) -> Extractor:
    from facecluster.features.vggface2 import VGGFace2Features

    return VGGFace2Features(weights=config.weights, batch_size=config.batch_size)


def _spectrum(config: FeaturesConfig) -> Extractor:
    from facecluster.features.spectrum import SpectrumFeatures

    return SpectrumFeatures()


def _dct(config: FeaturesConfig) -> Extractor:
    from facecluster.features.dct import DCTFeatures

    return DCTFeatures()


def _noise(config: FeaturesConfig) -> Extractor:
    from facecluster.features.noise import NoiseFeatures

    return NoiseFeatures()


def _geometry(config: FeaturesConfig) -> Extractor:
    from facecluster.features.geometry import GeometryFeatures

    return GeometryFeatures()


def _dlib(config: FeaturesConfig) -> Extractor:
    from facecluster.features.dlib_resnet import DlibFeatures

    return DlibFeatures()


EXTRACTORS: dict[str, Callable[[FeaturesConfig], Extractor]] = {
    "facenet": _facenet,
    "facenet-bottleneck": _facenet_bottleneck,
    "facenet-vggface2": _facenet_vggface2,
    "spectrum": _spectrum,
    "dct": _dct,
    "noise": _noise,
    "geometry": _geometry,
    "dlib": _dlib,
}


def check_extractor(extractor: str) -> None:
    """Refuse an unknown family in ``features.extractor`` (names joined by ``+``) before any work.

    Raises
    ------
    ValueError
        Naming the unknown families and the known ones.
    """
    unknown = [part.strip() for part in extractor.split("+") if part.strip() not in EXTRACTORS]
    if unknown:
        raise ValueError(f"features.extractor = {extractor!r}: {unknown} unknown; choose one of {sorted(EXTRACTORS)}")


def make_extractor(config: FeaturesConfig) -> Extractor:
    """The extractor named by ``config.extractor``; ``"a+b"`` combines families (`CombinedFeatures`).

    A combination's columns are grouped by family in ``extractor.blocks``; fit
    `facecluster.features.combine.FamilyStandardizer` on train to weight them equally.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    names = [part.strip() for part in config.extractor.split("+")]
    unknown = [name for name in names if name not in EXTRACTORS]
    if unknown:
        raise ValueError(f"features.extractor = {config.extractor!r}: {', '.join(map(repr, unknown))} unknown; "
                         f"choose one of {sorted(EXTRACTORS)}, or several joined by '+'")
    if len(names) == 1:
        return EXTRACTORS[names[0]](config)
    from facecluster.features.combine import CombinedFeatures

    return CombinedFeatures([EXTRACTORS[name](config) for name in names])
