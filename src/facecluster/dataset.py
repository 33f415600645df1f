"""Find the images of a dataset, their labels and splits.

Three layouts are read:

* folders, ``<root>/<split>/<label>/<image>`` (the study's), or ``<root>/<label>/<image>``
  when the data ships without splits; it is then split for the user, stratified and
  deterministic by content hash (a renamed file stays on its side);
* any other folder of images, flat or nested: **unlabelled**, every image in train (the
  clusters are fitted on all of them); a ``labels.csv`` (``path,label``) in the folder, or
  `DatasetConfig.labels`, names some of them;
* a CSV file with the columns ``path[,label][,split]``, paths relative to the CSV; a blank or
  missing label means unlabelled.

An unlabelled image has ``label = None``: it is clustered and predicted, never scored.

Nothing found is silently dropped. Every file inside a label folder becomes a `Sample`
(a file that turns out not to be an image is reported by the decoder). What is not read is
listed in `Dataset.skipped` with a reason code: hidden files and OS junk (``hidden``,
``os_junk``), files outside any label folder (``not_in_label_folder``), folders that are
neither a split nor a label (``unknown_folder``), symbolic links leading out of the root
(``outside_root``, never opened), links that loop (``symlink_loop``) and folders that
cannot be listed (``unreadable_folder``). What a user should know about the data is in
`Dataset.warnings` (empty label folders, a split with one class, images shared between
splits or labels), and the shared images themselves in `Dataset.leaks`.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from facecluster.config import LABELS, DatasetConfig
from facecluster.csv_cells import unescape_formula
from facecluster.errors import FaceclusterError
from facecluster.images import MAX_FILE_BYTES, ImageError, display_name, open_regular

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid", "test": "test"}
DEFAULT_LABEL_NAMES = {"real": "real", "fake": "fake"}
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNLABELLED = "unlabelled"  # the counts' key for images without a label
LABELS_FILE = "labels.csv"  # an unlabelled folder's own partial labels, read when present
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
OS_JUNK = {".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "icon\r", ".spotlight-v100",
           ".trashes", ".fseventsd", "$recycle.bin", "system volume information", ".apdisk"}
SKIP_MESSAGES = {
    "hidden": "hidden file or folder; ignored",
    "os_junk": "operating-system metadata, not an image; ignored",
    "not_in_label_folder": "not inside a label folder; ignored. If it is an image, move it into <split>/<label>/",
    "outside_root": ("a symbolic link leading out of the dataset folder; not read. Copy the image in, or set "
                     "[dataset] follow_links_outside_root = true"),
    "symlink_loop": "a symbolic link back to a folder that contains it; not followed. Remove the link",
    "unreadable_folder": "the folder cannot be listed; make it readable (chmod a+rx)",
}


class DatasetError(FaceclusterError, ValueError):
    """The dataset cannot be read as given; the message says what was found and the fix."""


@dataclass(frozen=True)
class Sample:
    """One input image: where it is, its true label and the split it belongs to."""

    path: Path
    relpath: str
    label: str | None  # None: unlabelled (clustered and predicted, never scored)
    split: str
    sha256: str = ""


@dataclass
class Dataset:
    """All samples of a run, plus how the splits came about and what was not read."""

    root: Path
    samples: list[Sample]
    split_source: str  # "folders", "csv", "hash-<fraction>" when we split it, "unlabelled", or NEW_DATA
    skipped: list[dict] = field(default_factory=list)  # {path, code, message[, n_files]}
    warnings: list[dict] = field(default_factory=list)  # {code, message[, path]}
    leaks: list[dict] = field(default_factory=list)  # {sha256, kinds, paths, splits, labels}

    @property
    def splits(self) -> list[str]:
        order = ["train", "valid", "test"]
        present = {s.split for s in self.samples}
        return [s for s in order if s in present]

    @property
    def n_labelled(self) -> int:
        return sum(s.label is not None for s in self.samples)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and label: ``{split: {label: n}}``, with ``unlabelled`` when some are."""
        counter = Counter((s.split, s.label) for s in self.samples)
        out = {split: {label: counter[(split, label)] for label in LABELS} for split in self.splits}
        for split in out:
            if counter[(split, None)]:
                out[split][UNLABELLED] = counter[(split, None)]
        return out

    def fingerprint(self) -> str:
        """A hash of every (relative path, label, split, content hash): same data, same value."""
        digest = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: s.relpath):
            digest.update(f"{s.relpath}\0{s.label or ''}\0{s.split}\0{s.sha256}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a regular file's bytes (named pipes and devices are refused, never read)."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _label_map(config: DatasetConfig) -> dict[str, str]:
    mapping = dict(DEFAULT_LABEL_NAMES)
    mapping.update({name.lower(): label for name, label in config.label_names.items()})
    return mapping


def _junk_code(name: str) -> str | None:
    if name.lower() in OS_JUNK:
        return "os_junk"
    return "hidden" if name.startswith(".") else None


def _looks_like_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _is_inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(root)


def _count_files(folder: Path) -> int:
    """Files under a folder that is skipped (links not followed), so the count adds up."""
    return sum(len(files) for _, _, files in os.walk(folder, followlinks=False))


class _Walk:
    """Lists folders under one root, recording everything it does not read."""

    def __init__(self, root: Path, follow_outside: bool):
        self.root = root
        self.follow_outside = follow_outside
        self.skipped: list[dict] = []

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def skip(self, path: Path, code: str, message: str | None = None, count: bool = False) -> None:
        entry = {"path": self.rel(path), "code": code,
                 "message": f"{display_name(self.rel(path))}: {message or SKIP_MESSAGES[code]}"}
        if count:
            entry["n_files"] = _count_files(path)
        self.skipped.append(entry)
        quiet = code in ("hidden", "os_junk") or (code == "not_in_label_folder" and not _looks_like_image(path))
        (log.debug if quiet else log.warning)(entry["message"])

    def list(self, folder: Path) -> tuple[list[Path], list[Path]]:
        """The sub-folders and files of ``folder`` worth reading; the rest is recorded as skipped."""
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            self.skip(folder, "unreadable_folder")
            return [], []
        folders, files = [], []
        for entry in entries:
            path = Path(entry.path)
            is_dir = _is_dir(entry)
            if (code := _junk_code(entry.name)) is not None:
                self.skip(path, code, count=is_dir and not entry.is_symlink())
            elif entry.is_symlink() and not self.follow_outside and not _is_inside(path, self.root):
                self.skip(path, "outside_root")
            elif is_dir:
                folders.append(path)
            else:
                files.append(path)
        return folders, files

    def images(self, folder: Path, ancestors: frozenset = frozenset()) -> list[Path]:
        """Every file under ``folder``, following links to folders but never round a loop."""
        real = os.path.realpath(folder)
        if real in ancestors:
            self.skip(folder, "symlink_loop")
            return []
        folders, files = self.list(folder)
        for sub in folders:
            files.extend(self.images(sub, ancestors | {real}))
        return files


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links; False for broken links and loops
    except OSError:
        return False


def _read_labelled(walk: _Walk, folder: Path, split: str, labels: dict[str, str],
                   warnings: list[dict]) -> list[Sample]:
    found, loose = walk.list(folder)
    unknown = [d.name for d in found if d.name.lower() not in labels]
    if unknown:
        shown = [display_name(name) for name in unknown]
        raise DatasetError(
            f"{display_name(folder)}: unknown label folder(s) {shown}; found {[display_name(d.name) for d in found]}, "
            f"expected {sorted(labels)}. Map them in the config, e.g. [dataset.label_names] "
            f"{shown[0]!r} = \"fake\""
        )
    for path in loose:
        walk.skip(path, "not_in_label_folder")
    samples = []
    above = frozenset({os.path.realpath(walk.root), os.path.realpath(folder)})  # a link up to these loops
    for label_dir in found:
        files = walk.images(label_dir, above)
        if not files:
            rel = walk.rel(label_dir)
            warnings.append({"code": "empty_label_folder", "path": rel,
                             "message": f"{display_name(rel)}: empty label folder; add images or remove it"})
        for path in files:
            samples.append(Sample(path, walk.rel(path), labels[label_dir.name.lower()], split))
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
            if os.stat(s.path).st_size <= MAX_FILE_BYTES:
                s = _with(s, sha256=file_sha256(s.path))
        except (OSError, ImageError):
            pass  # unusable: reported later by the decoder with its reason, never dropped
        out.append(s)
    return out


def _from_folders(root: Path, config: DatasetConfig) -> Dataset:
    labels = _label_map(config)
    walk = _Walk(root, config.follow_links_outside_root)
    warnings: list[dict] = []
    top, loose = walk.list(root)
    split_dirs = [d for d in top if d.name.lower() in SPLIT_NAMES]
    if split_dirs:
        for d in top:
            if d not in split_dirs:
                walk.skip(d, "unknown_folder", f"neither a split folder ({sorted(SPLIT_NAMES)}) nor inside one; "
                                               "ignored. Rename it or move its images into <split>/<label>/",
                          count=not d.is_symlink())
        for path in loose:
            walk.skip(path, "not_in_label_folder")
        samples = []
        for d in split_dirs:
            samples += _read_labelled(walk, d, SPLIT_NAMES[d.name.lower()], labels, warnings)
        return Dataset(root, _hashed(samples), "folders", walk.skipped, warnings)
    if any(d.name.lower() in labels for d in top):
        walk.skipped = []  # listed again below
        samples = _hashed(_read_labelled(walk, root, "train", labels, warnings))
        return Dataset(root, _hash_split(samples, config.train_fraction), f"hash-{config.train_fraction:g}",
                       walk.skipped, warnings)
    return _unlabelled_folder(root, walk, config)


def _unlabelled_folder(root: Path, walk: _Walk, config: DatasetConfig) -> Dataset:
    """Every image under ``root`` (flat or nested), unlabelled and in train; files not named as images are listed."""
    walk.skipped = []
    samples = []
    for path in walk.images(root):
        rel = walk.rel(path)
        if _looks_like_image(path):
            samples.append(Sample(path, rel, None, "train"))
        elif rel != LABELS_FILE:
            walk.skip(path, "not_an_image_name", "not named as an image (.jpg, .png, .webp, .bmp, .tif, .gif); "
                                                 "ignored. Rename it if it is one")
    if not samples:
        raise DatasetError(
            f"{display_name(root)}: no images found (looked for {sorted(IMAGE_SUFFIXES)} files in the folder and "
            f"below it, and for split folders {sorted(set(SPLIT_NAMES))} or label folders {sorted(_label_map(config))})")
    return Dataset(root, _hashed(samples), "unlabelled", walk.skipped)


def _csv_rows(csv_path: Path):
    """The CSV's header and rows with their line numbers, as `DatasetError`s when unreadable.

    A cell escaped against formula injection (``'=…``, `facecluster.csv_cells`) reads as the text it escaped.
    """
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            rows = [(reader.line_num, {key: unescape_formula(value) for key, value in row.items()}) for row in reader]
    except UnicodeDecodeError as error:
        raise DatasetError(f"{display_name(csv_path)}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except csv.Error as error:
        raise DatasetError(f"{display_name(csv_path)}: not a readable CSV ({error}); check its quoting") from None
    except OSError as error:
        raise DatasetError(f"{display_name(csv_path)}: cannot be read ({error.strerror or error}); check the file") from None
    return fields, rows


def _csv_cell(row: dict, key: str) -> str:
    value = row.get(key)
    return value.strip() if isinstance(value, str) else ""


def _csv_path(row: dict, exists) -> str:
    """A row's path: as written when ``exists(path)`` says so (a name may start or end with a tab), else stripped."""
    value = row.get("path")
    if isinstance(value, str) and value.strip() and value != value.strip() and exists(value):
        return value
    return _csv_cell(row, "path")


def _is_file(root: Path, rel: str) -> bool:
    try:
        return "\0" not in rel and (root / rel).is_file()
    except (OSError, ValueError):  # a name too long, say: not a file we can read
        return False


def _from_csv(csv_path: Path, config: DatasetConfig) -> Dataset:
    root = csv_path.parent.resolve()
    labels = _label_map(config)
    fields, rows = _csv_rows(csv_path)
    where = display_name(csv_path)
    if "path" not in fields:
        raise DatasetError(f"{where}: missing column 'path'; the header must be path[,label][,split]")
    walk = _Walk(root, config.follow_links_outside_root)
    samples = []
    for line, row in rows:
        rel = _csv_path(row, lambda written: _is_file(root, written))
        if not rel or "\0" in rel:
            raise DatasetError(f"{where}:{line}: empty path or NUL character; give a path relative to the CSV")
        path = Path(os.path.normpath(root / rel))
        if Path(rel).is_absolute() or not path.is_relative_to(root) or path == root:
            raise DatasetError(f"{where}:{line}: path {display_name(rel)!r} leaves the CSV's folder; "
                               "use a path relative to it")
        label = _csv_label(row, labels, f"{where}:{line}")
        split = SPLIT_NAMES.get((_csv_cell(row, "split") or "train").lower())
        if split is None:
            raise DatasetError(f"{where}:{line}: unknown split {display_name(_csv_cell(row, 'split'))!r}; "
                               f"expected {sorted(SPLIT_NAMES)}")
        if not config.follow_links_outside_root and not _is_inside(path, root):
            walk.skip(path, "outside_root")
            continue
        samples.append(Sample(path, walk.rel(path), label, split))
    samples = _hashed(samples)
    if "split" in fields:
        return Dataset(root, samples, "csv", walk.skipped)
    if all(s.label is not None for s in samples):
        return Dataset(root, _hash_split(samples, config.train_fraction), f"hash-{config.train_fraction:g}",
                       walk.skipped)
    return Dataset(root, samples, "unlabelled", walk.skipped)  # some or no labels: all in train


def _csv_label(row: dict, labels: dict[str, str], where: str) -> str | None:
    """A row's label, None when blank (unlabelled); an unknown word is refused."""
    word = _csv_cell(row, "label")
    if not word:
        return None
    label = labels.get(word.lower())
    if label is None:
        raise DatasetError(f"{where}: unknown label {display_name(word)!r}; expected {sorted(labels)} or blank "
                           "(unlabelled)")
    return label


def _relative(path: str) -> str:
    return Path(os.path.normpath(path)).as_posix()


def apply_labels(dataset: Dataset, csv_path: Path, config: DatasetConfig) -> Dataset:
    """Label the samples named in ``csv_path`` (``path,label``, paths relative to the dataset folder).

    A label given there replaces the sample's own (a warning names the conflicts); rows naming
    no sample of the dataset are counted in a warning, never silently ignored.
    """
    where = display_name(csv_path)
    fields, rows = _csv_rows(csv_path)
    if not {"path", "label"} <= set(fields):
        raise DatasetError(f"{where}: the labels file needs the columns path,label (paths relative to "
                           f"{display_name(dataset.root)})")
    names = _label_map(config)
    known = {s.relpath for s in dataset.samples}
    given: dict[str, str | None] = {}
    for line, row in rows:
        rel = _relative(_csv_path(row, lambda written: _relative(written) in known))
        given[rel] = _csv_label(row, names, f"{where}:{line}")
    samples, conflicts = [], []
    for s in dataset.samples:
        if s.relpath in given and given[s.relpath] is not None:
            if s.label is not None and s.label != given[s.relpath]:
                conflicts.append(s.relpath)
            s = _with(s, label=given[s.relpath])
        samples.append(s)
    unmatched = [p for p in given if p not in known]
    warnings = list(dataset.warnings)
    if unmatched:
        warnings.append({"code": "labels_unmatched", "path": str(csv_path),
                         "message": f"{where}: {len(unmatched)} row(s) name no image of the dataset, e.g. "
                                    f"{display_name(unmatched[0])!r}; give paths relative to {display_name(dataset.root)}"})
    if conflicts:
        warnings.append({"code": "labels_conflict", "path": str(csv_path),
                         "message": f"{where}: {len(conflicts)} image(s) get another label than their folder's, e.g. "
                                    f"{display_name(conflicts[0])!r}; the labels file's is used"})
    return Dataset(dataset.root, samples, dataset.split_source, dataset.skipped, warnings, dataset.leaks)


NEW_DATA = "new-data"  # split_source of a dataset scored by a saved model: every image in ``test``


def as_new_data(dataset: Dataset) -> Dataset:
    """``dataset`` as a saved model's new data: splits that discovery made up become one, ``test``.

    A folder of label folders is split 70/30 by content hash, and an unlabelled or partly labelled
    one (or a list of paths) is all train: splits for fitting. A model that scores the folder was fitted on none of it,
    so every labelled image is held out and evaluated together (split_source ``new-data``). Splits
    the user gave (split folders, a CSV's split column) are kept.
    """
    if not (dataset.split_source.startswith("hash-") or dataset.split_source in ("unlabelled", "paths")):
        return dataset
    return Dataset(dataset.root, [_with(s, split="test") for s in dataset.samples], NEW_DATA, dataset.skipped,
                   dataset.warnings)


def from_paths(paths) -> Dataset:
    """A dataset of the given image files, unlabelled (paths relative to their common folder).

    A path that does not exist or is not an image is kept: the decoder reports it with its
    reason, so every path given has its row in the output.
    """
    paths = [Path(os.path.abspath(p)) for p in paths]
    if not paths:
        raise DatasetError("no image paths given")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    samples = [Sample(p, p.relative_to(root).as_posix(), None, "train") for p in paths]
    return Dataset(root, _hashed(samples), "paths")


def find_leaks(samples: list[Sample]) -> list[dict]:
    """Identical files (same content hash) that sit in two splits or under two labels."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.sha256 and s.sha256 != EMPTY_SHA256:  # empty files are reported as such, not as twins
            groups[s.sha256].append(s)
    leaks = []
    for sha, group in sorted(groups.items()):
        splits, labels = sorted({s.split for s in group}), sorted({s.label for s in group if s.label is not None})
        kinds = (["label"] if len(labels) > 1 else []) + (["split"] if len(splits) > 1 else [])
        if kinds:
            leaks.append({"sha256": sha, "kinds": kinds, "paths": [s.relpath for s in group],
                          "splits": splits, "labels": labels})
    return leaks


def _data_warnings(dataset: Dataset) -> list[dict]:
    """What a user must know before trusting the scores: one-class splits and leaks."""
    out = []
    for split, counts in dataset.counts().items():
        present = [label for label in LABELS if counts[label]]
        if len(present) == 1:
            other = next(label for label in LABELS if label != present[0])
            out.append({"code": "one_class", "path": split,
                        "message": f"{split}: only {present[0]!r} images; clusters are still fitted, but scores "
                                   f"against the labels say nothing about real vs fake there. Add {other!r} images"})
    for kind, what in (("label", "under two labels (the same picture is called real and fake)"),
                       ("split", "in two splits (the evaluation sees training images)")):
        leaks = [leak for leak in dataset.leaks if kind in leak["kinds"]]
        if leaks:
            example = " = ".join(display_name(p) for p in leaks[0]["paths"][:2])
            out.append({"code": f"{kind}_leak",
                        "message": f"{len(leaks)} identical image(s) {what}, e.g. {example}; all are kept and "
                                   "listed in results.json 'leaks'. Remove the copies to stop the leak"})
    return out


def discover(source: Path, config: DatasetConfig | None = None, *, new_data: bool = False) -> Dataset:
    """Read a dataset from a folder or a CSV file.

    With ``new_data`` (a saved model scores it) it needs no train split, and splits the layout did
    not give are one, ``test`` (`as_new_data`).

    Raises
    ------
    DatasetError
        When the layout cannot be understood, with what was found and how to fix it.
    """
    config = config or DatasetConfig()
    source = Path(source)
    shown = display_name(source)
    if not source.exists():
        raise DatasetError(f"{shown}: no such file or folder; give the dataset's root folder or a CSV file")
    if source.is_file():
        dataset = _from_csv(source, config)
    elif source.is_dir():
        dataset = _from_folders(source.resolve(), config)
    else:
        raise DatasetError(f"{shown}: neither a folder nor a CSV file; give the dataset's root folder or a CSV file")
    if not dataset.samples:
        raise DatasetError(f"{shown}: no images found; put images under <split>/<label>/ folders")
    if "train" not in dataset.splits and not new_data:
        raise DatasetError(f"{shown}: no train split; the clusters are fitted on train")
    labels_file = Path(config.labels) if config.labels else None
    if labels_file is None and dataset.split_source == "unlabelled" and (dataset.root / LABELS_FILE).is_file():
        labels_file = dataset.root / LABELS_FILE
    if labels_file is not None:
        if not labels_file.is_file():
            raise DatasetError(f"{display_name(labels_file)}: no such labels file; give a CSV path,label")
        dataset = apply_labels(dataset, labels_file, config)
        log.info("labels from %s: %d of %d images labelled", display_name(labels_file), dataset.n_labelled,
                 len(dataset.samples))
    if new_data:
        dataset = as_new_data(dataset)
    dataset.leaks = find_leaks(dataset.samples)
    dataset.warnings += _data_warnings(dataset)
    for warning in dataset.warnings:
        log.warning(warning["message"])
    log.info("dataset %s: %d images, splits %s", shown, len(dataset.samples), dataset.splits)
    return dataset
