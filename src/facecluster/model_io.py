"""Fitted estimators as data: JSON for structure and parameters, ``.npy`` for arrays, a SHA-256 manifest.

Nothing here executes code from a file. An estimator is written as its class *name* (one
of `ALLOWED_CLASSES`, never an import path taken from the file), its constructor
parameters (JSON values only) and its fitted attributes: arrays go to ``.npy`` files read
with ``allow_pickle=False``, scalars, lists and dicts of scalars stay in the JSON, and
fitted sub-estimators are written the same way, recursively. Attributes of any other kind
(BIRCH's CF-tree nodes, a spectral affinity matrix) are not needed to predict and are left
out; the round-trip tests prove the predictions survive bit for bit.

A bundle is a folder with ``manifest.json`` (format, version, SHA-256 of every file) and
the files it lists. `read_bundle` refuses, in one line, an unknown format or version, a
missing or extra-listed file, a path outside the folder, and any file whose checksum does
not match: a tampered array or manifest never loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, Birch, KMeans, MiniBatchKMeans, SpectralClustering
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from facecluster.cluster import AutoKClusterer, NearestCentroidClusterer, QuantileMeanShift
from facecluster.errors import ModelError
from facecluster.features.combine import FamilyStandardizer
from facecluster.labelling import AnswersClassifier
from facecluster.reduce import Typicality
from facecluster.refine import PseudoLabelRefiner
from facecluster.stream import StreamingBirch, StreamingMeanShift, StreamingMiniBatchKMeans
from facecluster.synthetic import ClusterDensity

MANIFEST = "manifest.json"

#: The only classes a bundle may name; a name outside this table is refused, never imported.
ALLOWED_CLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    Pipeline, StandardScaler, PCA, IncrementalPCA, FunctionTransformer, FamilyStandardizer,
    QuantileMeanShift, Birch, KMeans, MiniBatchKMeans, GaussianMixture, AgglomerativeClustering,
    SpectralClustering, HDBSCAN, NearestCentroidClusterer, AutoKClusterer,
    StreamingBirch, StreamingMiniBatchKMeans, StreamingMeanShift, ClusterDensity, PseudoLabelRefiner, AnswersClassifier,
    Typicality,
)}

_ATTRIBUTE = re.compile(r"_?[a-z][a-z0-9_]*")
_ARRAY_FILE = re.compile(r"arrays/[a-z0-9_.-]+\.npy")
_SCALARS = (bool, int, float, str, type(None))


def _is_plain(value: Any) -> bool:
    """JSON-representable without loss: scalars and (nested) lists of scalars."""
    if isinstance(value, _SCALARS):
        return not (isinstance(value, float) and not np.isfinite(value))
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return False


class _Writer:
    """Collects arrays under unique file names while estimators are encoded."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, value: np.ndarray, hint: str) -> dict:
        name = f"arrays/{len(self.arrays):03d}-{re.sub(r'[^a-z0-9_]+', '', hint.lower())[:40]}.npy"
        self.arrays[name] = np.ascontiguousarray(value)
        return {"array": name}

    def value(self, value: Any, hint: str) -> dict | None:
        """The JSON form of one attribute value, or None when it is not data we keep."""
        if isinstance(value, BaseEstimator):
            return {"estimator": self.estimator(value, hint)}
        if isinstance(value, np.ndarray):
            return self.array(value, hint) if value.dtype.kind in "biuf" else None
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            return {"float": repr(value)}
        if _is_plain(value):
            return {"json": list(value) if isinstance(value, tuple) else value}
        if isinstance(value, dict) and all(isinstance(k, _SCALARS) and _is_plain(v if not isinstance(v, np.generic)
                                           else v.item()) for k, v in value.items()):
            return {"pairs": [[k, v.item() if isinstance(v, np.generic) else v] for k, v in value.items()]}
        return None

    def estimator(self, estimator: BaseEstimator, hint: str = "") -> dict:
        """An estimator's class name, parameters and fitted state."""
        name = type(estimator).__name__
        if ALLOWED_CLASSES.get(name) is not type(estimator):
            raise ModelError(f"{name}: this estimator cannot be saved (not one facecluster can load); "
                             "use a registered reducer or clusterer")
        if isinstance(estimator, Pipeline):
            return {"class": name, "steps": [[step, self.estimator(est, f"{hint}{step}")]
                                             for step, est in estimator.steps]}
        params = estimator.get_params(deep=False)
        encoded_params = {}
        for key, value in params.items():
            encoded = self.value(value, f"{hint}{key}")
            if encoded is None:
                raise ModelError(f"{name}: parameter {key} = {value!r} is not data and cannot be saved")
            encoded_params[key] = encoded
        state = {}
        for key, value in vars(estimator).items():
            if key in params or not _ATTRIBUTE.fullmatch(key):
                continue
            encoded = self.value(value, f"{hint}{key}")
            if encoded is not None:
                state[key] = encoded
        return {"class": name, "params": encoded_params, "state": state}


class _Reader:
    """Rebuilds estimators from their JSON form and the bundle's arrays."""

    def __init__(self, arrays: dict[str, np.ndarray], source: str):
        self.arrays = arrays
        self.source = source

    def value(self, encoded: Any) -> Any:
        if not isinstance(encoded, dict) or len(encoded) != 1:
            raise ModelError(f"{self.source}: malformed value {str(encoded)[:60]!r}; the model file is damaged")
        (kind, value), = encoded.items()
        if kind == "json":
            return value
        if kind == "float":
            if value not in ("nan", "inf", "-inf"):
                raise ModelError(f"{self.source}: malformed number {value!r}; the model file is damaged")
            return float(value)
        if kind == "pairs":
            return {k: v for k, v in value}
        if kind == "array":
            if value not in self.arrays:
                raise ModelError(f"{self.source}: array {value} is not in the manifest; the model is incomplete")
            return self.arrays[value]
        if kind == "estimator":
            return self.estimator(value)
        raise ModelError(f"{self.source}: unknown value kind {kind!r}; the model file is damaged")

    def estimator(self, encoded: dict) -> BaseEstimator:
        name = encoded.get("class") if isinstance(encoded, dict) else None
        cls = ALLOWED_CLASSES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ModelError(f"{self.source}: estimator class {name!r} is not one facecluster loads; refused")
        if cls is Pipeline:
            return Pipeline([(str(step), self.estimator(spec)) for step, spec in encoded.get("steps", [])])
        params = {key: self.value(v) for key, v in encoded.get("params", {}).items()}
        try:
            estimator = cls(**params)
        except TypeError as error:
            raise ModelError(f"{self.source}: {name}: {error}; the model was written by another version") from None
        for key, value in encoded.get("state", {}).items():
            if not _ATTRIBUTE.fullmatch(key) or key in params or callable(getattr(cls, key, None)):
                raise ModelError(f"{self.source}: {name}: attribute {key!r} refused")
            setattr(estimator, key, self.value(value))
        return estimator


def encode_estimators(estimators: dict[str, BaseEstimator]) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON form of several named estimators, and the arrays their JSON refers to."""
    writer = _Writer()
    encoded = {name: writer.estimator(est, f"{name}-") for name, est in estimators.items()}
    return encoded, writer.arrays


def decode_estimators(encoded: dict, arrays: dict[str, np.ndarray], source: str) -> dict[str, BaseEstimator]:
    """The estimators written by `encode_estimators`."""
    reader = _Reader(arrays, source)
    return {name: reader.estimator(spec) for name, spec in encoded.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bundle(folder: Path, documents: dict[str, dict], arrays: dict[str, np.ndarray], *,
                 format_name: str, format_version: int) -> None:
    """Write JSON ``documents`` and ``arrays`` into ``folder`` with a manifest, replacing it whole.

    The bundle is built in a temporary folder beside ``folder`` and renamed into place, so a
    reader never sees half a model.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, document in documents.items():
            (tmp / name).write_text(json.dumps(document, indent=2, sort_keys=False), encoding="utf-8")
        if arrays:
            (tmp / "arrays").mkdir()
        for name, array in arrays.items():
            np.save(tmp / name, array, allow_pickle=False)
        files = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"format": format_name, "format_version": format_version, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.chmod(tmp, 0o755)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_bundle(folder: Path, *, format_name: str, format_versions: tuple[int, ...]) -> tuple[dict, dict, dict]:
    """The manifest, JSON documents and arrays of a bundle, every file checked against the manifest.

    Raises
    ------
    ModelError
        One line naming the folder and what is wrong (missing, unknown format or version,
        checksum mismatch, a path outside the folder).
    """
    folder = Path(folder)
    where = str(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{where}: no {MANIFEST}; not a facecluster model folder (make one with `facecluster fit`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{where}/{MANIFEST}: unreadable ({error}); the model is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        raise ModelError(f"{where}: not a {format_name} (manifest format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("format_version") not in format_versions:
        raise ModelError(f"{where}: model format version {manifest.get('format_version')!r} is not one this "
                         f"facecluster reads ({', '.join(map(str, format_versions))}); upgrade facecluster or re-fit")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelError(f"{where}/{MANIFEST}: lists no files; the model is damaged")
    documents, arrays = {}, {}
    for name, expected in files.items():
        if not isinstance(name, str) or not (re.fullmatch(r"[a-z0-9_.-]+\.json", name) or _ARRAY_FILE.fullmatch(name)):
            raise ModelError(f"{where}: manifest names {name!r}, not a model file; refused")
        path = folder / name
        if not path.is_file() or path.is_symlink():
            raise ModelError(f"{where}: {name} is listed in the manifest but missing; the model is incomplete")
        if _sha256(path) != expected:
            raise ModelError(f"{where}: {name} does not match its SHA-256 in the manifest; the model was "
                             "changed after it was saved, refused")
        try:
            if name.endswith(".json"):
                documents[name] = json.loads(path.read_text(encoding="utf-8"))
            else:
                arrays[name] = np.load(path, allow_pickle=False)
        except (ValueError, OSError, UnicodeDecodeError) as error:
            raise ModelError(f"{where}: {name}: unreadable ({error}); the model is damaged") from None
    return manifest, documents, arrays
