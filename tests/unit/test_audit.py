"""The shortcut audit: flags what a data set leaks, and nothing on a data set built without leaks."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecluster.audit import alignment_verdict, audit, relative_name
from facecluster.cli import app
from facecluster.dataset import Sample, discover
from facecluster.imagemeta import estimate_jpeg_quality, is_greyscale, name_words
from facecluster.resolve import build_config
from tests.conftest import synthetic_face


def _framed(face: Image.Image, zoom: bool) -> Image.Image:
    """The same face either zoomed in (tight close-up) or small in the middle of a plain frame."""
    if zoom:
        return face.crop((16, 16, 80, 80)).resize((96, 96))
    canvas = Image.new("RGB", (96, 96), (128, 128, 128))
    canvas.paste(face.resize((56, 56)), (20, 20))
    return canvas


def _write(root, split, label, images, names):
    folder = root / split / label
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, names):
        image.save(folder / name, quality=85)


def clean_dataset(root, n=40, seed=0):
    """Both labels from the same generator, same size and quality, neutral and identical names."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("valid", n // 2)):
        for label in ("real", "fake"):
            _write(root, split, label, [synthetic_face(rng, "real") for _ in range(count)],
                   [f"img_{k:03d}.jpg" for k in range(count)])
    return root


def leaky_dataset(root, n=40, seed=0):
    """Same generator, but fakes framed alike and named 'fake_*', a third of the reals greyscale."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("valid", n // 2)):
        reals = [_framed(synthetic_face(rng, "real"), zoom=True) for _ in range(count)]
        reals = [r.convert("L").convert("RGB") if k % 3 == 0 else r for k, r in enumerate(reals)]
        _write(root, split, "real", reals, [f"IMG_{k:04d}.jpg" for k in range(count)])
        fakes = [_framed(synthetic_face(rng, "real"), zoom=False) for _ in range(count)]
        _write(root, split, "fake", fakes, [f"fake_{k}.jpg" for k in range(count)])
    return root


def _flagged(result):
    return {check["check"] for check in result["checks"] if check["flag"]}


def test_audit_flags_nothing_on_a_dataset_without_shortcuts(tmp_path):
    result = audit(discover(clean_dataset(tmp_path / "clean")), build_config())
    assert result["n_read"] == 120
    assert _flagged(result) == set(), result["flags"]
    assert result["flags"] == []
    assert result["per_label"]["real"]["jpeg_quality"] == {"85": 60}


def test_audit_flags_greyscale_names_and_framing(tmp_path):
    result = audit(discover(leaky_dataset(tmp_path / "leaky")), build_config())
    flagged = _flagged(result)
    assert {"greyscale", "names:label_words", "names:classifier", "framing:thumbnails"} <= flagged
    assert result["per_label"]["real"]["greyscale"] == 14 + 7 and result["per_label"]["fake"]["greyscale"] == 0
    assert result["per_label"]["fake"]["name_words"] == {"fake": 60}
    assert all(len(message.splitlines()) == 1 for message in result["flags"])


def test_a_tiny_audit_is_json_serialisable(tmp_path):
    result = audit(discover(clean_dataset(tmp_path / "clean", n=4)), build_config())
    assert json.loads(json.dumps(result))["n_read"] == 12


@pytest.mark.parametrize("quality", [20, 50, 75, 95])
def test_jpeg_quality_is_read_back_from_the_quantisation_tables(quality):
    buffer = io.BytesIO()
    synthetic_face(np.random.default_rng(0), "real").save(buffer, "JPEG", quality=quality)
    assert estimate_jpeg_quality(Image.open(buffer).quantization) == (quality, True)


def test_greyscale_and_name_words():
    colour = synthetic_face(np.random.default_rng(0), "real")
    assert not is_greyscale(colour)
    assert is_greyscale(colour.convert("L"))
    buffer = io.BytesIO()
    colour.convert("L").convert("RGB").save(buffer, "JPEG", quality=75)
    assert is_greyscale(Image.open(buffer))
    assert name_words("StyleGAN2_fake-001.png") == ["fake", "stylegan"]
    assert name_words("organ_morgan_img.jpg") == []  # whole tokens only


def test_relative_name_drops_split_and_label_folders():
    sample = Sample(None, "train/Fake/sub/fake_1.jpg", "fake", "train")
    assert relative_name(sample, {"real", "fake"}) == "sub/fake_1.jpg"
    assert relative_name(Sample(None, "gan/x.jpg", "fake", "train"), {"real", "fake", "gan"}) == "x.jpg"


def test_alignment_verdict_warns_only_when_most_separation_disappears():
    gone = alignment_verdict({"birch": 0.85, "logistic": 0.97}, {"birch": 0.55, "logistic": 0.95})
    assert gone["flag"] and "disappears on aligned crops (birch 0.85 → 0.55)" in gone["message"]
    assert "kept by logistic 0.97 → 0.95" in gone["message"]
    kept = alignment_verdict({"birch": 0.85}, {"birch": 0.75})
    assert not kept["flag"]
    chance_anyway = alignment_verdict({"birch": 0.55}, {"birch": 0.5})
    assert not chance_anyway["flag"]


def test_cli_audit_prints_one_line_per_check_and_writes_json(tmp_path):
    data = leaky_dataset(tmp_path / "leaky", n=20)
    result = CliRunner().invoke(app, ["audit", str(data), "--out", str(tmp_path / "out"), "--no-alignment", "-q"])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "audit.json").read_text())
    flag_lines = [line for line in result.stdout.splitlines() if line.startswith("FLAG")]
    assert len(flag_lines) == len(written["flags"]) >= 3
    assert any("greyscale" in line for line in flag_lines)


def _same_meta(a, b) -> bool:
    fields = [f for f in vars(a) if f != "thumbnail"]
    return all(getattr(a, f) == getattr(b, f) for f in fields) and np.array_equal(a.thumbnail, b.thumbnail)


def test_file_metadata_round_trips_through_its_store_row(tmp_path):
    from facecluster.imagemeta import meta_from_vector, meta_vector, read_meta

    path = tmp_path / "fake_01.png"
    Image.new("LA", (300, 200), (90, 255)).save(path)
    progressive = tmp_path / "p.jpg"
    synthetic_face(np.random.default_rng(1), "real").save(progressive, quality=61, progressive=True, subsampling=0)
    for file in (path, progressive):
        meta = read_meta(file, file.name)
        again = meta_from_vector(meta_vector(meta), meta.name_words)
        assert _same_meta(meta, again), (meta, again)
    meta.file_size = 3 * 2**24 + 5  # beyond float32's exact integers, still exact
    assert meta_from_vector(meta_vector(meta), []).file_size == 3 * 2**24 + 5
    meta.error = "unreadable"
    assert meta_vector(meta) is None  # an unreadable file is read again next time


def test_a_reaudit_reads_each_file_once_and_gets_the_same_metadata(tmp_path, monkeypatch):
    from facecluster import audit as audit_module
    from facecluster.audit import read_metadata
    from facecluster.store import FeatureStore

    dataset = discover(leaky_dataset(tmp_path / "leaky", n=6))
    config, rows = build_config(), np.arange(len(dataset.samples))
    store = FeatureStore(tmp_path / "cache")
    first = read_metadata(dataset, config, rows, store)
    plain = read_metadata(dataset, config, rows)
    calls = []
    real = audit_module.read_meta
    monkeypatch.setattr(audit_module, "read_meta", lambda *a: calls.append(a) or real(*a))
    again = read_metadata(dataset, config, rows, FeatureStore(tmp_path / "cache"))
    assert calls == []
    assert all(_same_meta(a, b) and _same_meta(a, c) for a, b, c in zip(first, again, plain))
    assert any(m.name_words == ["fake"] for m in again)  # names come from the names, not the cache
    assert audit(dataset, config, store=store)["checks"] == audit(dataset, config)["checks"]


def test_a_reaudit_of_unchanged_files_fits_no_classifier_and_a_changed_label_refits(tmp_path, monkeypatch):
    import sklearn.model_selection

    from facecluster.separation import SeparationCache, oof_separation
    from facecluster.store import FeatureStore

    dataset = discover(leaky_dataset(tmp_path / "leaky", n=8))
    config, store = build_config(), FeatureStore(tmp_path / "cache")
    first = audit(dataset, config, store=store)
    fitted = []
    real = sklearn.model_selection.cross_val_predict
    monkeypatch.setattr(sklearn.model_selection, "cross_val_predict", lambda *a, **k: fitted.append(1) or real(*a, **k))
    again = audit(dataset, config, store=FeatureStore(tmp_path / "cache"))
    assert fitted == [] and again["checks"] == first["checks"] and again["flags"] == first["flags"]
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.array(["real", "fake"] * 20, dtype=object)
    cache = SeparationCache(store)
    plain = oof_separation(X, y, _tree(0), 0)
    assert oof_separation(X, y, _tree(0), 0, cache) == plain and len(fitted) == 2
    cache.flush()
    assert oof_separation(X, y, _tree(0), 0, SeparationCache(store)) == plain and len(fitted) == 2  # exact: float64
    y[0] = "fake"
    oof_separation(X, y, _tree(0), 0, SeparationCache(store))
    oof_separation(X, y, _tree(0, depth=2), 0, SeparationCache(store))
    assert len(fitted) == 4  # another label, other parameters: fitted again


def _tree(seed, depth=3):
    from facecluster.audit import _tree as tree

    return tree(seed, depth)


def test_the_history_probes_sample_is_full_when_the_audit_itself_samples(tmp_path):
    # 60 images per label, the audit reads 30 of each and probes 10 of each: two independent draws
    # would have probed only their overlap (about 5 per label); the probes come from the files read.
    config = build_config(overrides={"audit": {"max_images_per_label": 30, "history_max_images_per_label": 10}})
    result = audit(discover(clean_dataset(tmp_path / "clean", n=40)), config)
    assert result["sampled"] and result["n_read"] == 60
    assert result["history"]["n_probed"] == 20
