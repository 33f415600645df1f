"""The report of a 100k-image run stays small and interactive: built from a run folder made by hand, opened in Chromium.

Above ``[report] interactive_points`` the page draws the sample of faces as points over a grey
density of every image; this test checks that at 100k: size, hover (with the face), legend.

No image is embedded and nothing is extracted: the test writes results.json, images.parquet
(through the run's own writer) and reduced.npy for 100k images directly; the images exist as
hard links to a few dozen synthetic faces, so the sampled thumbnails are real JPEG crops. The
time to interactive (navigation start → Bokeh's roots drawn → a hover answered) is written to
tests/artifacts/report-100k.json and printed, never asserted (tests never assert wall-clock times).

Needs Debian's ``chromium`` and the ``playwright`` package, like tests/e2e/test_report_browser.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from facecluster.image_table import write_image_table
from facecluster.records import FaceRecord
from facecluster.report.browser import (
    chromium_page,
    open_until_interactive,
    point_position,
    row_data,
    tip_path,
)
from facecluster.report.html import write_report
from tests.conftest import NEEDS_BROWSER, synthetic_face

pytestmark = NEEDS_BROWSER

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
N_IMAGES = 100_000
LIMIT_BYTES = 20 * 1024 * 1024
CLUSTERS = {"meanshift": 7, "birch": 4}  # method → clusters; meanshift also leaves some noise
SPLITS = (("train", 0.7), ("valid", 0.15), ("test", 0.15))


def fabricate_run(base: Path, n: int = N_IMAGES, n_faces: int = 48, seed: int = 0) -> Path:
    """A finished run folder of ``n`` images as `facecluster run` would leave it (no montages), and its images."""
    rng = np.random.default_rng(seed)
    root, out = base / "data", base / "run"
    out.mkdir(parents=True)
    faces = []
    for k in range(n_faces):  # a few distinct synthetic faces; every image is a hard link to one of them
        label = ("real", "fake")[k % 2]
        path = root / "faces" / f"face_{k:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_face(rng, label).save(path, quality=90)
        faces.append(path)
    split = rng.choice([s for s, _ in SPLITS], size=n, p=[p for _, p in SPLITS])
    label = np.where(rng.random(n) < 0.5, "real", "fake").astype(object)
    label[rng.random(n) < 0.05] = "unlabelled"
    status = np.where(rng.random(n) < 0.01, "no_face", "ok").astype(object)
    status[rng.choice(n, 20, replace=False)] = "corrupt"
    relpaths = [f"{s}/{lab}/img_{k:06d}.jpg" for k, (s, lab) in enumerate(zip(split, label))]
    for s in ("train", "valid", "test"):
        for lab in ("real", "fake", "unlabelled"):
            (root / s / lab).mkdir(parents=True, exist_ok=True)
    for k, rel in enumerate(relpaths):
        os.link(faces[k % n_faces], root / rel)
    usable = status != "corrupt"
    truth = (label == "fake").astype(float)
    centres = rng.normal(0, 4, (CLUSTERS["meanshift"], 10))
    which = np.where(truth > 0, rng.integers(0, 4, n), rng.integers(3, CLUSTERS["meanshift"], n))
    reduced = (centres[which] + rng.normal(0, 1, (n, 10))).astype(np.float32)
    reduced[~usable] = np.nan
    assignments = {"meanshift": np.where(usable & (rng.random(n) > 0.02), which, -1),
                   "birch": np.where(usable, which % CLUSTERS["birch"], -1)}
    synthetic = {name: np.where(usable, np.clip(0.6 * truth + 0.4 * rng.random(n), 0, 1), np.nan)
                 for name in assignments}
    box, found = FaceRecord(found=True, confidence=0.99, box=(18.0, 14.0, 60.0, 68.0)).to_array(), \
        FaceRecord(found=False).to_array()
    records = np.where((status == "ok")[:, None], box, found)
    labels = [None if lab == "unlabelled" else str(lab) for lab in label]
    samples = [SimpleNamespace(relpath=rel, split=str(s), label=lab, sha256=f"{k:064x}")
               for k, (rel, s, lab) in enumerate(zip(relpaths, split, labels))]
    messages = [f"{rel}: damaged (truncated); replace it" if st == "corrupt" else None
                for rel, st in zip(relpaths, status)]
    images = write_image_table(out, samples, list(status), messages, records, assignments, synthetic)
    np.save(out / "reduced.npy", reduced, allow_pickle=False)
    methods = {}
    for name, assigned in assignments.items():
        mapping = {str(c): ("fake" if c < 4 else "real") for c in range(CLUSTERS[name])}
        clusters = {s: {str(c): {lab: int(((assigned == c) & (split == s) & (label == lab)).sum())
                                 for lab in ("real", "fake")} for c in range(CLUSTERS[name])}
                    for s, _ in SPLITS}
        scores = {s: {"n": int((split == s).sum()), "accuracy": 0.8, "balanced_accuracy": 0.8, "ari": 0.3,
                      "nmi": 0.3, "roc_auc": 0.85, "average_precision": 0.85,
                      "confusion": {"labels": ["real", "fake"], "matrix": [[40, 10], [10, 40]]}} for s, _ in SPLITS}
        methods[name] = {"algorithm": name, "params": {}, "n_clusters": CLUSTERS[name], "bandwidth": None,
                         "mapping": mapping, "mapping_source": "majority", "clusters": clusters, "scores": scores,
                         "figures": {"montages": {}}}
    counts = {s: {lab: int(((split == s) & (label == lab)).sum()) for lab in ("real", "fake", "unlabelled")}
              for s, _ in SPLITS}
    results = {
        "schema_version": 2, "created": "2026-01-01T00:00:00+00:00",
        "dataset": {"source": str(root), "root": str(root), "split_source": "folders", "fingerprint": "f" * 64,
                    "n_images": n, "n_labelled": int((label != "unlabelled").sum()), "counts": counts},
        "faces": {"detector": "mtcnn", "found": int((status == "ok").sum()), "no_face": int((status == "no_face").sum()),
                  "failed": int((~usable).sum())},
        "features": {"extractor": "facenet", "dim": 512},
        "reduce": {"steps": ["pca"], "n_components": 10, "explained_variance_ratio": [0.1] * 10},
        "methods": methods,
        "problems": [{"path": relpaths[i], "code": "corrupt", "message": messages[i]} for i in np.flatnonzero(~usable)],
        "images": images,
        "scoring": {"method": "meanshift", "named": True, "table": [], "n_scored": int(usable.sum())},
        "provenance": {"versions": {"python": "3.11"}, "seed": seed, "engine": "local",
                       "config": {"seed": seed, "faces": {"margin": 0.2}, "report": {"thumbnail_sample": 2000}}},
        "timings": {"total_seconds": 1.0, "computed": {"faces": 0, "features": 0}},
    }
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> tuple[Path, float]:
    """The fabricated 100k-image run and its report, with the seconds the report took to build."""
    out = fabricate_run(tmp_path_factory.mktemp("report-100k"))
    started = time.perf_counter()
    write_report(out)
    return out, time.perf_counter() - started


def test_a_100k_image_report_is_small_and_answers_hover_and_legend(big_run):
    out, build_seconds = big_run
    page_file = out / "report.html"
    size = page_file.stat().st_size
    assert size < LIMIT_BYTES, f"report.html is {size / 1e6:.1f} MB"
    html = page_file.read_text(encoding="utf-8")
    assert 'href="images.parquet"' in html  # the per-image table is linked, not inlined
    results = json.loads((out / "results.json").read_text())
    errors = []
    with chromium_page() as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        opened = open_until_interactive(page, page_file.as_uri(), len(results["methods"]))
        drawn_ms, hovered_ms, row, shown = opened["drawn_ms"], opened["hovered_ms"], opened["row"], opened["path"]
        xy = np.array([row_data(page, "x"), row_data(page, "y")], dtype=float).T
        x, y = point_position(page, "scatter-0", row)
        paths = row_data(page, "path")
        near = np.flatnonzero(((xy - xy[row]) ** 2).sum(axis=1) < 1e-3 * np.ptp(xy, axis=0).max() ** 2)
        assert shown in {paths[i] for i in near}, shown
        assert page.evaluate("() => document.querySelector('#fc-tip img').naturalWidth") > 0  # with its face

        # The points are the sample of faces; every usable image is in the density beneath them.
        usable = N_IMAGES - results["faces"]["failed"]
        assert 2000 <= len(paths) < usable // 10
        assert all(thumb.startswith("data:image/jpeg;base64,") for thumb in row_data(page, "thumb"))
        for j in range(len(results["methods"])):
            assert page.evaluate("j => Bokeh.documents[0].get_model_by_name('density-' + j) !== null", j)
        assert page.locator(".fc-plot").first.get_by_text(f"all {usable} images (density)").count() == 1

        # A click on a legend entry hides that cluster's points from the plot and the hover.
        clusters = row_data(page, "c0")
        cluster = clusters[row]
        mapping = results["methods"]["meanshift"]["mapping"]
        entry = "noise" if cluster == "noise" else f"cluster {cluster} → {mapping[cluster]}"
        page.locator(".fc-plot").first.get_by_text(entry, exact=True).click()
        page.wait_for_function("""() => Bokeh.documents[0].get_model_by_name('scatter-0').renderers
            .filter(r => r.visible === false).length > 0""", timeout=30_000)
        page.mouse.move(5, 5)
        page.mouse.move(x, y, steps=3)
        page.wait_for_timeout(500)
        now = tip_path(page)
        assert now is None or clusters[paths.index(now)] != cluster
        page.evaluate("document.getElementById('scatter').scrollIntoView()")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-100k.png"))
    assert not errors, errors
    timing = {"n_images": N_IMAGES, "report_bytes": size, "build_seconds": round(build_seconds, 2),
              "navigation_to_drawn_ms": round(drawn_ms), "navigation_to_hover_ms": round(hovered_ms),
              "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    (ARTIFACTS / "report-100k.json").write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    print(f"100k report: {size / 1e6:.1f} MB, built in {build_seconds:.1f} s; drawn {drawn_ms / 1e3:.1f} s and "
          f"hover answered {hovered_ms / 1e3:.1f} s after navigation start (load average {timing['load_average']:.1f} "
          f"on {timing['cpus']} CPUs: not a benchmark)")
