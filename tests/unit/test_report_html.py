"""report.html from a run folder made by hand (no models): contents, escaping, rebuilding, errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facecluster.cli import app
from facecluster.faces import crop_face
from facecluster.report.figures import montage_png
from facecluster.image_table import load_image_table, table_entries
from facecluster.report.html import ReportError, build_report, write_report
from facecluster.report.thumbnails import face_record_of
from tests.conftest import synthetic_face

HOSTILE = [
    "<img src=x onerror=alert(1)>.jpg",
    "x</script><script>alert(2)</script>.jpg",  # a folder "x<" holding "script><script>alert(2)<" ...
    "\"'><svg onload=alert(3)>&amp;.jpg",
]
HOSTILE_METHOD = "<b onmouseover=alert(4)>birch</b>"


def _write_table(out: Path, images: list[dict], method_names) -> dict:
    """images.parquet for these schema-1 entries, written by the run's own writer; results.json's ``images``."""
    from types import SimpleNamespace

    from facecluster.image_table import write_image_table
    from facecluster.records import FaceRecord

    samples = [SimpleNamespace(relpath=e["path"], split=e["split"], label=e["label"], sha256=e["sha256"])
               for e in images]
    records = np.array([FaceRecord(found=True, confidence=e["face"]["confidence"], box=tuple(e["face"]["box"]),
                                   landmarks=e["face"].get("landmarks")).to_array() if "face" in e
                        else FaceRecord(found=False).to_array() for e in images])
    clusters = {m: np.array([-1 if e["clusters"][m] is None else e["clusters"][m] for e in images])
                for m in method_names}
    scores = {m: np.array([np.nan if (e.get("scores") or {}).get(m) is None else e["scores"][m] for e in images])
              for m in method_names}
    return write_image_table(out, samples, [e["status"] for e in images], [e.get("message") for e in images],
                             records, clusters, scores, methods=list(method_names))


def _fake_run(tmp_path: Path, names: list[str], method_names=("meanshift", "birch"), montages=True,
              schema: int = 2, landmarks=None, scores=None) -> Path:
    """A run folder as `facecluster run` writes it, for images with the given file names.

    ``schema`` 1 writes the image entries into results.json, as runs made before images.parquet
    did; ``landmarks`` go to the first detected face; ``scores(i, entry)`` gives each method's score.
    """
    rng = np.random.default_rng(0)
    root, out = tmp_path / "data", tmp_path / "run"
    out.mkdir(parents=True)
    images, reduced = [], []
    for i, name in enumerate(names):
        split, label = ("train", "valid")[i % 3 == 2], ("real", "fake")[i % 2]
        path = Path(split) / label / name
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        synthetic_face(rng, label).save(root / path, format="JPEG")
        entry = {"path": path.as_posix(), "split": split, "label": label, "sha256": "0" * 64, "status": "ok",
                 "clusters": {m: i % 2 for m in method_names}}
        if i % 4 == 0:
            entry["status"] = "no_face"
        else:
            entry["face"] = {"confidence": 0.99, "box": [20.0, 16.0, 56.0, 64.0]}
            if landmarks is not None and not any("face" in e for e in images):
                entry["face"]["landmarks"] = landmarks
        if scores is not None:
            entry["scores"] = {m: scores(i, entry) for m in method_names}
        images.append(entry)
        reduced.append([i % 2 + rng.normal(0, 0.1), rng.normal(0, 0.1)])
    broken = Path("train") / "real" / names[0].replace(".jpg", "-broken.jpg")
    (root / broken).write_bytes(b"")
    message = f"{broken.as_posix()}: the file is empty (0 bytes); remove it or replace it with the image"
    images.append({"path": broken.as_posix(), "split": "train", "label": "real", "sha256": None,
                   "status": "empty_file", "message": message, "clusters": {m: None for m in method_names}})
    reduced.append([np.nan, np.nan])
    if scores is not None:
        images[-1]["scores"] = {m: None for m in method_names}
    methods = {}
    for m in method_names:
        files = {}
        for cluster in ("0", "1"):
            if montages:
                face = np.asarray(synthetic_face(rng, "real", 64))
                files[cluster] = montage_png(out / f"montage-{len(methods)}-cluster{cluster}.png", [face] * 3).name
        scores = {"n": 6, "accuracy": 0.5, "balanced_accuracy": 0.5, "ari": 0.0, "nmi": 0.123456,
                  "confusion": {"labels": ["real", "fake"], "matrix": [[2, 1], [1, 2]]}}
        methods[m] = {"algorithm": "birch", "params": {"n_clusters": 2}, "n_clusters": 2, "bandwidth": None,
                      "mapping": {"0": "real", "1": "fake"}, "mapping_source": "majority",
                      "clusters": {"train": {"0": {"real": 3, "fake": 1}, "1": {"real": 1, "fake": 3}},
                                   "valid": {"0": {"real": 1, "fake": 0}, "1": {"real": 0, "fake": 1}}},
                      "scores": {"train": scores, "valid": {**scores, "accuracy": 0.875}},
                      "figures": {"scatter": f"scatter-{m}.png", "montages": files}}
    results = {
        "schema_version": schema, "created": "2026-01-01T00:00:00+00:00",
        "dataset": {"source": "<i>data</i>", "root": str(root), "split_source": "folders", "fingerprint": "f" * 64,
                    "n_images": len(images), "counts": {"train": {"real": 4, "fake": 4}, "valid": {"real": 2, "fake": 2}}},
        "faces": {"detector": "mtcnn", "found": 5, "no_face": 2, "failed": 1},
        "features": {"extractor": "facenet", "checkpoint": "20180408-102900", "model_sha256": "a" * 64, "dim": 512},
        "reduce": {"steps": ["pca"], "n_components": 2, "explained_variance_ratio": [0.07, 0.05]},
        "methods": methods,
        "problems": [{"path": broken.as_posix(), "code": "empty_file", "message": message}],
        "images": images if schema == 1 else _write_table(out, images, method_names),
        "provenance": {"versions": {"python": "3.11"}, "seed": 0, "engine": "local",
                       "config": {"faces": {"margin": 0.2}}},
        "timings": {"total_seconds": 1.0, "computed": {"faces": 8, "features": 8}},
    }
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    np.save(out / "reduced.npy", np.array(reduced, dtype=np.float32))
    (out / "config.toml").write_text('seed = 0\n[methods."<b onmouseover=alert(4)>birch</b>"]\n', encoding="utf-8")
    return out


def _tags(html: str, tag: str) -> int:
    return len(re.findall(rf"<{tag}[\s>]", html, flags=re.IGNORECASE))


def test_hostile_names_reach_the_page_only_as_escaped_text(tmp_path):
    plain = build_report(_fake_run(tmp_path / "plain", ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"],
                                   method_names=("meanshift", "birch")))
    names = HOSTILE + ["d.jpg", "e.jpg", "f.jpg"]
    hostile = build_report(_fake_run(tmp_path / "hostile", names, method_names=("meanshift", HOSTILE_METHOD)))
    for raw in ("<img src=x", "</script><script>", "<svg onload", "<b onmouseover", "<i>data</i>"):
        assert raw not in hostile
    # The same markup as with harmless names: nothing was added by the data.
    for tag in ("script", "img", "svg", "b", "i"):
        assert _tags(hostile, tag) == _tags(plain, tag), tag
    # The names are there, as text.
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in hostile
    assert "&lt;b onmouseover=alert(4)&gt;birch&lt;/b&gt;" in hostile
    assert "&lt;svg onload=alert(3)&gt;&amp;amp;.jpg" in hostile


def test_report_holds_scores_every_montage_problems_and_provenance(tmp_path):
    run = _fake_run(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"])
    html = write_report(run).read_text(encoding="utf-8")
    results = json.loads((run / "results.json").read_text())
    scores = html[html.index('id="scores"'):html.index('id="scatter"')]
    assert "meanshift" in scores and "birch" in scores and "0.875" in scores and "0.123" in scores
    n_montages = sum(len(m["figures"]["montages"]) for m in results["methods"].values())
    assert len(re.findall(r'<img class="montage" src="data:image/jpeg;base64,', html)) == n_montages == 4
    assert "train/real/a-broken.jpg" in html and "empty_file" in html
    assert "a" * 64 in html and "f" * 64 in html  # model checksum and dataset fingerprint
    assert len(re.findall(r'data-root-id="', html)) == 2  # one scatter per method
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.DOTALL)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", markup)  # no page element fetches anything
    assert "<link" not in markup


def test_report_rebuilds_from_the_run_folder_and_finds_moved_images(tmp_path):
    run = _fake_run(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "data", moved)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "4 face thumbnails could not be made" in (run / "report.html").read_text(encoding="utf-8")
    again = CliRunner().invoke(app, ["report", str(run), "--images", str(moved)])
    assert again.exit_code == 0, again.output
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "could not be made" not in html
    assert html.count("data:image/jpeg;base64,") > 4  # thumbnails and montages


def test_missing_montage_and_reduced_coordinates_are_noted_not_fatal(tmp_path):
    run = _fake_run(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    (run / "montage-0-cluster1.png").unlink()
    (run / "reduced.npy").unlink()
    html = build_report(run)
    assert "montage-0-cluster1.png is missing" in html
    assert "reduced.npy could not be read" in html and "No scatter" in html


@pytest.mark.parametrize("setup, expected", [
    (lambda run: None, "results.json: not found"),
    (lambda run: (run / "results.json").write_text("{oops"), "not valid JSON"),
    (lambda run: (run / "results.json").write_text("[]"), "not a facecluster results file"),
])
def test_unusable_run_folder_is_one_line_error(tmp_path, setup, expected):
    run = tmp_path / "run"
    run.mkdir()
    setup(run)
    with pytest.raises(ReportError, match=expected):
        build_report(run)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 2
    assert expected in result.output and "Traceback" not in result.output


def test_thumbnail_record_cuts_the_box_recorded_in_results():
    rgb = np.zeros((100, 100, 3), dtype=np.uint8)
    rgb[30:60, 40:60] = 255  # the "face": a white box
    record = face_record_of({"face": {"confidence": 1.0, "box": [40.0, 30.0, 20.0, 30.0]}})
    assert crop_face(rgb, record, margin=0.0, size=16).min() == 255
    centre = face_record_of({"status": "no_face"})
    assert crop_face(rgb, centre, margin=0.0, size=100).shape == (100, 100, 3)
    assert crop_face(rgb, centre, margin=0.0, size=100).mean() == rgb.mean()


def test_an_aligned_run_shows_aligned_thumbnails_cut_by_its_landmarks(tmp_path):
    from facecluster.faces import align_face
    from facecluster.images import decode_rgb, read_bytes
    from facecluster.report.thumbnails import THUMBNAIL_SIZE, jpeg_data_uri

    landmarks = [[36.0, 40.0], [60.0, 38.0], [48.0, 52.0], [39.0, 66.0], [58.0, 65.0]]  # a slightly tilted face
    run = _fake_run(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], landmarks=landmarks)
    results = json.loads((run / "results.json").read_text())
    results["provenance"]["config"]["faces"] = {"margin": 0.2, "crop": "aligned"}
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    entry = next(e for e in table_entries(load_image_table(run)) if "face" in e)
    page = build_report(run)
    path = Path(results["dataset"]["root"]) / entry["path"]
    rgb = decode_rgb(read_bytes(path, entry["path"]), entry["path"])
    record = face_record_of(entry)
    np.testing.assert_array_equal(record.landmarks, landmarks)
    aligned = jpeg_data_uri(align_face(rgb, record, THUMBNAIL_SIZE, 0.2))
    boxed = jpeg_data_uri(crop_face(rgb, record, 0.2, THUMBNAIL_SIZE))
    assert aligned != boxed
    assert aligned in page and boxed not in page


def test_the_image_table_carries_the_landmarks_of_a_found_face_and_none_without(tmp_path):
    from types import SimpleNamespace

    from facecluster.faces import Detection, face_record
    from facecluster.image_table import write_image_table
    from facecluster.records import empty_records

    points = np.array([[36.04, 40], [60, 38], [48, 52], [39, 66], [58, 65]], dtype=np.float32)
    records = empty_records(3)
    records[0] = face_record(np.zeros((96, 96, 3), dtype=np.uint8), Detection((20, 16, 56, 64), 0.99, points))
    records[1] = face_record(np.zeros((96, 96, 3), dtype=np.uint8), None)
    samples = [SimpleNamespace(relpath=f"train/real/{k}.jpg", split="train", label="real", sha256="") for k in "abc"]
    summary = write_image_table(tmp_path, samples, ["ok", "no_face", "corrupt"], [None, None, "c.jpg: damaged"],
                                records, {"m": np.array([1, 0, -1])}, {})
    assert summary == {"table": "images.parquet", "rows": 3, "row_group": 16384, "methods": ["m"]}
    table = load_image_table(tmp_path, {"methods": {"m": {}}, "images": summary})
    entries = table_entries(table)
    assert [round(v, 2) for v in np.ravel(entries[0]["face"]["landmarks"])] == \
        [36.04, 40.0, 60.0, 38.0, 48.0, 52.0, 39.0, 66.0, 58.0, 65.0]
    assert entries[0]["face"]["box"] == [20.0, 16.0, 56.0, 64.0]
    assert "face" not in entries[1] and "face" not in entries[2]
    assert [e["clusters"]["m"] for e in entries] == [1, 0, None]
    assert [e["scores"]["m"] for e in entries] == [None, None, None]  # no scores: null, never 0
    assert entries[2]["message"] == "c.jpg: damaged" and "message" not in entries[0]


def test_the_report_says_when_the_clusters_follow_processing_history(tmp_path):
    run = _fake_run(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"])
    results = json.loads((run / "results.json").read_text())
    follows = ("birch: these clusters follow processing history (earlier-JPEG-grid probe AUC 0.91 on train "
               "(naming), valid 0.90, within labels 0.85)")
    results["audit"] = {
        "checks": [{"check": "framing:thumbnails", "flag": False, "message": "framing: no separation"},
                   {"check": "history:clusters:birch", "flag": True, "message": follows}],
        "history": {"note": "probes measure processing history (earlier JPEG, resampling), not realness",
                    "clusterings": [{"clustering": "birch", "flag": True, "message": follows}]}}
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    html = build_report(run)
    audit = html[html.index('id="audit"'):html.index('id="problems"')]
    assert "Processing history" in audit and follows in audit and "FLAG" in audit
    assert "framing: no separation" in audit
    del results["audit"]
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    assert "No audit in this run" in build_report(run)


def test_a_run_written_before_the_image_table_still_reports_the_same(tmp_path):
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]
    old_run = _fake_run(tmp_path / "old", names, schema=1)
    result = CliRunner().invoke(app, ["report", str(old_run)])  # `facecluster report OLD_RUN`
    assert result.exit_code == 0, result.output
    old = (old_run / "report.html").read_text(encoding="utf-8")
    new = build_report(_fake_run(tmp_path / "new", names))
    strip = lambda html: re.sub(r'(id|data-root-id|root_ids|"id")\W+[0-9a-f-]{30,}|p\d{4,}|[0-9a-f]{8}-[0-9a-f-]{27}|'
                                r'<p class="small" id="fc-tables">.*?</p>|/run\b', "", html, flags=re.DOTALL)
    assert "images.parquet" in new and "images.parquet" not in old  # the new run links its table
    assert strip(old).count("data:image/jpeg;base64,") == strip(new).count("data:image/jpeg;base64,") > 4
    for section in ("scores", "clusters", "problems"):
        assert re.findall(r"<td[^>]*>[^<]*</td>", old[old.index(f'id="{section}"'):]) == \
            re.findall(r"<td[^>]*>[^<]*</td>", new[new.index(f'id="{section}"'):])


@pytest.mark.parametrize("damage, expected", [
    (lambda run: (run / "images.parquet").unlink(), "images.parquet: not found, though results.json names it"),
    (lambda run: (run / "images.parquet").write_bytes(b"not parquet"), "images.parquet: not a readable Parquet"),
    (lambda run: _rewrite(run, lambda r: r["images"].update(rows=99)), "holds 7 rows, but results.json says 99"),
    (lambda run: _rewrite(run, lambda r: r.update(images={})), "names no image table"),
])
def test_a_missing_or_mismatched_image_table_is_one_line_naming_the_file(tmp_path, damage, expected):
    run = _fake_run(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"])
    damage(run)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def _rewrite(run: Path, change) -> None:
    results = json.loads((run / "results.json").read_text())
    change(results)
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")


def test_only_the_sample_of_faces_is_embedded_but_every_point_is_drawn(tmp_path):
    names = [f"img_{k:02d}.jpg" for k in range(40)]
    run = _fake_run(tmp_path, names, scores=lambda i, entry: None)
    _rewrite(run, lambda r: r["provenance"]["config"].update(report={"thumbnail_sample": 12}))
    html = build_report(run)
    no_face = sum(1 for k in range(40) if k % 4 == 0)  # always in, and listed with their crop
    tip_faces = html.count('"data:image/jpeg;base64,') - html.count('src="data:image/jpeg;base64,')  # in the plot's data
    assert 12 <= tip_faces <= no_face + 2 * 4 < 39  # + one per cluster x label x split of each method
    assert html.count('<img class="mini" src="data:image/jpeg') == no_face
    assert "for the " in html and "faces sampled across every cluster, label and split" in html
    assert all(f"img_{k:02d}.jpg" in html for k in range(40))  # every point still carries its path
