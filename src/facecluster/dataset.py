"""Find the images of a dataset, their labels and splits.

Two layouts are read:

* folders, ``<root>/<split>/<label>/<image>`` (the study's), or ``<root>/<label>/<image>``
  when the data ships without splits; it is then split for the user, stratified and
  deterministic by content hash (a renamed file stays on its side);
* a CSV file with the columns ``path,label[,split]``, paths relative to the CSV.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from facecluster.config import LABELS, DatasetConfig

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid", "test": "test"}
DEFAULT_LABEL_NAMES = {"real": "real", "fake": "fake"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


class DatasetError(ValueError):
    """The dataset cannot be read as given; the message says what was found and the fix."""


@dataclass(frozen=True)
class Sample:
    """One input image: where it is, its true label and the split it belongs to."""

    path: Path
    relpath: str
    label: str
    split: str
    sha256: str = ""


@dataclass
class Dataset:
    """All samples of a run, plus how the splits came about."""

    root: Path
    samples: list[Sample]
    split_source: str  # "folders", "csv", or "hash-<fraction>" when we split it
    skipped: list[dict] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        order = ["train", "valid", "test"]
        present = {s.split for s in self.samples}
        return [s for s in order if s in present]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and label: ``{split: {label: n}}``."""
        counter = Counter((s.split, s.label) for s in self.samples)
        return {split: {label: counter[(split, label)] for label in LABELS} for split in self.splits}

    def fingerprint(self) -> str:
        """A hash of every (relative path, label, split, content hash): same data, same value."""
        digest = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: s.relpath):
            digest.update(f"{s.relpath}\0{s.label}\0{s.split}\0{s.sha256}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _label_map(config: DatasetConfig) -> dict[str, str]:
    mapping = dict(DEFAULT_LABEL_NAMES)
    mapping.update({name.lower(): label for name, label in config.label_names.items()})
    return mapping


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in {"thumbs.db", "desktop.ini"}


def _images_in(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not _is_junk(d))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not _is_junk(f))
    return files


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _is_junk(p.name))


def _read_labelled(folder: Path, split: str, root: Path, labels: dict[str, str]) -> list[Sample]:
    samples = []
    found = _subdirs(folder)
    unknown = [d.name for d in found if d.name.lower() not in labels]
    if unknown:
        raise DatasetError(
            f"{folder}: unknown label folder(s) {unknown}; expected {sorted(labels)}. "
            f"Map them in the config, e.g. [dataset.label_names] {unknown[0]!r} = \"fake\""
        )
    for label_dir in found:
        for path in _images_in(label_dir):
            samples.append(Sample(path, path.relative_to(root).as_posix(), labels[label_dir.name.lower()], split))
    return samples


def _hash_split(samples: list[Sample], train_fraction: float) -> list[Sample]:
    """Split each label by the order of content hashes: deterministic and rename-proof."""
    out = []
    for label in LABELS:
        group = sorted((s for s in samples if s.label == label), key=lambda s: (s.sha256, s.relpath))
        n_train = round(train_fraction * len(group))
        out.extend(_with(s, split="train" if i < n_train else "valid") for i, s in enumerate(group))
    return out


def _with(sample: Sample, **changes) -> Sample:
    return Sample(**{**sample.__dict__, **changes})


def _hashed(samples: list[Sample]) -> list[Sample]:
    out = []
    for s in samples:
        try:
            out.append(_with(s, sha256=file_sha256(s.path)))
        except OSError:
            out.append(s)  # unreadable: reported later by the decoder, never dropped
    return out


def _from_folders(root: Path, config: DatasetConfig) -> Dataset:
    labels = _label_map(config)
    top = _subdirs(root)
    split_dirs = [d for d in top if d.name.lower() in SPLIT_NAMES]
    label_dirs = [d for d in top if d.name.lower() in labels]
    if split_dirs:
        samples = []
        for d in split_dirs:
            samples += _read_labelled(d, SPLIT_NAMES[d.name.lower()], root, labels)
        return Dataset(root, _hashed(samples), "folders")
    if label_dirs:
        samples = _hashed(_read_labelled(root, "train", root, labels))
        return Dataset(root, _hash_split(samples, config.train_fraction), f"hash-{config.train_fraction:g}")
    raise DatasetError(
        f"{root}: found no split folders ({sorted(set(SPLIT_NAMES))}) and no label folders "
        f"({sorted(labels)}); found {[d.name for d in top][:10]}. Lay the data out as "
        "<root>/<split>/<label>/ or map the label folders with [dataset.label_names]"
    )


def _from_csv(csv_path: Path, config: DatasetConfig) -> Dataset:
    root = csv_path.parent.resolve()
    labels = _label_map(config)
    samples = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{csv_path}: missing column(s) {sorted(missing)}; the header must be path,label[,split]")
        for line, row in enumerate(reader, start=2):
            rel = (row.get("path") or "").strip()
            path = (root / rel).resolve()
            if not rel or Path(rel).is_absolute() or not path.is_relative_to(root):
                raise DatasetError(f"{csv_path}:{line}: path {rel!r} leaves the CSV's folder; use a path relative to it")
            label = labels.get((row.get("label") or "").strip().lower())
            if label is None:
                raise DatasetError(f"{csv_path}:{line}: unknown label {row.get('label')!r}; expected {sorted(labels)}")
            split = SPLIT_NAMES.get((row.get("split") or "train").strip().lower())
            if split is None:
                raise DatasetError(f"{csv_path}:{line}: unknown split {row.get('split')!r}; expected {sorted(SPLIT_NAMES)}")
            samples.append(Sample(path, Path(rel).as_posix(), label, split))
    has_splits = "split" in (reader.fieldnames or [])
    samples = _hashed(samples)
    if not has_splits:
        return Dataset(root, _hash_split(samples, config.train_fraction), f"hash-{config.train_fraction:g}")
    return Dataset(root, samples, "csv")


def discover(source: Path, config: DatasetConfig | None = None) -> Dataset:
    """Read a dataset from a folder or a CSV file.

    Raises
    ------
    DatasetError
        When the layout cannot be understood, with what was found and how to fix it.
    """
    config = config or DatasetConfig()
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or folder; give the dataset's root folder or a CSV file")
    dataset = _from_csv(source, config) if source.is_file() else _from_folders(source.resolve(), config)
    if not dataset.samples:
        raise DatasetError(f"{source}: no images found; put images under <split>/<label>/ folders")
    if "train" not in dataset.splits:
        raise DatasetError(f"{source}: no train split; the clusters are fitted on train")
    log.info("dataset %s: %d images, splits %s", source, len(dataset.samples), dataset.splits)
    return dataset
