"""How big report.html gets and how soon it answers in Chromium, as the number of images grows.

For each size, a synthetic run folder is fabricated (results.json, images.parquet, reduced.npy and
hard links to a few synthetic faces: no extraction; the fabricator of
tests/e2e/test_report_scale.py), its report built, and the page opened from file:// in headless
Chromium (`facecluster.report.browser.open_until_interactive`), ``--rounds`` times (median shown):

* ``sample + density`` — the default: above ``[report] interactive_points`` only the sample of
  faces is drawn as points, over a grey density of every image;
* ``all points`` — every image a hoverable, selectable point (``interactive_points`` raised past N),
  the alternative the default was chosen against.

Times are the page's own clock from navigation start: ``drawn`` (Bokeh's roots exist) and
``hover`` (the tooltip answered a hover on the middle point). Run it on a quiet machine.

    python benchmarks/report_open.py [--sizes 1000 10000 100000] [--rounds 3]

Writes ``benchmarks/results/report_open-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, print_table, write_results

sys.path.insert(0, str(REPO))  # the fabricator lives with the test that uses it

from facecluster.report.browser import chromium_page, open_until_interactive  # noqa: E402
from facecluster.report.html import write_report  # noqa: E402
from tests.e2e.test_report_scale import fabricate_run  # noqa: E402

MODES = {"sample + density": None, "all points": 10**7}


def _set_interactive_points(out: Path, limit: int | None) -> None:
    path = out / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    report = results["provenance"]["config"].setdefault("report", {})
    report.pop("interactive_points", None)
    if limit is not None:
        report["interactive_points"] = limit
    path.write_text(json.dumps(results), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows, table = [], []
    with tempfile.TemporaryDirectory(prefix="report-open-") as scratch:
        for n in args.sizes:
            out = fabricate_run(Path(scratch) / str(n), n=n)
            for mode, limit in MODES.items():
                _set_interactive_points(out, limit)
                started = time.perf_counter()
                page_file = write_report(out)
                build = time.perf_counter() - started
                opened = []
                for _ in range(args.rounds):
                    with chromium_page() as page:
                        opened.append(open_until_interactive(page, page_file.as_uri(), 2))
                drawn = statistics.median(o["drawn_ms"] for o in opened) / 1e3
                hover = statistics.median(o["hovered_ms"] for o in opened) / 1e3
                size = page_file.stat().st_size / 1e6
                rows.append({"n_images": n, "mode": mode, "report_mb": round(size, 2), "build_seconds": round(build, 2),
                             "drawn_seconds": [round(o["drawn_ms"] / 1e3, 2) for o in opened],
                             "hover_seconds": [round(o["hovered_ms"] / 1e3, 2) for o in opened]})
                table.append([n, mode, size, build, drawn, hover])
    path = write_results("report_open", {"rounds": args.rounds, "rows": rows})
    print_table(["images", "scatter", "report MB", "build s", "drawn s", "hover answered s"], table)
    print(f"\n{path}")


if __name__ == "__main__":
    main()
