"""Feature extractors, one module per family, one registry.

An extractor turns a batch of face crops (uint8 RGB, N×S×S×3) and their face records
(see `facecluster.faces.face_record`) into float32 vectors (N×D). A family that reads the
decoded image at the file's own resolution instead declares ``reads_image = True`` and
computes its vector image by image where the image is decoded (see `facecluster.features.image`). Its ``cache_identity()``
names everything its output depends on (model checksum, preprocessing), and keys the
feature cache; ``describe()`` is what results.json records about it; ``dim`` is its width.

Families: ``facenet`` (the study's 512-d identity embedding), ``facenet-bottleneck`` (its
1792-d layer before the projection), ``facenet-vggface2`` (the study's exact checkpoint, from
a weights file the user supplies), ``spectrum``, ``dct``, ``noise``, ``geometry``, ``eyes`` (eye physiology, from MediaPipe's face
mesh and iris models shipped in the package) and ``dlib`` (optional extra); ``spectrum-full``, ``dct-full`` and
``noise-full`` read the whole decoded image. Names joined by ``+`` concatenate families (see `combine`).
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


def _spectrum_full(config: FeaturesConfig) -> Extractor:
    from facecluster.features.spectrum_full import SpectrumFullFeatures

    return SpectrumFullFeatures()


def _dct_full(config: FeaturesConfig) -> Extractor:
    from facecluster.features.dct_full import DCTFullFeatures

    return DCTFullFeatures()


def _noise_full(config: FeaturesConfig) -> Extractor:
    from facecluster.features.noise_full import NoiseFullFeatures

    return NoiseFullFeatures()


def _geometry(config: FeaturesConfig) -> Extractor:
    from facecluster.features.geometry import GeometryFeatures

    return GeometryFeatures()


def _eyes(config: FeaturesConfig) -> Extractor:
    from facecluster.features.eyes import EyeFeatures

    return EyeFeatures()


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
    "spectrum-full": _spectrum_full,
    "dct-full": _dct_full,
    "noise-full": _noise_full,
    "geometry": _geometry,
    "eyes": _eyes,
    "dlib": _dlib,
}


# What each family's separation can rest on (the cue type), so every result can name it:
# ``identity`` (who the face looks like), ``generator-artifact`` (pixel statistics a generator
# leaves, which the processing history of the file also moves), ``processing-history`` (the
# file's re-encoding and resampling), ``generation-pipeline`` (how the pipeline framed and
# aligned the face), ``physiological`` (physical consistency of the face itself).
CUE_TYPES = ("identity", "generator-artifact", "processing-history", "generation-pipeline", "physiological")
CUES: dict[str, str] = {
    "facenet": "identity",
    "facenet-bottleneck": "identity",
    "facenet-vggface2": "identity",
    "dlib": "identity",
    "spectrum": "generator-artifact",
    "dct": "generator-artifact",
    "noise": "generator-artifact",
    "spectrum-full": "generator-artifact",
    "dct-full": "processing-history",  # on the file's own JPEG grid: the coefficients the file stores
    "noise-full": "generator-artifact",
    "geometry": "generation-pipeline",
    "eyes": "physiological",
}


def cues_of(extractor: str) -> list[str]:
    """The cue types a (possibly ``+``-joined) extractor name rests on, in first-seen order."""
    found: list[str] = []
    for part in extractor.split("+"):
        cue = CUES.get(part.strip())
        if cue is not None and cue not in found:
            found.append(cue)
    return found


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
