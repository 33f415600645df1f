"""Static figures for papers and slides: the cluster scatter and per-cluster montages."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

# Figures are built with matplotlib's object API, never pyplot: the files are drawn by the Agg
# canvas that savefig picks for PNG, and a notebook's or host program's backend is left alone.

MARKERS = {"real": "o", "fake": "x", "unlabelled": "."}
SPLIT_ALPHA = {"train": 0.75, "valid": 0.35, "test": 0.35}


def scatter_png(path: Path, coords: np.ndarray, clusters: np.ndarray, labels: np.ndarray,
                splits: np.ndarray, title: str) -> Path:
    """Points coloured by cluster, marked by true label (o real, x fake, · unlabelled), faded outside train.

    Only the first two reduced dimensions are drawn.
    """
    labels = np.array([label or "unlabelled" for label in labels], dtype=object)  # None: no label given
    figure = Figure(figsize=(7.5, 6), dpi=110)
    axes = figure.subplots()
    cmap = matplotlib.colormaps["tab10"]
    ids = sorted(np.unique(clusters).tolist())
    y = coords[:, 1] if coords.shape[1] > 1 else np.zeros(len(coords))
    for colour, cluster in enumerate(ids):
        for label, marker in MARKERS.items():
            for split, alpha in SPLIT_ALPHA.items():
                keep = (clusters == cluster) & (labels == label) & (splits == split)
                if keep.any():
                    axes.scatter(coords[keep, 0], y[keep], s=18, marker=marker, alpha=alpha,
                                 color=cmap(colour % 10), linewidths=1)
    for colour, cluster in enumerate(ids):
        axes.scatter([], [], color=cmap(colour % 10), marker="s", label=f"cluster {cluster}")
    for label, marker in MARKERS.items():
        if (labels == label).any():
            axes.scatter([], [], color="black", marker=marker, label=label)
    axes.legend(loc="best", fontsize=8, framealpha=0.8)
    axes.set_xlabel("component 1")
    axes.set_ylabel("component 2")
    axes.set_title(title + " (faded: not train)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    return path


def montage_png(path: Path, faces: list[np.ndarray], tile: int = 64, columns: int = 10,
                borders: list[str] | None = None) -> Path:
    """Faces in a grid; an optional border colour per face (e.g. green real, red fake)."""
    rows = max(1, -(-len(faces) // columns))
    pad = 3
    sheet = Image.new("RGB", (columns * (tile + 2 * pad), rows * (tile + 2 * pad)), "white")
    for k, face in enumerate(faces):
        r, c = divmod(k, columns)
        x, y = c * (tile + 2 * pad), r * (tile + 2 * pad)
        if borders:
            sheet.paste(Image.new("RGB", (tile + 2 * pad, tile + 2 * pad), borders[k]), (x, y))
        sheet.paste(Image.fromarray(face).resize((tile, tile)), (x + pad, y + pad))
    sheet.save(path)
    return path
