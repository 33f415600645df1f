"""Property-based tests: whatever the config, CSV or folder tree, the parsers answer or refuse cleanly.

* any TOML table → a valid `Config` (that round-trips through its resolved TOML) or a `ConfigError`;
* any CSV → a `Dataset` whose every image lies inside the CSV's folder, or a `DatasetError`;
* any folder tree → a `Dataset` accounting for every file, or a `DatasetError`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import tempfile
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from facecluster.cluster import CLUSTERERS
from facecluster.config import Config, dump_config
from facecluster.dataset import Dataset, DatasetError, discover
from facecluster.errors import ConfigError
from facecluster.resolve import build_config, load_config

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = ["seed", "dataset", "faces", "features", "reduce", "methods", "report", "label_names", "train_fraction",
        "follow_links_outside_root", "detector", "min_confidence", "margin", "size", "extractor", "backend",
        "batch_size", "standardize", "n_components", "algorithm", "params", "mapping", "montage_size", "thumbnail",
        "threshold", "n_clusters", "quantile", "branching_factor", "n_init", "random_state", "linkage", "metric",
        "covariance_type", "min_cluster_size", "birch", "meanshift", "0", "1", "gan"]
SCALARS = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 600) | st.floats(allow_nan=True)
           | st.floats(-2, 2) | st.sampled_from(["real", "fake", "mtcnn", "none", "onnx", "auto", "facenet", "ward",
                                                "full", *sorted(CLUSTERERS)]) | st.text(max_size=12))
TOML_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8),
                                                                       children, max_size=5),
    max_leaves=25,
)
METHODS = st.dictionaries(
    st.sampled_from(["birch", "meanshift", "k", "../x", "a b", ""]),
    st.fixed_dictionaries({"algorithm": st.sampled_from(sorted(CLUSTERERS) + ["nope"])},
                          optional={"params": st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=3),
                                    "mapping": st.dictionaries(st.sampled_from(["0", "1", "x", "-1"]),
                                                               st.sampled_from(["real", "fake", "maybe"]), max_size=2)}),
    max_size=3,
)
OVERRIDES = (st.dictionaries(st.sampled_from(KEYS[:7]) | st.text(max_size=6), TOML_VALUES, max_size=5)
             | st.builds(lambda methods: {"methods": methods}, METHODS)  # valid elsewhere: the methods are checked
             | st.builds(lambda rest, methods: {**rest, "methods": methods},
                         st.dictionaries(st.sampled_from(KEYS[:7]), TOML_VALUES, max_size=2), METHODS))


@SETTINGS
@given(overrides=OVERRIDES, preset=st.sampled_from(["study", None]))
def test_any_table_is_a_valid_config_or_a_config_error(overrides, preset):
    try:
        config = build_config(preset, overrides)
    except ConfigError as error:
        assert "\n" not in str(error) and str(error)
        return
    assert isinstance(config, Config)
    text = dump_config(config)  # the resolved config of a run re-runs the same thing
    path = Path(tempfile.mkdtemp()) / "resolved.toml"
    try:
        path.write_text(text, encoding="utf-8")
        again = load_config(path, preset=None)
    finally:
        shutil.rmtree(path.parent)
    floats_equal = all(not (isinstance(v, float) and math.isnan(v)) for v in _leaves(config.model_dump()))
    assert again == config or not floats_equal


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


@SETTINGS
@given(text=st.text(max_size=200))
def test_any_text_as_a_config_file_is_a_config_or_a_config_error(text):
    folder = Path(tempfile.mkdtemp())
    try:
        (folder / "c.toml").write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load_config(folder / "c.toml")
        except ConfigError as error:
            assert "\n" not in str(error)
    finally:
        shutil.rmtree(folder)


@SETTINGS
@given(overrides=st.dictionaries(st.sampled_from(KEYS[:7]), TOML_VALUES, max_size=4))
def test_toml_text_of_any_table_is_a_config_or_a_config_error(overrides):
    try:
        text = tomli_w.dumps(overrides)
    except (TypeError, ValueError):
        assume(False)
    folder = Path(tempfile.mkdtemp())
    try:
        (folder / "c.toml").write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load_config(folder / "c.toml")
        except ConfigError:
            pass
    finally:
        shutil.rmtree(folder)


# --- CSV ------------------------------------------------------------------------------------------

SEGMENTS = ["..", ".", "", "a", "real", "img_0.jpg", "img_1.jpg", "missing.jpg", "link_out", "link_in", "x y.jpg",
            "~", "\\..", "%2e%2e", "é.jpg", "a\nb", "\0", "C:", "//", "fake", "dir"]
PATHS = st.builds(lambda lead, parts: lead + "/".join(parts), st.sampled_from(["", "/", "./", "../", "~/"]),
                  st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5))
ROWS = st.lists(st.tuples(PATHS, st.sampled_from(["real", "fake", " Real ", "FAKE", "gan", "", "1"]),
                          st.sampled_from(["train", "valid", "val", "test", " TRAIN", "", "dev"])), max_size=8)


def _csv_world() -> tuple[Path, Path]:
    """root/{a/img_0.jpg, a/img_1.jpg, link_in → a, link_out → outside/}, outside/img_0.jpg."""
    base = Path(tempfile.mkdtemp())
    root, outside = base / "root", base / "outside"
    (root / "a" / "dir").mkdir(parents=True)
    outside.mkdir()
    for folder in (root / "a", outside):
        for name in ("img_0.jpg", "img_1.jpg"):
            (folder / name).write_bytes(b"\xff\xd8\xff" + name.encode())
    (root / "link_in").symlink_to(root / "a")
    (root / "link_out").symlink_to(outside)
    return base, root


def _discover_csv(content: bytes) -> Dataset | None:
    """Discover ``content`` as a CSV in a fresh `_csv_world`: a Dataset inside the root, or None for a DatasetError."""
    base, root = _csv_world()
    try:
        (root / "list.csv").write_bytes(content)
        try:
            dataset = discover(root / "list.csv")
        except DatasetError as error:
            assert "\n" not in str(error)
            return None
        real_root = Path(os.path.realpath(root))
        for sample in dataset.samples:
            assert Path(os.path.realpath(sample.path)).is_relative_to(real_root), sample
            assert not sample.relpath.startswith("..") and not os.path.isabs(sample.relpath)
            assert sample.label in ("real", "fake", None) and sample.split in ("train", "valid", "test")  # None: blank
        for item in dataset.skipped:
            assert item["code"] == "outside_root" and "\n" not in item["message"]
        return dataset
    finally:
        shutil.rmtree(base)


@SETTINGS
@given(rows=ROWS, with_split=st.booleans(), bom=st.booleans())
def test_any_csv_rows_give_a_dataset_inside_the_root_or_a_dataset_error(rows, with_split, bom):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label", "split"] if with_split else ["label", "path"])
    for path, label, split in rows:
        writer.writerow([path, label, split] if with_split else [label, path])
    dataset = _discover_csv((("\ufeff" if bom else "") + buffer.getvalue()).encode("utf-8"))
    assert dataset is None or len(dataset.samples) + len(dataset.skipped) == len(rows)


@SETTINGS
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_as_a_csv_give_a_dataset_inside_the_root_or_a_dataset_error(content):
    _discover_csv(content)


# --- folder trees ---------------------------------------------------------------------------------

NAMES = ["train", "valid", "test", "real", "fake", "Real", "gan", ".hidden", "Thumbs.db", ".DS_Store", "__MACOSX",
         "img.jpg", "b.png", "notes.txt", "x"]
TREES = st.recursive(st.just(b"file"), lambda children: st.dictionaries(st.sampled_from(NAMES), children, max_size=4),
                     max_leaves=14).filter(lambda tree: isinstance(tree, dict))


def _write(folder: Path, tree: dict, files: list[str], root: Path) -> None:
    for name, child in tree.items():
        path = folder / name
        if isinstance(child, dict):
            path.mkdir()
            _write(path, child, files, root)
        else:
            path.write_bytes(b"not really an image " + name.encode())
            files.append(path.relative_to(root).as_posix())


@SETTINGS
@given(tree=TREES)
def test_any_folder_tree_accounts_for_every_file_or_is_a_dataset_error(tree):
    root = Path(tempfile.mkdtemp())
    files: list[str] = []
    try:
        _write(root, tree, files, root)
        try:
            dataset = discover(root)
        except DatasetError as error:
            assert "\n" not in str(error)
            return
        read = [s.relpath for s in dataset.samples]
        assert len(read) == len(set(read))
        skipped = {item["path"]: item for item in dataset.skipped}
        for path in files:
            inside = [p for p in skipped if path.startswith(p + "/")]
            assert (path in read) + (path in skipped) + bool(inside) == 1, (path, read, skipped)
        counted = sum(item.get("n_files", 1) for item in skipped.values()
                      if not any(item["path"].startswith(p + "/") for p in skipped))
        assert len(read) + counted == len(files)
    finally:
        shutil.rmtree(root)


# --- damaged image files --------------------------------------------------------------------------

def _pristine() -> dict[str, bytes]:
    from tests.robustness.messy import encode, exif_rotated_jpeg, top_marked_face
    import numpy as np

    face = top_marked_face(np.random.default_rng(5), 48)
    files = {fmt: encode(face, fmt) for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")}
    files["EXIF"] = exif_rotated_jpeg(face)
    return files


PRISTINE = _pristine()
DAMAGE = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(sorted(PRISTINE)), damage=DAMAGE, keep=st.floats(0, 1))
def test_any_damage_to_an_image_file_gives_pixels_or_an_image_error(fmt, damage, keep):
    from facecluster.images import ImageError, decode_rgb

    data = bytearray(PRISTINE[fmt][: max(0, round(keep * len(PRISTINE[fmt])))] if keep < 1 else PRISTINE[fmt])
    for where, value in damage:
        if data:
            data[int(where * len(data))] = value
    try:
        rgb = decode_rgb(bytes(data), f"x.{fmt.lower()}")
    except ImageError as error:
        assert str(error).startswith("x.") and "\n" not in str(error)
        return
    assert rgb.dtype.name == "uint8" and rgb.ndim == 3 and rgb.shape[2] == 3 and min(rgb.shape[:2]) >= 20
