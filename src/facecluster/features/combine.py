"""Several feature families side by side, each given the same weight.

An extractor named ``"spectrum+dct+geometry"`` concatenates the raw vectors of its members
(that is what is cached). Standardisation is a learned step, so it cannot happen in the
extractor: `FamilyStandardizer` (a scikit-learn transformer) is fitted on train only, as
the first step of the reducer (`standardize_families`). It centres and scales every column
to unit variance, then divides each family's columns by the square root of the family's
width, so that every family contributes the same total variance whatever its
dimension (1792 FaceNet values do not drown 15 geometry values).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from facecluster.features.base import check_crops
from facecluster.features.image import reads_image


class CombinedFeatures:
    """The concatenation of several extractors' outputs, in the order given.

    Attributes
    ----------
    blocks : list of (name, start, stop)
        Which columns come from which family.
    """

    version = 1

    def __init__(self, members: list):
        if len(members) < 2:
            raise ValueError("a combination needs at least two feature families")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"feature family listed twice in {'+'.join(names)!r}")
        self.members = members
        self.name = "+".join(names)
        self.blocks: list[tuple[str, int, int]] = []
        start = 0
        for member in members:
            self.blocks.append((member.name, start, start + member.dim))
            start += member.dim

    @property
    def dim(self) -> int:
        return self.blocks[-1][2]

    @property
    def reads_image(self) -> bool:
        """True when a member reads the decoded image (see `facecluster.features.image`)."""
        return any(reads_image(m) for m in self.members)

    def cache_identity(self) -> dict:
        return {"extractor": self.name, "version": self.version,
                "members": [m.cache_identity() for m in self.members]}

    def describe(self) -> dict:
        return {"extractor": self.name, "version": self.version, "dim": self.dim,
                "blocks": [{"family": n, "start": a, "stop": b} for n, a, b in self.blocks],
                "standardization": "per family, fitted on train (FamilyStandardizer)",
                "members": [m.describe() for m in self.members]}

    def transform(self, crops: np.ndarray, records: np.ndarray, image_vectors: np.ndarray | None = None) -> np.ndarray:
        """Each member's features, concatenated: float32 N×``dim``.

        ``image_vectors`` are what `facecluster.features.image.image_reader` gave for each row
        (the image families' vectors side by side, in member order); crop families read ``crops``.
        """
        crops = check_crops(crops, records)
        parts, offset = [], 0
        for member in self.members:
            if reads_image(member):
                own = None if image_vectors is None else np.asarray(image_vectors)[:, offset:offset + member.dim]
                parts.append(member.transform(crops, records, image_vectors=own))
                offset += member.dim
            else:
                parts.append(member.transform(crops, records))
        return np.concatenate(parts, axis=1).astype(np.float32)


class FamilyStandardizer(TransformerMixin, BaseEstimator):
    """Standardise columns, then weight each block of columns by 1/√(its width).

    Parameters
    ----------
    blocks : list of (name, start, stop)
        Column ranges, one per family, covering every column.
    """

    def __init__(self, blocks):
        self.blocks = blocks

    def fit(self, X, y=None):
        for attr in ("n_samples_seen_", "sum_", "sum_squares_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(X)

    def partial_fit(self, X, y=None):
        """Add a chunk of rows to the running column sums (for features that do not fit in memory)."""
        X = np.asarray(X, dtype=np.float64)
        stop = max(b[2] for b in self.blocks)
        if X.shape[1] != stop:
            raise ValueError(f"features have {X.shape[1]} columns but the families cover {stop}")
        if not hasattr(self, "n_samples_seen_"):
            self.n_samples_seen_, self.sum_, self.sum_squares_ = 0, np.zeros(stop), np.zeros(stop)
            self.shift_ = X[0].copy()  # sums of shifted values keep the variance exact for large means
        shifted = X - self.shift_
        self.n_samples_seen_ += len(X)
        self.sum_ += shifted.sum(axis=0)
        self.sum_squares_ += (shifted ** 2).sum(axis=0)
        mean_shifted = self.sum_ / self.n_samples_seen_
        self.mean_ = self.shift_ + mean_shifted
        scale = np.sqrt(np.maximum(self.sum_squares_ / self.n_samples_seen_ - mean_shifted ** 2, 0.0))
        scale[scale < 1e-12] = 1.0  # a constant column stays 0, never NaN
        weights = np.empty(stop)
        for _, start, end in self.blocks:
            weights[start:end] = 1.0 / np.sqrt(end - start)
        self.scale_ = scale / weights
        self.n_features_in_ = stop
        return self

    def transform(self, X):
        check_is_fitted(self, "scale_")
        return (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_


def standardize_families(reducer: Pipeline, blocks) -> Pipeline:
    """``reducer`` with a `FamilyStandardizer` first when ``blocks`` (an extractor's families) are given."""
    if not blocks:
        return reducer
    return Pipeline([("families", FamilyStandardizer(blocks)), *reducer.steps])
