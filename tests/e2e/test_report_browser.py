"""The report of a real (small) run, opened from file:// in headless Chromium, as a person would.

Needs Debian's ``chromium`` (.ci/run installs it) and the ``playwright`` package (the ``test``
extra); skipped, with the reason, when either is missing. Installs nothing itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from facecluster.pipeline import run
from facecluster.report.browser import CHROMIUM, chromium_page, hover_point, row_data, wait_for_plots
from facecluster.resolve import build_config
from facecluster.store import FeatureStore
from tests.conftest import make_dataset

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: apt-get install chromium (.ci/run does)"),
]
pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install 'facecluster[test]'")

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HOSTILE_FILE = "<img src=x onerror=alert(1)>.jpg"
HOSTILE_NESTED = "x</script><script>alert(2)</script>.jpg"  # folders "x<" and "script><script>alert(2)<"
# Method names cannot carry markup: config refuses anything but letters, digits, "-", "_", "." (they
# name figure files); tests/robustness covers that refusal. This one still checks names show as given.
HOSTILE_METHOD = "birch.v2-k_3"


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> Path:
    """A real run (MTCNN, FaceNet, PCA, two clusterers) on synthetic images with hostile names."""
    base = tmp_path_factory.mktemp("report-run")
    data = make_dataset(base / "data", {"train": {"real": 12, "fake": 12}, "valid": {"real": 6, "fake": 6}})
    os.rename(data / "train/real/img_000.jpg", data / "train/real" / HOSTILE_FILE)
    nested = data / "valid/fake" / HOSTILE_NESTED
    nested.parent.mkdir(parents=True)
    os.rename(data / "valid/fake/img_000.jpg", nested)
    (data / "train/fake/\"empty\" & 'odd'.jpg").write_bytes(b"")
    config = build_config("study", {"methods": {
        "meanshift": {"algorithm": "meanshift", "params": {"quantile": 0.2}},
        HOSTILE_METHOD: {"algorithm": "birch", "params": {"n_clusters": 3, "threshold": 0.08}},
    }})
    with pytest.MonkeyPatch.context() as patch:  # the session's model cache, as the autouse fixture would
        patch.setenv("FACECLUSTER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "facecluster-cache"))
        run(data, config, base / "run", store=FeatureStore(base / "cache"), progress=False)
    return base / "run"


def test_report_in_chromium_offline_complete_hoverable_and_escaped(report_run):
    results = json.loads((report_run / "results.json").read_text())
    url = (report_run / "report.html").as_uri()
    errors, requests, dialogs = [], [], []
    with chromium_page() as page:
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
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
                image = next(i for i in results["images"] if i["path"] == paths[row])
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
