"""Does FaceNet hold more realness in its earlier layers? A supervised ceiling per layer.

FaceNet (Inception-ResNet-v1, the shipped checkpoint) is converted to ONNX with extra outputs:
four intermediate activations (after the stem's 2b and 4a convolutions, the last block35 and the
last block17) beside the 1792-d bottleneck. Each map is pooled into its channels' spatial mean and
standard deviation (texture statistics), computed on the `recommended` preset's face crops, and a
class-balanced logistic regression (C = 0.1, standardised, fitted on train) is scored on valid:
the ceiling a family built from that layer could reach with every train label.

    PYTHONPATH=src python benchmarks/facenet_layers.py [--data ../shared/datasets/faces-ffhq]

Writes ``benchmarks/results/facenet_layers-<time>.json`` and prints a table. Accuracies, not
timings: valid under load. About 4 minutes on 2 cores (FaceNet on every face once more).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import REPO, labelled_features, print_table, write_results
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from facecluster.features.facenet_model import standardize, verify_shipped_graph
from facecluster.features.tf2onnx import convert_frozen_graph
from facecluster.resolve import build_config

FFHQ = REPO.parent / "shared" / "datasets" / "faces-ffhq"
LAYERS = {"conv 2b (77×77×64)": "InceptionResnetV1/Conv2d_2b_3x3/Relu",
          "conv 4a (36×36×192)": "InceptionResnetV1/Conv2d_4a_3x3/Relu",
          "block35_5 (17×17×256)": "InceptionResnetV1/Repeat/block35_5/Relu",
          "block17_10 (8×8×896)": "InceptionResnetV1/Repeat_1/block17_10/Relu"}


class LayerStatistics:
    """The bottleneck and every layer's channel mean and std, concatenated (an extractor for the engine)."""

    name = "facenet-layer-statistics"

    def __init__(self, onnx_path: Path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        probe = self._pooled(np.zeros((1, 160, 160, 3), dtype=np.uint8))
        self.widths = [block.shape[1] for block in probe]
        self.dim = sum(self.widths)

    def _pooled(self, crops: np.ndarray) -> list[np.ndarray]:
        blocks = []
        for output in self.session.run(None, {"input": standardize(crops)}):
            if output.ndim == 4:  # NHWC
                output = np.concatenate([output.mean(axis=(1, 2)), output.std(axis=(1, 2))], axis=1)
            blocks.append(output)
        return blocks

    def cache_identity(self) -> dict:
        return {"extractor": self.name, "layers": list(LAYERS.values()), "version": 1}

    def describe(self) -> dict:
        return self.cache_identity()

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray:
        out = [np.concatenate(self._pooled(crops[i:i + 32]), axis=1) for i in range(0, len(crops), 32)]
        return np.concatenate(out).astype(np.float32) if out else np.empty((0, self.dim), np.float32)


def ceiling(X: np.ndarray, y: np.ndarray, train: np.ndarray, valid: np.ndarray) -> dict:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000))
    model.fit(X[train], y[train])
    p = model.predict_proba(X[valid])[:, 1]
    return {"valid_balanced_accuracy": float(balanced_accuracy_score(y[valid], p > 0.5)),
            "valid_roc_auc": float(roc_auc_score(y[valid], p))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=FFHQ)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / "facenet-layers.onnx"
        convert_frozen_graph(verify_shipped_graph(), onnx_path, outputs=["bottleneck", *LAYERS.values()])
        extraction, extractor, labels, splits, usable = labelled_features(
            args.data, build_config("recommended"), LayerStatistics(onnx_path))
    y = labels == "fake"
    train, valid = usable & (splits == "train"), usable & (splits != "train")
    edges = np.cumsum([0, *extractor.widths])
    names = ["bottleneck (1792)", *LAYERS]
    rows = []
    for name, start, stop in zip(names, edges[:-1], edges[1:]):
        rows.append({"layer": name, "dim": int(stop - start),
                     **ceiling(extraction.features[:, start:stop], y, train, valid)})
    rows.append({"layer": "all of them", "dim": int(edges[-1]), **ceiling(extraction.features, y, train, valid)})
    path = write_results("facenet_layers", {"data": str(args.data), "crops": "recommended preset's", "rows": rows})
    print_table(["layer (pooled: mean and std per channel)", "dim", "valid bal. acc", "valid ROC AUC"],
                [[r["layer"], r["dim"], f"{r['valid_balanced_accuracy']:.3f}", f"{r['valid_roc_auc']:.3f}"]
                 for r in rows])
    print(path)


if __name__ == "__main__":
    main()
