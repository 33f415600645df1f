"""Open a report in headless Chromium (Debian's ``chromium``) through Playwright, for tests and screenshots.

Playwright drives the system's Chromium via ``executable_path``; it downloads no browser.
Install it with ``pip install 'facecluster[test]'``.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from facecluster.errors import MissingExtraError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Scroll a figure into view and say where a row of the shared data source is drawn, in viewport pixels.
_POINT_JS = """([figure, row, scroll]) => {
  const doc = Bokeh.documents[0];
  const model = doc.get_model_by_name(figure);
  const view = [...Bokeh.index.roots].find(v => v.model === model);
  const points = doc.get_model_by_name("points");
  if (scroll) view.el.scrollIntoView({behavior: "instant", block: "center"});
  const box = view.canvas_view.el.getBoundingClientRect();
  return [box.left + view.frame.x_scale.compute(points.data.x[row]),
          box.top + view.frame.y_scale.compute(points.data.y[row])];
}"""


def is_driver_message(text: str) -> bool:
    """A note of Chromium's own GL driver (software WebGL in headless mode, e.g. "GPU stall due to
    ReadPixels" while taking a screenshot), logged to the page's console but not from the page."""
    return text.startswith("[.WebGL-") and "GL Driver Message" in text


@contextmanager
def chromium_page(width: int = 1400, height: int = 900, executable: Path = CHROMIUM) -> Iterator:
    """A Playwright page in a fresh headless Chromium profile, closed on exit."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise MissingExtraError("Playwright is not installed; pip install 'facecluster[test]'") from None
    if not Path(executable).exists():
        raise RuntimeError(f"{executable}: no Chromium there; apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="facecluster-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(executable), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def wait_for_plots(page, count: int, timeout_ms: float = 30_000) -> None:
    """Wait until Bokeh has drawn ``count`` root figures."""
    page.wait_for_function("n => window.Bokeh && Bokeh.documents.length > 0 && [...Bokeh.index.roots].length >= n",
                           arg=count, timeout=timeout_ms)


def point_position(page, figure: str, row: int, scroll: bool = True) -> tuple[float, float]:
    """Viewport coordinates of data-source row ``row`` in the Bokeh figure named ``figure``.

    With ``scroll`` the figure is first scrolled to the middle of the viewport.
    """
    x, y = page.evaluate(_POINT_JS, [figure, row, scroll])
    return float(x), float(y)


def row_data(page, column: str) -> list:
    """A column of the report's shared point data (rows in the scatter's order)."""
    return page.evaluate("c => Array.from(Bokeh.documents[0].get_model_by_name('points').data[c])", column)


def hover_point(page, figure: str, row: int, scroll: bool = True) -> dict:
    """Move the mouse onto a point and return what the tooltip shows (visible, thumbnail src, text)."""
    x, y = point_position(page, figure, row, scroll)
    page.mouse.move(x - 40, y - 40)
    page.mouse.move(x, y, steps=4)
    page.wait_for_timeout(150)
    return page.evaluate("""() => {
      const tip = document.getElementById("fc-tip");
      const img = tip.querySelector("img");
      return {visible: !tip.hidden && tip.offsetWidth > 0, src: img.getAttribute("src") || "",
              image_visible: !img.hidden && img.offsetWidth > 0,
              path: tip.querySelector(".fc-tip-path").textContent,
              meta: tip.querySelector(".fc-tip-meta").textContent};
    }""")


# The path the tooltip shows, or null while it is hidden.
_TIP_PATH_JS = """() => { const tip = document.getElementById("fc-tip");
  return !tip.hidden && tip.offsetWidth > 0 ? tip.querySelector(".fc-tip-path").textContent : null; }"""


def tip_path(page) -> str | None:
    """The file name the hover tooltip shows, or None while it is hidden."""
    return page.evaluate(_TIP_PATH_JS)


def open_until_interactive(page, url: str, figures: int, timeout_ms: float = 120_000) -> dict:
    """Open ``url`` and hover the point nearest the middle of the first figure's data; how long it took.

    Returns ``drawn_ms`` (navigation start → Bokeh has drawn ``figures`` roots), ``hovered_ms``
    (→ the tooltip answered the hover), and the ``row`` hovered and the ``path`` shown. Times are
    the page's own clock (``performance.now()``, 0 at navigation start).
    """
    page.goto(url, wait_until="commit")
    wait_for_plots(page, figures, timeout_ms)
    drawn_ms = page.evaluate("performance.now()")
    row = page.evaluate("""() => { const d = Bokeh.documents[0].get_model_by_name("points").data;
      const mid = a => [...a].sort((p, q) => p - q)[a.length >> 1];
      const mx = mid(d.x), my = mid(d.y);
      let best = 0, distance = Infinity;
      for (let i = 0; i < d.x.length; i++) {
        const e = (d.x[i] - mx) ** 2 + (d.y[i] - my) ** 2;
        if (e < distance) { best = i; distance = e; }
      }
      return best; }""")
    x, y = point_position(page, "scatter-0", row)
    page.mouse.move(x - 30, y - 30)
    page.mouse.move(x, y, steps=3)
    page.wait_for_function(_TIP_PATH_JS, timeout=timeout_ms)
    hovered_ms = page.evaluate("performance.now()")
    return {"drawn_ms": drawn_ms, "hovered_ms": hovered_ms, "row": row, "path": tip_path(page)}
