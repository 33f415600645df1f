"""Typed experiment configuration, the study preset, and TOML loading.

Every setting of a run lives here, with its default. A TOML file overrides any of them
with the same nesting (a ``[methods]`` table replaces the preset's methods as a whole: the
methods a file lists are the methods that run), for example::

    [faces]
    margin = 0.3

    [methods.birch]
    threshold = 0.05

Unknown keys, wrong types and out-of-range values are refused with a message that names
the key and what is allowed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

LABELS = ("real", "fake")


STUDY_METHODS = {
    "meanshift": {"algorithm": "meanshift", "params": {"quantile": 0.0855}},
    "birch": {"algorithm": "birch", "params": {"n_clusters": 4, "threshold": 0.08}},
}


#: Each detector's own confidence floor: YuNet's scores run lower than MTCNN's for the same faces.
DETECTOR_MIN_CONFIDENCE = {"mtcnn": 0.9, "yunet": 0.5, "none": 0.0}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetConfig(_Strict):
    """How a folder (or CSV) of images is read and split."""

    label_names: dict[str, Literal["real", "fake"]] = Field(
        default_factory=dict,
        description="Extra folder names mapped to a label, e.g. {'gan' = 'fake', 'photo' = 'real'}.",
    )
    train_fraction: float = Field(
        0.7, gt=0.0, lt=1.0, description="Share of each label put in train when the data has no splits."
    )


class FacesConfig(_Strict):
    """Face detection and cropping before the embedding."""

    detector: Literal["mtcnn", "yunet", "none"] = Field(
        "mtcnn", description="mtcnn (the study's), yunet (several times faster) or none (centre crops)."
    )
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0,
        description="Detections below it are ignored; none uses the detector's own (mtcnn 0.9, yunet 0.5).",
    )
    margin: float = Field(
        0.2, ge=0.0, le=2.0, description="Margin added around the face box, as a fraction of its size."
    )
    size: int = Field(160, ge=32, le=1024, description="Side of the square face crop, in pixels.")
    detect_side: int = Field(
        160, ge=32, le=4096, description="yunet only: longer side of the downscaled copy it detects on."
    )


    @property
    def confidence_threshold(self) -> float:
        """``min_confidence``, or the detector's default when it is not set (scores differ by detector)."""
        if self.min_confidence is not None:
            return self.min_confidence
        return DETECTOR_MIN_CONFIDENCE[self.detector]


class FeaturesConfig(_Strict):
    """Which feature extractor runs on the face crops."""

    extractor: str = "facenet"
    backend: Literal["auto", "onnx", "opencv"] = "auto"
    batch_size: int = Field(32, ge=1, le=4096)
    precision: Literal["fp32", "bf16", "int8"] = Field(
        "fp32", description="Model precision: fp32 (the study's), int8 (about 2x faster, measured close to fp32)."
    )


class ReduceConfig(_Strict):
    """Dimensionality reduction fitted on train only."""

    standardize: bool = False
    n_components: int | None = Field(2, ge=1, description="PCA components; none keeps all dimensions.")


class MethodConfig(_Strict):
    """One clustering method: an algorithm from the registry and its parameters."""

    algorithm: str
    params: dict[str, Any] = Field(default_factory=dict)
    mapping: dict[str, Literal["real", "fake"]] | None = Field(
        None,
        description="Manual cluster → label mapping (cluster id as a string); none maps by train majority.",
    )


class ReportConfig(_Strict):
    """Figures written into the run directory."""

    montage_size: int = Field(30, ge=1, le=400, description="Faces per cluster montage.")
    thumbnail: int = Field(64, ge=16, le=256, description="Side of one face in a montage, in pixels.")


class Config(_Strict):
    """A whole run's settings."""

    seed: int = 0
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    reduce: ReduceConfig = Field(default_factory=ReduceConfig)
    methods: dict[str, MethodConfig] = Field(
        default_factory=lambda: {name: MethodConfig(**m) for name, m in STUDY_METHODS.items()}
    )
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _methods_known(self) -> "Config":
        from facecluster.cluster import CLUSTERERS

        for name, method in self.methods.items():
            if method.algorithm not in CLUSTERERS:
                raise ValueError(
                    f"methods.{name}.algorithm = {method.algorithm!r} is unknown; "
                    f"choose one of {sorted(CLUSTERERS)}"
                )
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # The original study: FaceNet 512-d on MTCNN crops, PCA to 2-D fitted on train,
    # Mean-Shift (bandwidth quantile 0.0855) and BIRCH (4 clusters, threshold 0.08).
    "study": {
        "faces": {"detector": "mtcnn"},
        "features": {"extractor": "facenet"},
        "reduce": {"standardize": False, "n_components": 2},
        "methods": STUDY_METHODS,
    },
}


class ConfigError(ValueError):
    """A configuration the user gave cannot be used; the message says which key and why."""


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{source}: {key}: {message}")
    return "; ".join(lines)


def build_config(preset: str | None = "study", overrides: dict[str, Any] | None = None,
                 source: str = "config") -> Config:
    """Resolve a preset and overrides into a validated `Config`.

    Raises
    ------
    ConfigError
        On an unknown preset, key, type or value; the message names it.
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    base = dict(PRESETS[preset]) if preset else {}
    if "methods" in (overrides or {}):
        base.pop("methods", None)  # the methods a file lists are the methods that run
    data = _merge(base, overrides or {})
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_config(path: Path | None, preset: str | None = "study") -> Config:
    """Read a TOML file (if any) over a preset."""
    overrides: dict[str, Any] = {}
    if path is not None:
        try:
            overrides = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found; check the path") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML ({error}); fix the syntax") from None
    return build_config(preset, overrides, source=str(path) if path else "config")


def dump_config(config: Config) -> str:
    """The resolved config as TOML text, loadable with `load_config(path, preset=None)`."""
    data = config.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)
