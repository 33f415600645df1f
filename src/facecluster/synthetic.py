"""A per-image synthetic score in [0, 1] from named clusters: how far into the "fake" clusters a face sits.

Hard clusters give every member of a cluster the same label. The score ranks faces within and
across clusters instead, in three steps:

1. `ClusterDensity` (fitted on train without labels, with the clusterer) models each cluster
   as an isotropic Gaussian in the reduced space: its train members' mean, their mean squared
   distance per dimension, and its share of train.
2. `ClusterDensity.log_odds` compares, for one face, the clusters named fake against those
   named real: the log of (fake clusters' density) / (real clusters' density), each cluster's
   log-density divided by the number of dimensions (a per-dimension, *tempered* likelihood:
   untempered, a 32-d Gaussian gives 0 or 1 to almost every face and the ranking is lost).
3. `calibrate` maps the log-odds to a probability with a 1-d logistic regression (Platt
   scaling) on the labelled train faces, when there are labels of both kinds; without labels
   (clusters named by hand) the score is the logistic of the log-odds itself, uncalibrated.

The score follows the cluster names: renaming clusters changes it, refitting nothing.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logsumexp
from sklearn.base import BaseEstimator

#: The smallest per-dimension variance a cluster may have (a cluster of identical points).
MIN_VARIANCE = 1e-12


class ClusterDensity(BaseEstimator):
    """One isotropic Gaussian per cluster, fitted on the clustered train rows (noise, -1, left out).

    Attributes
    ----------
    clusters_ : ndarray of int (K,)
        The cluster ids, sorted.
    means_ : ndarray (K, d)
    log_variances_ : ndarray (K,)
        Log of each cluster's mean squared distance to its mean, per dimension.
    log_weights_ : ndarray (K,)
        Log of each cluster's share of the clustered train rows.
    """

    def fit(self, reduced: np.ndarray, clusters: np.ndarray) -> "ClusterDensity":
        reduced = np.asarray(reduced, dtype=np.float64)
        clusters = np.asarray(clusters)
        kept = clusters >= 0
        ids = np.unique(clusters[kept])
        if len(ids) == 0:
            raise ValueError("no clustered rows to fit the cluster densities on")
        d = reduced.shape[1]
        means, variances, counts = [], [], []
        floor = max(float(np.var(reduced[kept], axis=0).mean()) * 1e-6, MIN_VARIANCE)
        for cluster in ids:
            members = reduced[clusters == cluster]
            mean = members.mean(axis=0)
            means.append(mean)
            variances.append(max(float(((members - mean) ** 2).sum(axis=1).mean()) / d, floor))
            counts.append(len(members))
        self.clusters_ = ids.astype(np.int64)
        self.means_ = np.array(means)
        self.log_variances_ = np.log(np.array(variances))
        self.log_weights_ = np.log(np.array(counts, dtype=np.float64) / sum(counts))
        return self

    def log_densities(self, reduced: np.ndarray) -> np.ndarray:
        """Per row and cluster: the tempered log-density (per dimension) plus the cluster's log weight. N × K."""
        reduced = np.asarray(reduced, dtype=np.float64)
        d = reduced.shape[1]
        squared = ((reduced[:, None, :] - self.means_[None, :, :]) ** 2).sum(axis=2)
        per_dimension = -0.5 * (self.log_variances_[None, :] + squared / (d * np.exp(self.log_variances_)[None, :]))
        return per_dimension + self.log_weights_[None, :]

    def log_odds(self, reduced: np.ndarray, fake_clusters) -> np.ndarray:
        """Log of the fake clusters' density over the real clusters'; ±inf when one side is empty, NaN rows stay NaN."""
        fake = np.isin(self.clusters_, np.asarray(list(fake_clusters), dtype=np.int64))
        out = np.full(len(reduced), np.nan)
        rows = np.isfinite(reduced).all(axis=1)
        if not rows.any():
            return out
        if fake.all() or not fake.any():
            out[rows] = np.inf if fake.all() else -np.inf
            return out
        dens = self.log_densities(reduced[rows])
        out[rows] = logsumexp(dens[:, fake], axis=1) - logsumexp(dens[:, ~fake], axis=1)
        return out


def calibrate(log_odds: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """Platt scaling (slope, intercept) of ``log_odds`` against ``labels`` ("fake" is 1); None without both labels."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels, dtype=object)
    rows = np.isfinite(log_odds) & np.isin(labels, ["real", "fake"])
    y = labels[rows] == "fake"
    if rows.sum() < 2 or y.all() or not y.any():
        return None
    fit = LogisticRegression(C=1e6).fit(log_odds[rows].reshape(-1, 1), y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def probability(log_odds: np.ndarray, calibration: tuple[float, float] | None) -> np.ndarray:
    """The synthetic score in [0, 1]: the calibrated (or plain) logistic of the log-odds; NaN stays NaN."""
    slope, intercept = calibration if calibration is not None else (1.0, 0.0)
    out = np.full(len(log_odds), np.nan)
    finite = np.isfinite(log_odds)
    out[finite] = expit(slope * log_odds[finite] + intercept)
    out[np.isposinf(log_odds)] = 1.0  # every cluster named fake
    out[np.isneginf(log_odds)] = 0.0  # every cluster named real
    return out
