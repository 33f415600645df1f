from pathlib import Path

import pytest

from facecluster.config import DatasetConfig
from facecluster.dataset import DatasetError, discover
from tests.conftest import make_dataset


def test_folders_with_splits_are_read_with_counts(tiny_dataset):
    dataset = discover(tiny_dataset)
    assert dataset.split_source == "folders"
    assert dataset.counts() == {"train": {"real": 12, "fake": 12}, "valid": {"real": 6, "fake": 6}}
    assert all(len(s.sha256) == 64 for s in dataset.samples)


def test_split_and_label_names_are_case_insensitive_with_aliases(tmp_path):
    make_dataset(tmp_path, {"Train": {"REAL": 2, "Fake": 2}, "validation": {"real": 1, "fake": 1}})
    assert discover(tmp_path).counts() == {"train": {"real": 2, "fake": 2}, "valid": {"real": 1, "fake": 1}}


def test_unknown_label_folder_is_a_clear_error_that_says_how_to_map(tmp_path):
    make_dataset(tmp_path, {"train": {"real": 1, "gan": 1}})
    with pytest.raises(DatasetError, match=r"gan.*label_names"):
        discover(tmp_path)
    mapped = discover(tmp_path, DatasetConfig(label_names={"gan": "fake"}))
    assert mapped.counts()["train"] == {"real": 1, "fake": 1}


def test_label_only_layout_is_split_stratified_and_rename_proof(tmp_path):
    make_dataset(tmp_path / "d", {".": {"real": 10, "fake": 10}})
    first = discover(tmp_path / "d")
    assert first.split_source == "hash-0.7"
    assert first.counts() == {"train": {"real": 7, "fake": 7}, "valid": {"real": 3, "fake": 3}}
    before = {s.sha256: s.split for s in first.samples}
    victim = next(s for s in first.samples if s.label == "real")
    victim.path.rename(victim.path.with_name("renamed_zzz.jpg"))
    after = {s.sha256: s.split for s in discover(tmp_path / "d").samples}
    assert after == before


def test_train_fraction_is_configurable(tmp_path):
    make_dataset(tmp_path, {".": {"real": 10, "fake": 10}})
    counts = discover(tmp_path, DatasetConfig(train_fraction=0.5)).counts()
    assert counts["train"] == {"real": 5, "fake": 5}


def test_csv_with_relative_paths_and_splits(tmp_path):
    make_dataset(tmp_path, {"a": {"real": 2, "fake": 2}})
    rows = ["path,label,split"] + [f"a/{l}/img_00{k}.jpg,{l},{'train' if k == 0 else 'val'}" for l in ("real", "fake") for k in (0, 1)]
    (tmp_path / "list.csv").write_text("\n".join(rows))
    dataset = discover(tmp_path / "list.csv")
    assert dataset.counts() == {"train": {"real": 1, "fake": 1}, "valid": {"real": 1, "fake": 1}}


@pytest.mark.parametrize("bad", ["../outside.jpg", "/etc/passwd"])
def test_csv_paths_that_leave_the_root_are_refused(tmp_path, bad):
    (tmp_path / "list.csv").write_text(f"path,label\n{bad},real\n")
    with pytest.raises(DatasetError, match="leaves the CSV's folder"):
        discover(tmp_path / "list.csv")


def test_missing_dataset_and_empty_layout_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        discover(tmp_path / "nope")
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="no images found .*split folders"):
        discover(tmp_path)


def test_hidden_files_and_os_junk_are_not_images(tmp_path):
    make_dataset(tmp_path, {"train": {"real": 1, "fake": 1}})
    (tmp_path / "train" / "real" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "train" / "fake" / "Thumbs.db").write_bytes(b"junk")
    assert len(discover(tmp_path).samples) == 2


def test_fingerprint_changes_when_content_changes(tiny_dataset):
    before = discover(tiny_dataset).fingerprint()
    path = next(Path(tiny_dataset).rglob("*.jpg"))
    path.write_bytes(path.read_bytes() + b"\0")
    assert discover(tiny_dataset).fingerprint() != before


def _flat_folder(root: Path, n: int = 6, nested: bool = False) -> Path:
    """``n`` unlabelled JPEGs with shuffled names, flat or spread over two sub-folders."""
    make_dataset(root / "_src", {"train": {"real": n // 2, "fake": n - n // 2}})
    sources = sorted((root / "_src").rglob("*.jpg"))
    for k, source in enumerate(sources):
        folder = root / "faces" / (f"batch{k % 2}" if nested else "")
        folder.mkdir(parents=True, exist_ok=True)
        source.rename(folder / f"{(k * 7919) % 1000:04d}.jpg")
    return root / "faces"


@pytest.mark.parametrize("nested", [False, True])
def test_a_folder_without_split_or_label_folders_is_read_unlabelled(tmp_path, nested):
    folder = _flat_folder(tmp_path, 6, nested=nested)
    (folder / "notes.txt").write_text("not an image")
    dataset = discover(folder)
    assert len(dataset.samples) == 6 and dataset.split_source == "unlabelled"
    assert {s.label for s in dataset.samples} == {None} and {s.split for s in dataset.samples} == {"train"}
    assert dataset.counts() == {"train": {"real": 0, "fake": 0, "unlabelled": 6}}
    assert [s["code"] for s in dataset.skipped] == ["not_an_image_name"]
    assert not [w for w in dataset.warnings if w["code"] == "one_class"]  # no labels: nothing to warn about


def test_a_csv_with_only_paths_is_unlabelled_and_a_blank_label_is_unlabelled(tmp_path):
    folder = _flat_folder(tmp_path, 4)
    names = sorted(p.name for p in folder.iterdir())
    csv_path = folder / "list.csv"
    csv_path.write_text("path\n" + "".join(f"{n}\n" for n in names))
    assert {s.label for s in discover(csv_path).samples} == {None}
    csv_path.write_text("path,label\n" + f"{names[0]},fake\n{names[1]},\n{names[2]},real\n{names[3]},\n")
    dataset = discover(csv_path)
    assert dataset.split_source == "unlabelled"  # some labels only: everything is train, not split 70/30
    assert {s.relpath: s.label for s in dataset.samples} == {names[0]: "fake", names[1]: None,
                                                             names[2]: "real", names[3]: None}


def test_partial_labels_come_from_labels_csv_or_the_labels_setting(tmp_path):
    from facecluster.config import DatasetConfig

    folder = _flat_folder(tmp_path, 6)
    names = sorted(p.name for p in folder.iterdir())
    (folder / "labels.csv").write_text(f"path,label\n{names[0]},fake\n{names[1]},real\nmissing.jpg,fake\n")
    dataset = discover(folder)
    assert len(dataset.samples) == 6 and dataset.n_labelled == 2  # labels.csv itself is not an image entry
    assert {s.relpath: s.label for s in dataset.samples if s.label} == {names[0]: "fake", names[1]: "real"}
    assert [w["code"] for w in dataset.warnings] == ["labels_unmatched"]
    elsewhere = tmp_path / "mine.csv"
    elsewhere.write_text(f"path,label\n{names[2]},fake\n")
    dataset = discover(folder, DatasetConfig(labels=str(elsewhere)))
    assert dataset.n_labelled == 1
    with pytest.raises(DatasetError, match="no such labels file"):
        discover(folder, DatasetConfig(labels=str(tmp_path / "nope.csv")))
    elsewhere.write_text(f"path,label\n{names[2]},maybe\n")
    with pytest.raises(DatasetError, match="mine.csv:2: unknown label 'maybe'"):
        discover(folder, DatasetConfig(labels=str(elsewhere)))
