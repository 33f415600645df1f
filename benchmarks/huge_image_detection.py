"""MTCNN on large photos: on a ≤1600 px copy (what facecluster does) vs on the full image.

Writes benchmarks/results/huge_image_detection.json and prints a table. The two ways are run
interleaved on the same images (a face pasted large into a grey canvas), so machine noise hits
both alike; the ratio is what to read.

    python benchmarks/huge_image_detection.py [--sides 3000 6000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from facecluster.faces import MTCNNDetector


def canvas(side: int, rng: np.random.Generator) -> np.ndarray:
    """A grey canvas with a smooth face-like blob taking a third of it (MTCNN's work does not hinge on a hit)."""
    image = np.full((side, side, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:side, 0:side] / side
    face = ((xx - 0.5) / 0.17) ** 2 + ((yy - 0.5) / 0.22) ** 2 < 1
    image[face] = (225, 190, 160)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[3000, 6000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "huge_image_detection.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shrunk, full = MTCNNDetector(), MTCNNDetector(max_side=10**9)
    rows = []
    for side in args.sides:
        image = canvas(side, rng)
        times = {"shrunk": [], "full": []}
        for _ in range(args.repeats):
            for name, detector in (("shrunk", shrunk), ("full", full)):
                started = time.perf_counter()
                detector.detect(image)
                times[name].append(time.perf_counter() - started)
        row = {"side": side, **{f"{k}_seconds": round(min(v), 3) for k, v in times.items()}}
        row["full_over_shrunk"] = round(row["full_seconds"] / row["shrunk_seconds"], 1)
        rows.append(row)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "peak_rss_mb_process": round(peak_mb), "python": sys.version.split()[0]},
                                   indent=2))
    print(f"{'side':>6} {'≤1600 px copy (s)':>18} {'full image (s)':>15} {'full / copy':>12}")
    for row in rows:
        print(f"{row['side']:>6} {row['shrunk_seconds']:>18.3f} {row['full_seconds']:>15.3f} {row['full_over_shrunk']:>12.1f}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
