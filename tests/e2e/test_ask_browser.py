"""The labelling page of `facecluster ask`, used in headless Chromium as a person would: answer, download, name.

Needs Debian's ``chromium`` (.ci/run installs it) and ``playwright`` (the ``test`` extra); skipped with the
reason when either is missing.
"""

from __future__ import annotations

import csv
import shutil

from typer.testing import CliRunner

from facecluster.cli import app
from facecluster.csv_cells import escape_formula, unescape_formula
from facecluster.report.browser import chromium_page
from facecluster.scoring import load_model
from tests.conftest import NEEDS_BROWSER, make_dataset
from tests.unit.test_csv_cells import HOSTILE as FORMULAS

pytestmark = NEEDS_BROWSER

HOSTILE = "<img src=x onerror=alert(1)>,\"q\".jpg"
FORMULA = '=HYPERLINK("x","click").jpg'  # a spreadsheet would run it: labels.csv holds it as '=HYPERLINK(…
SETTINGS = ('[faces]\ndetector = "none"\n[features]\nextractor = "tiny"\n[reduce]\nstandardize = true\n'
            'n_components = 2\ntypicality = false\n[methods.kmeans]\nalgorithm = "kmeans"\nparams = { n_clusters = 2 }\n'
            '[methods.birch]\nalgorithm = "birch"\nparams = { n_clusters = 2, threshold = 0.05 }\n')


def test_answers_given_on_the_page_name_the_models_clusters(tmp_path, tiny_extractor, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    nested = make_dataset(tmp_path / "nested", {"train": {"real": 10, "fake": 10}})
    flat, truth = tmp_path / "flat", {}
    flat.mkdir()
    for k, image in enumerate(sorted(nested.rglob("*.jpg"))):
        name = HOSTILE if k == 0 else FORMULA if k == 1 else f"face_{(k * 37) % 101:03d}.jpg"
        shutil.copy(image, flat / name)
        truth[name] = image.parent.name
    (tmp_path / "tiny.toml").write_text(SETTINGS)
    cache = ["--cache-dir", str(tmp_path / "cache"), "--workers", "0", "-q"]
    fitted = CliRunner().invoke(app, ["fit", str(flat), "--out", str(tmp_path / "fit"), "--config",
                                      str(tmp_path / "tiny.toml"), *cache])
    assert fitted.exit_code == 0, fitted.output
    asked = CliRunner().invoke(app, ["ask", str(flat), "--model", str(tmp_path / "fit"), "--out",
                                     str(tmp_path / "ask"), "-k", "20", *cache])
    assert asked.exit_code == 0, asked.output

    errors, dialogs = [], []
    with chromium_page() as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto((tmp_path / "ask" / "ask.html").as_uri())
        cards = page.locator(".face")
        assert cards.count() == 20
        paths = [cards.nth(i).locator(".path").inner_text() for i in range(20)]
        assert sorted(paths) == sorted(truth)  # the hostile name shows as text
        for i in range(20):
            assert cards.nth(i).locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
        # half by clicking, half by keys (after each answer the next card is the current one)
        for i in range(10):
            cards.nth(i).locator(f"button[data-answer={truth[paths[i]]}]").click()
        cards.nth(10).locator(f"button[data-answer={truth[paths[10]]}]").click()
        for i in range(11, 20):
            page.keyboard.press("r" if truth[paths[i]] == "real" else "f")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowRight")  # back on the last card (the last answer stayed on it)
        page.keyboard.press("u")  # clears the last answer: it stays blank in the download
        assert page.locator("#fc-count").inner_text() == "19 of 20 labelled"
        with page.expect_download() as info:
            page.locator("#fc-save").click()
        assert info.value.suggested_filename == "labels.csv"
        downloaded = tmp_path / "labels.csv"
        shutil.copy(info.value.path(), downloaded)
        # the page's CSV cells follow facecluster.csv_cells' rule (one JS file, csv_cell.js, for both pages)
        cells = page.evaluate("texts => texts.map(window.facecluster.csvCell)", FORMULAS)
    assert not errors and not dialogs
    assert [next(csv.reader([cell])) for cell in cells] == [[escape_formula(text)] for text in FORMULAS]
    with open(downloaded, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == [escape_formula(p) for p in paths]
    assert "'" + FORMULA in [r["path"] for r in rows]
    assert [unescape_formula(r["path"]) for r in rows] == paths
    assert [r["label"] for r in rows] == [truth[p] for p in paths[:19]] + [""]

    # --images: the answers' paths must name the right images (an unescaped '=… would be refused)
    named = CliRunner().invoke(app, ["name", str(tmp_path / "fit"), "--labels", str(downloaded), "--images", str(flat),
                                     "--cache-dir", str(tmp_path / "cache")])
    assert named.exit_code == 0, named.output
    frame = load_model(tmp_path / "fit").score(flat)
    assert (frame["label"] == [truth[p] for p in frame["path"]]).mean() > 0.9
