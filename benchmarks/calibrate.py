"""Make the int8 FaceNet's calibration table from facecluster's own crops of the dev set.

Takes ``--images`` random train-split faces (MTCNN crops, as ``--preset study`` cuts them,
cached after the first run), measures the range of every activation a quantised layer
reads (see ``facecluster.features.facenet_quant.calibrate``), and writes the table that
ships with the package: ``src/facecluster/features/data/facenet-int8-calibration.json``.
``--keep-fp32`` names layer prefixes to leave in fp32 (chosen with ``--sensitivity``, which
quantises one block family at a time and reports how far each moves the embeddings on all
dev faces, and how much of the study preset's re-run still agrees with fp32's).

    python benchmarks/calibrate.py [--images 128] [--percentile 99.999] [--keep-fp32 PREFIX ...]
    python benchmarks/calibrate.py --sensitivity
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from _common import dev_crops, dev_samples, print_table, write_results
from fidelity import matched_agreement, study_clusters

from facecluster.features.facenet_model import DEFAULT_OUTPUTS, FaceNetEmbedder, ensure_onnx_model
from facecluster.features.facenet_quant import CALIBRATION_FILE, calibrate, quantize_int8

GROUPS = ["Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "Conv2d_4b_3x3",
          "Repeat/block35", "Mixed_6a", "Repeat_1/block17", "Mixed_7a", "Repeat_2/block8", "Block8"]


def sensitivity(fp32_path: Path, table: dict, crops: np.ndarray, reference: np.ndarray,
                train: np.ndarray) -> list[list]:
    """1 - cosine to fp32 when only one block family is quantised (everything else fp32), and how
    much of the study's re-run (PCA 2-D, Mean-Shift, BIRCH, fitted on ``train``) still agrees."""
    import onnx
    import onnxruntime as ort

    names = [n.name for n in onnx.load(str(fp32_path)).graph.node if n.op_type == "Conv"]
    reference_clusters = study_clusters(reference, train)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for group in GROUPS:
            prefix = f"InceptionResnetV1/{group}"
            others = sorted({"/".join(n.split("/")[:3 if n.split("/")[1].startswith("Repeat") else 2])
                             for n in names if not n.startswith(prefix)})
            path = Path(folder) / "one-group.onnx"
            quantize_int8(fp32_path, path, {**table, "fp32_nodes": others})
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            x = (crops.astype(np.float32) - 127.5) / 128.0
            vectors = np.concatenate([session.run(["embeddings"], {"input": x[i:i + 64]})[0]
                                      for i in range(0, len(x), 64)])
            cosine = np.sum(vectors * reference, axis=1)
            clusters = study_clusters(vectors, train)
            rows.append([group, float(1 - cosine.mean()), f"{cosine.min():.5f}",
                         *(f"{matched_agreement(reference_clusters[m], clusters[m]):.3f}"
                           for m in ("meanshift", "birch"))])
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--percentile", type=float, default=99.999)
    parser.add_argument("--keep-fp32", nargs="*", default=[])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sensitivity", action="store_true")
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    args = parser.parse_args()

    data = dev_crops(dev_samples(), "mtcnn")
    train = np.flatnonzero(data["split"] == "train")
    chosen = np.sort(np.random.default_rng(args.seed).choice(train, size=args.images, replace=False))
    fp32_path, fp32_sha = ensure_onnx_model(DEFAULT_OUTPUTS)
    table = calibrate(fp32_path, data["crops"][chosen], percentile=args.percentile)
    table.update({
        "source": f"faces-dev train split: {args.images} MTCNN crops cut by facecluster, seed {args.seed}",
        "fp32_model_sha256": fp32_sha,
        "fp32_nodes": [f"InceptionResnetV1/{prefix}" for prefix in args.keep_fp32],
    })
    if args.sensitivity:
        reference = FaceNetEmbedder(backend="onnx", batch_size=64).embed(data["crops"])
        rows = sensitivity(fp32_path, table, data["crops"], reference, data["split"] == "train")
        path = write_results("calibrate-sensitivity", {"rows": rows, "faces": len(reference)})
        print_table(["quantised alone", "1 - mean cosine", "worst cosine", "study re-run agreement: Mean-Shift",
                     "BIRCH"], rows)
        print(f"written: {path}")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"written: {args.out} ({len(table['ranges'])} tensors)")


if __name__ == "__main__":
    main()
