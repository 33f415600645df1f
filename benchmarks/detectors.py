"""How often MTCNN (the study's detector) and YuNet (the fast one) disagree on the dev set.

For every dev image: does each detector find a face (at its default confidence), and where
both do, the IoU of their boxes. Also each detector's time per image (decode excluded),
measured interleaved image by image.

    python benchmarks/detectors.py [--limit N] [--detect-side 160]

Writes ``benchmarks/results/detectors-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import dev_samples, print_table, write_results

from facecluster.config import FacesConfig
from facecluster.faces import locate_face, make_detector
from facecluster.images import decode_rgb, read_bytes


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - w * h
    return float(w * h / union) if union > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="Only the first N dev images.")
    parser.add_argument("--detect-side", type=int, default=160, help="YuNet's downscaled side.")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    configs = {"mtcnn": FacesConfig(detector="mtcnn"),
               "yunet": FacesConfig(detector="yunet", detect_side=args.detect_side)}
    detectors = {name: make_detector(config) for name, config in configs.items()}
    found = {name: [] for name in configs}
    seconds = {name: 0.0 for name in configs}
    images = []
    ious = []
    for sample in dev_samples(limit=args.limit):
        rgb = decode_rgb(read_bytes(sample.path, sample.relpath), sample.relpath)
        records = {}
        for name, detector in detectors.items():
            started = time.perf_counter()
            records[name] = locate_face(rgb, detector, configs[name])
            seconds[name] += time.perf_counter() - started
            found[name].append(bool(records[name][0] == 1))
        overlap = box_iou(records["mtcnn"][2:6], records["yunet"][2:6]) if all(f[-1] for f in found.values()) else None
        if overlap is not None:
            ious.append(overlap)
        images.append({"path": sample.relpath, "label": sample.label, "mtcnn": found["mtcnn"][-1],
                       "yunet": found["yunet"][-1], "iou": overlap})
    mtcnn, yunet = np.array(found["mtcnn"]), np.array(found["yunet"])
    ious = np.array(ious)
    n = len(images)
    summary = {
        "images": n,
        "found": {"mtcnn": int(mtcnn.sum()), "yunet": int(yunet.sum()), "both": int((mtcnn & yunet).sum()),
                  "only_mtcnn": int((mtcnn & ~yunet).sum()), "only_yunet": int((~mtcnn & yunet).sum()),
                  "neither": int((~mtcnn & ~yunet).sum())},
        "face_found_disagreement": float(np.mean(mtcnn != yunet)),
        "iou": {"mean": float(ious.mean()), "median": float(np.median(ious)),
                "p05": float(np.percentile(ious, 5)), "below_0.5": int(np.sum(ious < 0.5)),
                "below_0.3": int(np.sum(ious < 0.3))},
        "ms_per_image": {name: 1000 * s / n for name, s in seconds.items()},
        "detect_side": args.detect_side,
        "confidence": {name: config.confidence_threshold for name, config in configs.items()},
    }
    path = write_results("detectors", {**summary, "per_image": images})
    print_table(["detector", "faces found", "only this one", "ms/image (1 thread)"],
                [["mtcnn", summary["found"]["mtcnn"], summary["found"]["only_mtcnn"], summary["ms_per_image"]["mtcnn"]],
                 ["yunet", summary["found"]["yunet"], summary["found"]["only_yunet"], summary["ms_per_image"]["yunet"]]])
    print(f"\n{n} images; face found by one detector only: {summary['face_found_disagreement']:.1%}; "
          f"box IoU where both found one: mean {summary['iou']['mean']:.3f}, median {summary['iou']['median']:.3f}, "
          f"{summary['iou']['below_0.5']} below 0.5")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
