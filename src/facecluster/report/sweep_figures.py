"""Plots of a sweep: the validation score (and the train-only criterion) against each swept parameter."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

# matplotlib's object API, never pyplot: savefig draws PNGs with Agg, the host's backend is untouched.

CROP_COLOURS = {"box": "#1f77b4", "aligned": "#d62728"}
CRITERION_KEYS = {"cv_mapping": "cv_mapping_balanced_accuracy", "silhouette": "silhouette"}


def _parameters(rows: list[dict]) -> dict[str, list]:
    """Parameter name → value of each row ("method" params prefixed by the method name)."""
    values: dict[str, list] = {"features": [], "crop": [], "n_components": [], "standardize": [], "method": []}
    for row in rows:
        values["features"].append(row["features"])
        values["crop"].append(row["crop"])
        values["n_components"].append("all" if row["n_components"] is None else row["n_components"])
        values["standardize"].append(row["standardize"])
        values["method"].append(row["method"])
    for key in sorted({f"{r['method']}.{p}" for r in rows for p in r["params"]}):
        method, param = key.split(".", 1)
        values[key] = [r["params"].get(param) if r["method"] == method else None for r in rows]
    return {k: v for k, v in values.items() if len({str(x) for x in v if x is not None}) > 1}


def _order(values: list) -> list:
    distinct = {str(v): v for v in values if v is not None}
    numeric = [v for v in distinct.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    rest = sorted((str(v) for v in distinct.values() if v not in numeric), key=str)
    return [str(v) for v in sorted(numeric)] + rest


def parameter_plots(rows: list[dict], folder: Path, selection: str) -> dict[str, Path]:
    """One PNG per swept parameter: every configuration's valid balanced accuracy (top) and train criterion (bottom)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    criterion_key = CRITERION_KEYS[selection]
    files = {}
    for name, values in _parameters(rows).items():
        order = _order(values)
        figure = Figure(figsize=(max(5.0, 1.1 * len(order) + 2), 6.5), dpi=100)
        axes = figure.subplots(2, 1, sharex=True)
        for panel, (ax, getter, title) in enumerate(zip(axes, (
                lambda r: r.get("valid", {}).get("balanced_accuracy"),
                lambda r: r["train"].get(criterion_key)),
                ("valid balanced accuracy (train-fitted mapping)", f"train criterion: {selection}"))):
            for crop, colour in CROP_COLOURS.items():
                xs, ys = [], []
                for row, value in zip(rows, values):
                    y = getter(row)
                    if value is None or y is None or row["crop"] != crop:
                        continue
                    xs.append(order.index(str(value)) + rng.uniform(-0.2, 0.2))
                    ys.append(y)
                if xs:
                    ax.scatter(xs, ys, s=12, alpha=0.55, color=colour, label=crop if panel == 0 else None)
            best = [max((getter(r) for r, v in zip(rows, values) if str(v) == o and getter(r) is not None), default=np.nan)
                    for o in order]
            ax.plot(range(len(order)), best, "k_", markersize=18, label="best" if panel == 0 else None)
            ax.set_ylabel(title, fontsize=8)
            ax.grid(alpha=0.3)
        axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
        axes[0].legend(fontsize=7, loc="best")
        axes[1].set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
        axes[1].set_xlabel(name)
        figure.suptitle(f"score against {name} ({len(rows)} configurations)", fontsize=10)
        figure.tight_layout()
        path = folder / f"score-vs-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        figure.savefig(path)
        files[name] = path
    return files
