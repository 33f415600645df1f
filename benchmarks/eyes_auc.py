"""ROC AUC (real vs fake) of each `eyes` column, the label-free score among them, on train and valid.

Each column's direction is chosen on train (the side that scores above 0.5) and kept for valid,
which is only reported. Features come through the engine and the shared feature store, with the
same settings as examples/sweep-eyes.toml (aligned crops, 256 px, margin 0.2), so after that
sweep nothing is recomputed::

    python benchmarks/eyes_auc.py ../shared/datasets/faces-ffhq [--size 256] [--margin 0.2]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.metrics import roc_auc_score

from facecluster.config import DatasetConfig, FacesConfig, FeaturesConfig
from facecluster.dataset import discover
from facecluster.engines import make_engine
from facecluster.features import make_extractor
from facecluster.features.eyes import COLUMNS
from facecluster.store import FeatureStore


def auc(is_real: np.ndarray, values: np.ndarray) -> float:
    return float(roc_auc_score(is_real, values)) if values.std() > 0 and 0 < is_real.mean() < 1 else 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--crop", default="aligned", choices=["aligned", "box"])
    args = parser.parse_args()
    dataset = discover(args.data, DatasetConfig())
    faces = FacesConfig(detector="mtcnn", size=args.size, crop=args.crop, margin=args.margin)
    extraction = make_engine("local").extract(dataset.samples, faces, make_extractor(FeaturesConfig(extractor="eyes")),
                                              FeatureStore(None), progress=False)
    features = extraction.features
    is_real = np.array([s.label == "real" for s in dataset.samples])
    split = np.array([s.split for s in dataset.samples])
    usable = np.isfinite(features).all(axis=1)
    read = features[:, COLUMNS.index("eyes_read")] > 0
    train, valid = usable & (split == "train"), usable & np.isin(split, ["valid", "validation", "val"])
    result = {"faces": faces.model_dump(mode="json"), "usable": int(usable.sum()),
              "eyes_read_share": {name: {"real": float(read[m & is_real].mean()), "fake": float(read[m & ~is_real].mean())}
                                  for name, m in (("train", train), ("valid", valid))},
              "columns": {}}
    print(f"{'column':24s} {'direction (train)':18s} {'train':>6s} {'valid':>6s}   eyes read: {'train':>6s} {'valid':>6s}")
    for j, name in enumerate(COLUMNS):
        train_auc = auc(is_real[train], features[train, j])
        sign = 1.0 if train_auc >= 0.5 else -1.0
        row = {"direction": "higher = real" if sign > 0 else "higher = fake",
               "train": max(train_auc, 1 - train_auc), "valid": auc(is_real[valid], sign * features[valid, j]),
               "train_read": auc(is_real[train & read], sign * features[train & read, j]),
               "valid_read": auc(is_real[valid & read], sign * features[valid & read, j])}
        result["columns"][name] = row
        print(f"{name:24s} {row['direction']:18s} {row['train']:6.3f} {row['valid']:6.3f}              "
              f"{row['train_read']:6.3f} {row['valid_read']:6.3f}")
    print(json.dumps({k: v for k, v in result.items() if k != "columns"}))


if __name__ == "__main__":
    main()
