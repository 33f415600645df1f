"""The report of a real (small) run, opened from file:// in headless Chromium, as a person would.

Needs Debian's ``chromium`` (.ci/run installs it) and the ``playwright`` package (the ``test``
extra); skipped, with the reason, when either is missing. Installs nothing itself.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as Polygon

from facecluster.csv_cells import escape_formula, unescape_formula
from facecluster.pipeline import run
from facecluster.report.browser import (
    chromium_page,
    hover_point,
    is_driver_message,
    point_position,
    row_data,
    wait_for_plots,
)
from facecluster.resolve import build_config
from facecluster.store import FeatureStore
from tests.conftest import NEEDS_BROWSER, image_rows, make_dataset
from tests.unit.test_csv_cells import HOSTILE as FORMULAS

pytestmark = NEEDS_BROWSER

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HOSTILE_FILE = "<img src=x onerror=alert(1)>.jpg"
HOSTILE_NESTED = "x</script><script>alert(2)</script>.jpg"  # folders "x<" and "script><script>alert(2)<"
# Method names cannot carry markup: config refuses anything but letters, digits, "-", "_", "." (they
# name figure files); tests/robustness covers that refusal. This one still checks names show as given.
HOSTILE_METHOD = "birch.v2-k_3"
FORMULA = '=HYPERLINK("x","click").jpg'  # a spreadsheet would run it: the selection CSV holds '=HYPERLINK(…
PER_CLASS = {"train": {"real": 12, "fake": 12}, "valid": {"real": 6, "fake": 6}}
METHODS = {"meanshift": {"algorithm": "meanshift", "params": {"quantile": 0.2}},
           HOSTILE_METHOD: {"algorithm": "birch", "params": {"n_clusters": 3, "threshold": 0.08}}}


@pytest.fixture(scope="module")
def feature_store(tmp_path_factory) -> FeatureStore:
    """One feature store for the module's runs: the unlabelled run's images are the labelled run's."""
    return FeatureStore(tmp_path_factory.mktemp("report-store"))


def _run(tmp_path_factory, data: Path, out: Path, store: FeatureStore) -> Path:
    config = build_config("study", {"methods": METHODS})
    with pytest.MonkeyPatch.context() as patch:  # the session's model cache, as the autouse fixture would
        patch.setenv("FACECLUSTER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "facecluster-cache"))
        run(data, config, out, store=store, progress=False)
    return out


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, feature_store) -> Path:
    """A real run (MTCNN, FaceNet, PCA, two clusterers) on synthetic images with hostile names."""
    base = tmp_path_factory.mktemp("report-run")
    data = make_dataset(base / "data", PER_CLASS)
    os.rename(data / "train/real/img_000.jpg", data / "train/real" / HOSTILE_FILE)
    nested = data / "valid/fake" / HOSTILE_NESTED
    nested.parent.mkdir(parents=True)
    os.rename(data / "valid/fake/img_000.jpg", nested)
    (data / "train/fake/\"empty\" & 'odd'.jpg").write_bytes(b"")
    return _run(tmp_path_factory, data, base / "run", feature_store)


@pytest.fixture(scope="module")
def unlabelled_run(tmp_path_factory, feature_store) -> Path:
    """The same images in one flat folder: no labels at all, so no cluster is named and nothing is scored."""
    base = tmp_path_factory.mktemp("unlabelled-run")
    nested = make_dataset(base / "nested", PER_CLASS)
    flat = base / "data"
    flat.mkdir()
    for k, image in enumerate(sorted(nested.rglob("*.jpg"))):
        shutil.move(image, flat / (FORMULA if k == 0 else f"face_{k:03d}.jpg"))
    shutil.rmtree(nested)
    return _run(tmp_path_factory, flat, base / "run", feature_store)


def test_report_in_chromium_offline_complete_hoverable_and_escaped(report_run):
    results = json.loads((report_run / "results.json").read_text())
    url = (report_run / "report.html").as_uri()
    errors, requests, dialogs = [], [], []
    with chromium_page() as page:
        page.on("console", lambda m: errors.append(m.text)
                if m.type in ("error", "warning") and not is_driver_message(m.text) else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        wait_for_plots(page, len(results["methods"]))

        # The score table: one row per method, named as configured (hostile name shown as text).
        rows = page.locator("table.scores tbody tr")
        assert rows.count() == len(results["methods"])
        for k, name in enumerate(results["methods"]):
            assert rows.nth(k).locator("td b").inner_text() == name
            valid = results["methods"][name]["scores"]["valid"]["accuracy"]
            assert f"{valid:.3f}" in rows.nth(k).inner_text()

        # Every montage, embedded.
        expected = sum(len(m["figures"]["montages"]) for m in results["methods"].values())
        montages = page.locator("img.montage")
        assert montages.count() == expected > 0
        for k in range(expected):
            assert montages.nth(k).get_attribute("src").startswith("data:image/jpeg;base64,")
            assert montages.nth(k).evaluate("img => img.complete && img.naturalWidth > 0")

        # Hovering a point shows its face, file name, label and cluster; on every figure.
        paths = row_data(page, "path")
        for j in range(len(results["methods"])):
            for row in (0, len(paths) - 1, paths.index(f"train/real/{HOSTILE_FILE}")):
                tip = hover_point(page, f"scatter-{j}", row)
                assert tip["visible"] and tip["image_visible"], (j, row, tip)
                assert tip["src"].startswith("data:image/jpeg;base64,")
                assert tip["path"] == paths[row]
                image = next(i for i in image_rows(report_run) if i["path"] == paths[row])
                cluster = list(image["clusters"].values())[j]
                assert f"true: {image['label']} ({image['split']})" in tip["meta"]
                assert f"cluster {'noise' if cluster is None else cluster}" in tip["meta"]
        page.mouse.move(5, 5)
        assert page.locator("#fc-tip").is_hidden()

        # A click on a legend entry hides that cluster: its points no longer answer the hover.
        clusters = row_data(page, "c0")
        mapping = list(results["methods"].values())[0]["mapping"]
        page.locator(".fc-plot").first.get_by_text(f"cluster {clusters[0]} → {mapping[clusters[0]]}", exact=True).click()
        page.wait_for_timeout(300)
        tip = hover_point(page, "scatter-0", 0)
        assert not tip["visible"] or tip["path"] != paths[0]
        assert hover_point(page, "scatter-1", 0)["path"] == paths[0]  # the other figure keeps it

        # Hostile names are text, never markup.
        problems = page.locator("#problems").text_content()  # including the folded no-face list
        for name in ("train/fake/\"empty\" & 'odd'.jpg", f"train/real/{HOSTILE_FILE}", f"valid/fake/{HOSTILE_NESTED}"):
            assert name in problems
        assert page.locator("img[src='x'], svg[onload], b[onmouseover]").count() == 0
        assert HOSTILE_METHOD in page.locator("#clusters").inner_text()

        page.evaluate("window.scrollTo(0, 0)")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "report-e2e.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")

        # Zoom on one figure moves the other with it (shared ranges).
        before = page.evaluate("() => Bokeh.documents[0].get_model_by_name('scatter-1').x_range.end")
        page.mouse.move(*page.evaluate("""() => { const plot = document.querySelector('.fc-plot');
                                                  plot.scrollIntoView({behavior: 'instant', block: 'center'});
                                                  const r = plot.getBoundingClientRect();
                                                  return [r.left + r.width / 3, r.top + r.height / 2]; }"""))
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(200)
        after = page.evaluate("() => Bokeh.documents[0].get_model_by_name('scatter-1').x_range.end")
        assert after != before

    assert not dialogs, dialogs
    assert not errors, errors
    assert [u for u in requests if not u.startswith("data:")] == [url]


def _positions(page, figure: str, n: int) -> np.ndarray:
    """Viewport pixels of every row of the shared data source in ``figure`` (scrolled to the middle first)."""
    point_position(page, figure, 0, scroll=True)
    return np.array([point_position(page, figure, row, scroll=False) for row in range(n)])


def _selected(page) -> list[int]:
    return sorted(page.evaluate("() => Array.from(Bokeh.documents[0].get_model_by_name('points').selected.indices)"))


def _download_rows(page) -> list[dict]:
    with page.expect_download() as info:
        page.locator("#fc-download").click()
    download = info.value
    assert download.suggested_filename == "facecluster-selection.csv"
    with open(download.path(), newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _drag(page, path: list[tuple[float, float]]) -> None:
    page.mouse.move(*path[0])
    page.mouse.down()
    for point in path[1:]:
        page.mouse.move(*point, steps=6)
    page.mouse.up()
    page.wait_for_timeout(300)


def _check_selection(page, results: dict, images: list[dict], paths: list[str], inside: np.ndarray,
                     near_edge: np.ndarray) -> list[int]:
    """The selection holds every point well inside the drawn shape, none well outside; the CSV exactly the selection."""
    selected = _selected(page)
    chosen = np.zeros(len(paths), dtype=bool)
    chosen[selected] = True
    assert chosen[inside & ~near_edge].all() and not chosen[~inside & ~near_edge].any()
    assert page.locator("#fc-selected").inner_text() == f"{len(selected)} point{'s' if len(selected) != 1 else ''} selected"
    rows = _download_rows(page)
    names = list(results["methods"])
    assert list(rows[0]) == ["path", "split", "given_label", "label"] + [f"cluster_{m}" for m in names] + ["score"]
    assert [row["path"] for row in rows] == [escape_formula(paths[i]) for i in selected]
    rows = [{**row, "path": unescape_formula(row["path"])} for row in rows]
    by_path = {entry["path"]: entry for entry in images}
    method = results["scoring"]["method"]
    for row in rows:
        entry = by_path[row["path"]]
        assert (row["split"], row["given_label"], row["label"]) == (entry["split"], entry["label"] or "", "")
        for name in names:
            cluster = entry["clusters"][name]
            assert row[f"cluster_{name}"] == ("" if cluster is None else str(cluster))
        assert float(row["score"]) == pytest.approx(entry["scores"][method], abs=1e-6)
    return selected


def test_box_and_lasso_selections_download_as_csv_and_faces_rank_by_score(report_run):
    results = json.loads((report_run / "results.json").read_text())
    images = image_rows(report_run)
    with chromium_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((report_run / "report.html").as_uri())
        wait_for_plots(page, len(results["methods"]))
        paths = row_data(page, "path")
        assert page.locator("#fc-download").is_disabled()

        # Box select on the first figure, by mouse: pick the tool in its toolbar, drag a rectangle.
        page.locator(".fc-plot").nth(0).get_by_title("Box Select").click()
        xy = _positions(page, "scatter-0", len(paths))
        (left, top), (right, bottom) = np.percentile(xy, 20, axis=0), np.percentile(xy, 80, axis=0)
        _drag(page, [(left, top), (right, bottom)])
        inside = (xy[:, 0] > left) & (xy[:, 0] < right) & (xy[:, 1] > top) & (xy[:, 1] < bottom)
        distance = np.minimum.reduce([abs(xy[:, 0] - left), abs(xy[:, 0] - right), abs(xy[:, 1] - top),
                                      abs(xy[:, 1] - bottom)])
        box = _check_selection(page, results, images, paths, inside, distance < 3)
        assert 0 < len(box) < len(paths)

        # Lasso on the second figure replaces it: a triangle around the points' middle.
        page.locator(".fc-plot").nth(1).get_by_title("Lasso Select").click()
        xy = _positions(page, "scatter-1", len(paths))
        low, high = xy.min(axis=0), xy.max(axis=0)
        triangle = [(low[0] - 5, low[1] - 5), (high[0] + 5, low[1] - 5), ((low[0] + high[0]) / 2, high[1] + 5)]
        _drag(page, triangle + [triangle[0]])
        shape = Polygon(triangle)
        inside = shape.contains_points(xy)
        near_edge = shape.contains_points(xy, radius=6) != shape.contains_points(xy, radius=-6)
        lasso = _check_selection(page, results, images, paths, inside, near_edge)
        assert lasso and lasso != box

        # The ranked faces: the top of the ranking, most synthetic-looking first, as results.json scores them.
        method = results["scoring"]["method"]
        scored = sorted((e for e in images if e["scores"].get(method) is not None),
                        key=lambda e: -e["scores"][method])
        most = page.locator("ol.ranked[data-kind='most'] li")
        shown = [float(s) for s in most.evaluate_all("items => items.map(i => i.dataset.score)")]
        assert len(shown) == min(30, len(scored)) and shown == sorted(shown, reverse=True)
        assert shown == pytest.approx([e["scores"][method] for e in scored[:len(shown)]])
        assert most.evaluate_all("items => items.map(i => i.dataset.rank)") == [str(k) for k in range(1, len(shown) + 1)]
        assert most.nth(0).get_attribute("title") == scored[0]["path"]
        assert most.nth(0).locator(".ranked-score").inner_text() == f"{scored[0]['scores'][method]:.3f}"
        assert most.nth(0).locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
        assert page.locator("svg.hist rect").count() > 0
    assert not errors, errors


def test_unlabelled_run_shows_scores_as_absent_never_zero(unlabelled_run):
    results = json.loads((unlabelled_run / "results.json").read_text())
    why = results["scoring"]["why_no_scores"]
    assert not results["scoring"]["named"] and why
    with chromium_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((unlabelled_run / "report.html").as_uri())
        wait_for_plots(page, len(results["methods"]))
        cells = page.locator("table.scores tbody td.num:not(:nth-child(2))")
        assert cells.count() > 0
        assert set(cells.all_inner_texts()) == {"–"}
        assert {cells.nth(k).get_attribute("title") for k in range(cells.count())} == {why}
        for name in results["methods"]:
            assert why in page.locator(f"#scores p.absent[data-method='{name}']").inner_text()
        assert why in page.locator("#synthetic").inner_text()
        assert page.locator("ol.ranked").count() == 0
        assert "0.000" not in page.locator("#scores").inner_text()

        # Selections still download, with empty labels and scores (nothing to rank by yet).
        page.locator(".fc-plot").nth(0).get_by_title("Box Select").click()
        paths = row_data(page, "path")
        xy = _positions(page, "scatter-0", len(paths))
        _drag(page, [tuple(xy.min(axis=0) - 8), tuple(xy.max(axis=0) + 8)])
        assert _selected(page) == list(range(len(paths)))
        rows = _download_rows(page)
        assert FORMULA in paths and "'" + FORMULA in [row["path"] for row in rows]  # escaped as csv_cells escapes
        assert sorted(row["path"] for row in rows) == sorted(escape_formula(p) for p in paths)
        assert {(row["given_label"], row["score"]) for row in rows} == {("", "")}
        # the page's CSV cells follow facecluster.csv_cells' rule (one JS file, csv_cell.js, for both pages)
        cells = page.evaluate("texts => texts.map(window.facecluster.csvCell)", FORMULAS)
    assert not errors, errors
    assert [next(csv.reader([cell])) for cell in cells] == [[escape_formula(text)] for text in FORMULAS]
