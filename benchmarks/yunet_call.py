"""YuNet's two calls side by side: yuface's own ``detect`` (leaks 36 KiB per call) against
`facecluster.faces.FaceDetectCNN` (libfacedetection's ``facedetect_cnn`` through ctypes, buffer freed).

Both run in this process, one thread each, on the same dev images shrunk as `YuNetDetector` shrinks
them (longer side 160 px, BGR), alternating call by call's rounds; the faces they return are
compared too.

    python benchmarks/yunet_call.py [--images 400] [--rounds 5]

Writes ``benchmarks/results/yunet_call-<time>.json`` and prints a table. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
from _common import dev_samples, machine, print_table, write_results

from facecluster.faces import FaceDetectCNN, _yunet_function


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    from yuface import yuface as native

    ours = _yunet_function(native)
    if not isinstance(ours, FaceDetectCNN):
        raise SystemExit("libfacedetection not found beside yuface: nothing to compare")
    images = []
    for sample in dev_samples(limit=args.images):
        bgr = cv2.imread(str(sample.path))
        scale = min(1.0, 160 / max(bgr.shape[:2]))
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        images.append(np.ascontiguousarray(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)))
    calls = {"yuface detect": native.detect, "FaceDetectCNN (ctypes)": ours}
    seconds = {name: [] for name in calls}
    before = machine()
    for _ in range(args.rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            for image in images:
                call(image)
            seconds[name].append(time.perf_counter() - started)
    same = all(np.array_equal(np.asarray(native.detect(im))[:, :15], ours(im)[:, :15]) for im in images[:100])
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    base = medians["yuface detect"]
    rows = [[name, f"{m:.3f}", f"{len(images) / m:.0f}", f"{m / base:.3f}", " / ".join(f"{s:.3f}" for s in seconds[name])]
            for name, m in medians.items()]
    path = write_results("yunet_call", {"images": len(images), "rounds": args.rounds, "seconds": seconds,
                                        "same_faces_first_100": same, "machine_before": before,
                                        "machine_after": machine()})
    print_table(["call", "median s", "img/s", "× yuface", "rounds (s)"], rows)
    print(f"same faces (columns 0-14) on the first 100: {same}; {path}")


if __name__ == "__main__":
    main()
