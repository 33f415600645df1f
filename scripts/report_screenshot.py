"""Run the study on the dev images and save a screenshot of its report.html for the README.

    python scripts/report_screenshot.py [--data ../shared/datasets/faces-dev] [--out docs/report.png]

Needs Debian's chromium and the test extra (playwright). The run goes to runs/report-screenshot
(features come from the user cache when a run has computed them before). The screenshot is the top
of the page down to the scatter plots, with one point hovered, quantised to 256 colours to stay small.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from PIL import Image

from facecluster.pipeline import run
from facecluster.report.browser import chromium_page, hover_point, row_data, wait_for_plots
from facecluster.resolve import load_config

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "faces-dev")
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "report-screenshot")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "report.png")
    parser.add_argument("--hover", default="valid/real/real_101.jpg", help="Image whose point is hovered.")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"error: {args.data}: no dataset there; pass --data", file=sys.stderr)
        return 2

    data = Path(os.path.relpath(args.data))  # the page shows the dataset as given
    results = run(data, load_config(None, "study"), args.run_dir, progress=True)
    report = args.run_dir / "report.html"
    print(f"report: {report} ({report.stat().st_size / 1e6:.1f} MB)")

    with chromium_page(width=1360, height=2260) as page:  # down to the scatter, below the ranked faces
        page.goto(report.as_uri())
        wait_for_plots(page, len(results["methods"]))
        paths = row_data(page, "path")
        row = paths.index(args.hover) if args.hover in paths else 0
        tip = hover_point(page, "scatter-0", row, scroll=False)
        if not tip["visible"]:
            print("warning: the tooltip did not show", file=sys.stderr)
        shot = args.out.with_suffix(".full.png")
        page.screenshot(path=str(shot))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(shot).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    shot.unlink()
    print(f"screenshot: {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
