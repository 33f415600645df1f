"""Dimensionality reduction, fitted on train only and applied to every split."""

from __future__ import annotations

import hashlib
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from facecluster.config import ReduceConfig


def row_hashes(X: np.ndarray) -> np.ndarray:
    """A 64-bit BLAKE2b hash of each row's bytes (float64, C order): equal rows, equal hashes."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
                     for row in X], dtype=np.uint64)


class _ShrunkSolver:
    """``v ↦ Σ⁻¹ v`` for the covariance Σ of some rows shrunk toward its mean eigenvalue (one SVD, then cheap)."""

    def __init__(self, X: np.ndarray, shrinkage: float):
        self.mean = X.mean(axis=0)
        _, singular, self.basis = np.linalg.svd(X - self.mean, full_matrices=False)
        variances = singular ** 2 / max(1, len(X) - 1)
        average = max(variances.sum() / X.shape[1], np.finfo(np.float64).tiny)
        self.inverse = 1 / ((1 - shrinkage) * variances + shrinkage * average)
        self.rest = 1 / (shrinkage * average)  # the directions the rows do not span

    def direction(self, X: np.ndarray, group: np.ndarray) -> np.ndarray:
        """The linear discriminant of ``group`` against the other rows of ``X`` (the rows it was built on)."""
        v = X[group].mean(axis=0) - X[~group].mean(axis=0)
        c = self.basis @ v
        return self.basis.T @ (c * self.inverse) + (v - self.basis.T @ c) * self.rest


def _typical_group(score: np.ndarray, random_state: int) -> np.ndarray:
    """The rows of the two-component mixture on ``score`` whose component has the higher mean."""
    mixture = GaussianMixture(2, random_state=random_state).fit(score[:, None])
    return mixture.predict(score[:, None]) == int(np.argmax(mixture.means_[:, 0]))


def _standard(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(max(values.std(), np.finfo(np.float64).tiny))


class Typicality(TransformerMixin, BaseEstimator):
    """How typical each row is: minus the log of its whitened distance from the mean, one column.

    PCA with whitening is fitted on the rows; a row's distance is the norm of its whitened
    components ``skip`` .. ``n_components`` (the leading ``skip``, where pose, lighting and
    identity vary most, are left out). A generator that samples near the centre of its latent
    space (StyleGAN's truncation) makes faces that are too average in many small directions at
    once, so fakes score high; no label is read.

    In-sample distances are biased low (the PCA was fitted to those very rows, most of all in
    its small components), so, like scikit-learn's ``TargetEncoder``, `fit_transform` scores
    each row with a PCA fitted on the other ``folds`` (cross fitting) and then fits on every row
    for `transform`: train rows and new rows are then on the same scale, and
    ``fit(X).transform(X)`` is **not** ``fit_transform(X)``. The cross-fitted values are kept
    by a hash of each train row, so `transform` gives a train row (the same folder scored again)
    its cross-fitted value, not the biased in-sample one (on a folder of 2200 faces-ffhq images,
    the in-sample values put 2193 of them in one of the two clusters).

    With ``rounds`` > 0 the typicality is **sharpened by a direction**, without labels: a
    two-component mixture on it splits the rows into a typical and an atypical group; a linear
    discriminant of the two (the total covariance shrunk by ``shrinkage`` toward its average
    variance, on the features as given) projects every row; the column becomes the sum of the
    standardised typicality and the standardised projection; the mixture splits that sum again,
    and so on until no row changes group or ``rounds`` have run. The direction reads the mean
    difference that the typical group carries beside its small spread (faces-ffhq: valid
    balanced accuracy 0.80 → 0.84); train rows are projected by directions fitted on the other
    folds, as above.

    Parameters
    ----------
    n_components : int or None, default=None
        PCA components (at most two thirds of a fold's rows, and the features); None keeps that many.
    skip : int, default=16
    folds : int, default=5
    random_state : int, default=0
        The folds' shuffle and the mixtures' initialisation (the PCA is a full SVD: no seed).
    rounds : int, default=0
        At most this many rounds of sharpening by a direction; 0 keeps the typicality alone.
    shrinkage : float, default=0.99
        The direction's covariance, shrunk this far toward its average variance (1: the mean difference).

    Attributes
    ----------
    pca_ : PCA
        Fitted on every row given to `fit` / `fit_transform`, with whitening.
    train_hashes_, train_values_ : ndarray of shape (n_train,)
        After `fit_transform`: a 64-bit hash of each train row's bytes (sorted) and its cross-fitted value.
    n_components_ : int
    skip_ : int
        ``skip``, or half of `n_components_` when the rows or features allow fewer than ``2 * skip``.
    direction_, direction_mean_ : ndarray of shape (n_features,)
        With ``rounds``: the direction fitted on every train row and the train mean it is applied from.
    rounds_ : int
        The rounds that ran (0 without ``rounds``, or when a fold's group was too small to split).
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "skip": [Interval(Integral, 0, None, closed="left")],
        "folds": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
        "rounds": [Interval(Integral, 0, None, closed="left")],
        "shrinkage": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(self, n_components=None, skip=16, folds=5, random_state=0, rounds=0, shrinkage=0.99):
        self.n_components = n_components
        self.skip = skip
        self.folds = folds
        self.random_state = random_state
        self.rounds = rounds
        self.shrinkage = shrinkage

    def _components(self, n_rows: int, n_features: int) -> None:
        """Set `n_components_` (at most the rows and features allow) and `skip_` (at most half of them)."""
        # With components near the rows, the small ones are estimated so badly that a fold's PCA and the final
        # one disagree on the scale (faces-ffhq, 1232 rows per fold: 768 components kept train and valid alike,
        # 1231 did not, valid 0.56 against train 0.79): at most two thirds of the rows.
        limit = max(1, min(2 * n_rows // 3, n_features))
        self.n_components_ = limit if self.n_components is None else min(self.n_components, limit)
        # On a small folder (fewer rows or features than the skip needs) the distance keeps half the components.
        self.skip_ = min(self.skip, self.n_components_ // 2)

    def _fit_pca(self, X: np.ndarray, k: int) -> PCA:
        # The full SVD: exact small components (the randomised solver blurs them), and no seed.
        pca = PCA(n_components=k, whiten=True, svd_solver="full").fit(X)
        # C order, as a saved model loads it (model_io): the same products, bit for bit, before and after.
        pca.components_ = np.ascontiguousarray(pca.components_)
        return pca

    def _score(self, pca: PCA, X: np.ndarray) -> np.ndarray:
        distance = np.linalg.norm(pca.transform(X)[:, self.skip_:], axis=1)
        return -np.log(np.maximum(distance, np.finfo(np.float64).tiny))[:, None]

    def fit(self, X, y=None):
        """Fit the whitened PCA on every row of X (with ``rounds``: as `fit_transform`, which the direction needs)."""
        if self.rounds:
            self.fit_transform(X)
            return self
        self._validate_params()
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        self._components(len(X), X.shape[1])
        self.pca_ = self._fit_pca(X, self.n_components_)
        self.direction_ = None
        return self

    def fit_transform(self, X, y=None):
        """Cross-fitted typicality of every row of X (see the class notes), then fit on all of X."""
        self._validate_params()
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        folds = min(self.folds, len(X))
        # The same number of components in every fold's PCA and in the final one, so the scales agree.
        self._components(len(X) - -(-len(X) // folds), X.shape[1])
        splits = list(KFold(folds, shuffle=True, random_state=self.random_state).split(X))
        out = np.empty(len(X))
        for fit_rows, held_out in splits:
            out[held_out] = self._score(self._fit_pca(X[fit_rows], self.n_components_), X[held_out])[:, 0]
        self.pca_ = self._fit_pca(X, self.n_components_)
        self.rounds_, self.direction_ = 0, None
        if self.rounds:
            out = self._sharpen(X, out, splits)
        hashes = row_hashes(X)
        order = np.argsort(hashes, kind="stable")
        self.train_hashes_, self.train_values_ = hashes[order], out[order]
        return out[:, None]

    def _sharpen(self, X: np.ndarray, typicality: np.ndarray, splits: list) -> np.ndarray:
        """The rounds of sharpening by a direction (class notes); sets the direction and both scales."""
        self.typicality_scale_ = _standard(typicality)
        standard = (typicality - self.typicality_scale_[0]) / self.typicality_scale_[1]
        solvers = [_ShrunkSolver(X[fit_rows], self.shrinkage) for fit_rows, _ in splits]
        group, projection, combined = _typical_group(standard, self.random_state), None, standard
        for _ in range(self.rounds):
            if any(min(group[fit_rows].sum(), (~group[fit_rows]).sum()) < 2 for fit_rows, _ in splits):
                break  # a fold with (almost) one group: no direction to fit
            projection = np.empty(len(X))
            for (fit_rows, held_out), solver in zip(splits, solvers):
                projection[held_out] = (X[held_out] - solver.mean) @ solver.direction(X[fit_rows], group[fit_rows])
            mean, scale = _standard(projection)
            combined = standard + (projection - mean) / scale
            self.rounds_ += 1
            regrouped = _typical_group(combined, self.random_state)
            if np.array_equal(regrouped, group):
                break
            group = regrouped
        if self.rounds_:
            solver = _ShrunkSolver(X, self.shrinkage)
            self.direction_mean_, self.direction_ = solver.mean, solver.direction(X, group)
            self.direction_scale_ = _standard((X - solver.mean) @ self.direction_)
        else:  # no round could run: the standardised typicality alone (no SVD of every row needed)
            self.direction_mean_, self.direction_ = X.mean(axis=0), np.zeros(X.shape[1])
            self.direction_scale_ = (0.0, 1.0)
        return combined

    def transform(self, X):
        """Typicality of new rows under the PCA fitted on every train row: shape (n, 1)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        out = self._score(self.pca_, X)
        if getattr(self, "direction_", None) is not None:
            projection = (X - self.direction_mean_) @ self.direction_
            out = ((out - self.typicality_scale_[0]) / self.typicality_scale_[1]
                   + (projection[:, None] - self.direction_scale_[0]) / self.direction_scale_[1])
        if getattr(self, "train_hashes_", None) is not None and len(self.train_hashes_):
            hashes = row_hashes(X)
            at = np.minimum(np.searchsorted(self.train_hashes_, hashes), len(self.train_hashes_) - 1)
            seen = self.train_hashes_[at] == hashes
            out[seen, 0] = self.train_values_[at[seen]]
        return out

    def get_feature_names_out(self, input_features=None):
        return np.array(["typicality"], dtype=object)


def make_reducer(config: ReduceConfig, seed: int = 0) -> Pipeline:
    """Standardisation (optional) then PCA (optional) or `Typicality`, as one scikit-learn pipeline."""
    steps = []
    if config.standardize:
        steps.append(("standardize", StandardScaler()))
    if config.typicality is not None:
        # Not the model's seed: the folds stay the same across restarts, so the reducer is fitted once.
        steps.append(("typicality", Typicality(n_components=config.n_components, skip=config.typicality.skip,
                                               folds=config.typicality.folds, rounds=config.typicality.rounds,
                                               shrinkage=config.typicality.shrinkage)))
    elif config.n_components is not None and config.incremental:
        steps.append(("pca", IncrementalPCA(n_components=config.n_components)))
    elif config.n_components is not None:
        steps.append(("pca", PCA(n_components=config.n_components, random_state=seed)))
    if not steps:
        steps.append(("identity", FunctionTransformer()))
    return Pipeline(steps)


def depends_on_seed(config: ReduceConfig) -> bool:
    """Whether another seed can give another reduction: PCA's randomised solver (which scikit-learn
    picks for large inputs) does; standardisation alone and `Typicality` do not."""
    return config.typicality is None and config.n_components is not None and not config.incremental


def describe_reducer(reducer: Pipeline) -> dict:
    """What a fitted reducer did: steps, and the variance PCA kept."""
    out = {"steps": [name for name, _ in reducer.steps]}
    if "pca" in reducer.named_steps:
        pca = reducer.named_steps["pca"]
        out["n_components"] = int(pca.n_components_)
        out["explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
    if "typicality" in reducer.named_steps:
        step = reducer.named_steps["typicality"]
        out["n_components"] = int(step.n_components_)
        out["typicality"] = {"skip": int(step.skip_), "folds": int(step.folds), "rounds": int(getattr(step, "rounds_", 0)),
                             "explained_variance_ratio": float(step.pca_.explained_variance_ratio_.sum())}
    return out
