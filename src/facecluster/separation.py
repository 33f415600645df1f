"""Whether a classifier tells the labels apart: cross-validated, tested, and cached by what it saw.

The audit asks it of each view of the data (metadata, names, thumbnails). The answer depends
only on the inputs, the labels, the classifier's parameters, the seed and scikit-learn's
version, so `SeparationCache` keeps it in the feature store under a digest of all of them
(a float64 table, "audit-separations"): a re-run whose files and labels did not change
fits no classifier again, and one that changed refits only the views that changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from typing import Callable

import numpy as np

from facecluster.config import LABELS
from facecluster.store import FeatureStore

log = logging.getLogger(__name__)

FLAG_BALANCED_ACCURACY = 0.6
FLAG_P_VALUE = 1e-3
#: Bump when `oof_separation`'s computation changes: it keys the cached answers.
SEPARATION_VERSION = 1
_FIELDS = ("balanced_accuracy", "accuracy", "p_value")


def _verdict(balanced: float | None, accuracy: float | None, p_value: float | None) -> dict:
    separates = balanced is not None and balanced >= FLAG_BALANCED_ACCURACY and p_value <= FLAG_P_VALUE
    return {"balanced_accuracy": balanced, "accuracy": accuracy, "p_value": p_value, "separates": bool(separates)}


def separation_key(X: np.ndarray, y: np.ndarray, model, seed: int) -> str:
    """A digest of everything `oof_separation` depends on."""
    import sklearn

    digest = hashlib.sha256()
    settings = {"version": SEPARATION_VERSION, "sklearn": sklearn.__version__, "seed": int(seed),
                "model": type(model).__qualname__, "params": model.get_params(deep=True)}
    digest.update(json.dumps(settings, sort_keys=True, default=repr).encode())
    X = np.asarray(X)
    if X.dtype.kind in "OUS":  # texts (file names)
        digest.update(b"texts\0" + "\0".join(str(v) for v in X.tolist()).encode("utf-8", "surrogatepass"))
    else:
        digest.update(f"{X.shape}".encode() + np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update(b"\0labels\0" + "\0".join(str(v) for v in np.asarray(y).tolist()).encode())
    return digest.hexdigest()


class SeparationCache:
    """Answers of `oof_separation` kept in ``store``; new ones are written together by `flush`."""

    def __init__(self, store: FeatureStore):
        self.table = store.table("audit-separations", {"version": SEPARATION_VERSION}, dtype="float64")
        self.new: dict[str, np.ndarray] = {}

    def answer(self, X: np.ndarray, y: np.ndarray, model, seed: int, compute: Callable[[], dict]) -> dict:
        """The cached answer for these inputs, or ``compute()``'s (to be stored by `flush`)."""
        key = separation_key(X, y, model, seed)
        row = self.new.get(key)
        if row is None:
            row = self.table.get([key]).get(key)
        if row is not None:
            return _verdict(*(None if np.isnan(v) else float(v) for v in row))
        result = compute()
        row = np.array([np.nan if result[name] is None else result[name] for name in _FIELDS], dtype=np.float64)
        if np.isfinite(row).all():  # NaN stands for None in the store: only whole answers are kept
            self.new[key] = row
        return result

    def flush(self) -> None:
        """Store the answers computed since the last flush (one shard)."""
        if not self.new:
            return
        try:
            self.table.put(list(self.new), np.stack(list(self.new.values())))
        except OSError as error:  # an unwritable cache costs the next run time, never this one's audit
            log.warning("audit answers not cached in %s (%s)", self.table.folder, error)
        self.new = {}


def oof_separation(X: np.ndarray, y: np.ndarray, model, seed: int, cache: SeparationCache | None = None) -> dict:
    """Cross-validated balanced accuracy of ``model`` and the Fisher p-value of its out-of-fold predictions.

    ``separates`` when the balanced accuracy is at least `FLAG_BALANCED_ACCURACY` and the
    out-of-fold predictions are associated with the labels at p ≤ `FLAG_P_VALUE` (one-sided
    Fisher exact test). With a ``cache``, inputs seen before are answered from the store.
    """
    n_folds = int(min(5, Counter(y.tolist()).most_common()[-1][1]))
    if n_folds < 2 or len(set(y.tolist())) < 2:
        return _verdict(None, None, None)

    def compute() -> dict:
        from scipy.stats import fisher_exact
        from sklearn.metrics import accuracy_score, balanced_accuracy_score
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        predicted = cross_val_predict(model, X, y, cv=StratifiedKFold(n_folds, shuffle=True, random_state=seed))
        table = [[int(np.sum((y == a) & (predicted == b))) for b in LABELS] for a in LABELS]
        p_value = float(fisher_exact(table, alternative="greater").pvalue)
        return _verdict(float(balanced_accuracy_score(y, predicted)), float(accuracy_score(y, predicted)), p_value)

    return compute() if cache is None else cache.answer(X, y, model, seed, compute)
