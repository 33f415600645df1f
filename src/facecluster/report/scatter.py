"""The interactive scatter of the reduced embeddings, one Bokeh figure per method.

All figures share one data source (the thumbnails are embedded once) and one pair of ranges
(zooming one zooms all). Colour is the cluster, the marker the true label, and train points
are filled while the other splits are hollow. Hovering shows the nearest visible point's face
in the page's own tooltip (``#fc-tip``), filled in with ``textContent`` and ``img.src`` only,
so nothing from the user's data is ever parsed as HTML.

A large run (more usable images than ``[report] interactive_points``) draws as points only
its sample of faces (`facecluster.report.sample`: every cluster × label × split), over a grey
density image of every image: the page stays small and quick to open at any size (measured in
tests/e2e/test_report_scale.py), and the full table is linked beside it (images.parquet).

The box and lasso tools select the visible points of a figure (a point hidden from the legend is
not selected); the selection lives in the shared source, so it shows in every figure, and the
page's "Download selection (CSV)" button (``report.js``) writes the selected rows in the browser.
"""

from __future__ import annotations

import numpy as np
from bokeh.models import (
    BoxSelectTool,
    CDSView,
    ColumnDataSource,
    CustomJS,
    DataRange1d,
    HoverTool,
    IndexFilter,
    LassoSelectTool,
    Legend,
    LegendItem,
)
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from facecluster.image_table import cluster_column, score_column

MARKERS = {"real": "circle", "fake": "triangle"}
OTHER_MARKER = "square"
NOISE_COLOUR = "#9e9e9e"
NEUTRAL = "#555555"
SIZE = 8
DENSITY_BINS = 160  #: per side of the density image drawn under the points of a large run
OUTPUT_BACKEND = "webgl"  # GPU drawing where the browser has it (Bokeh falls back to canvas where not)

# Runs on every mouse move over a figure: pick the nearest hit among visible points.
HOVER_JS = """
const hits = cb_data.index.indices;
const g = cb_data.geometry;
const d = source.data;
const sx = Math.abs(x_range.end - x_range.start) || 1;
const sy = Math.abs(y_range.end - y_range.start) || 1;
let best = -1, bestDistance = Infinity;
for (const i of hits) {
  if (!renderers[d[columns.renderer][i]].visible) continue;
  const dx = (d.x[i] - g.x) / sx, dy = (d.y[i] - g.y) / sy;
  if (dx * dx + dy * dy < bestDistance) { best = i; bestDistance = dx * dx + dy * dy; }
}
const tip = window.facecluster && window.facecluster.tip;
if (!tip) return;
if (best < 0) { tip.hide(); return; }
const cluster = d[columns.cluster][best];
tip.show({thumb: d.thumb[best], path: d.path[best], label: d.label[best], split: d.split[best],
          cluster: cluster, mapped: mapping[cluster] || "–", score: d.score[best]});
"""

# Tells the page's download button how many points are selected (report.js keeps the rest).
SELECTION_JS = "if (window.facecluster && window.facecluster.selection) window.facecluster.selection.changed(cb_obj.indices);"


def cluster_colour(position: int) -> str:
    """The colour of the cluster at this position in a method's sorted cluster list."""
    return Category10_10[position % len(Category10_10)]


def _title(name: str, method: dict) -> str:
    algorithm = "" if name == method["algorithm"] else f" ({method['algorithm']})"
    return f"{name}{algorithm}: {method['n_clusters']} clusters"


def _swatch(fig: figure, targets: list, **style):
    """An empty renderer for a legend entry whose visibility the ``targets`` follow."""
    swatch = fig.scatter([np.nan], [np.nan], **style)  # one NaN point: drawn in the legend, not the plot
    swatch.js_on_change("visible", CustomJS(args=dict(targets=targets),
                                            code="for (const r of targets) r.visible = cb_obj.visible;"))
    return swatch


def _source(results: dict, table, reduced: np.ndarray, thumbs: list[str | None], rows: np.ndarray) -> ColumnDataSource:
    """One row per drawn point: coordinates, face, path, labels, per method its cluster, name and renderer.

    ``score`` is the scoring method's synthetic score (NaN where none); ``label`` the given label,
    "unlabelled" when there is none. A cluster's name is not repeated per point (the hover reads
    the method's mapping). Numbers go to the page as float32 binary arrays, so a point costs
    mostly its path: ~60 bytes of page per point with two methods, ~6 MB at 100k.
    """
    part = table.iloc[rows]
    scoring_method = (results.get("scoring") or {}).get("method")
    column = score_column(scoring_method) if scoring_method else None
    scores = (part[column].to_numpy(dtype=float, na_value=np.nan) if column in part
              else np.full(len(rows), np.nan))
    coords = reduced[rows]
    data = {
        "x": coords[:, 0].astype(np.float32),
        "y": (coords[:, 1] if coords.shape[1] > 1 else np.zeros(len(rows))).astype(np.float32),
        "thumb": [thumbs[i] or "" for i in rows],
        "path": part["path"].tolist(),
        "label": [label or "unlabelled" for label in part["label"].tolist()],
        "split": part["split"].tolist(),
        "score": scores.astype(np.float32),
    }
    for j, (name, method) in enumerate(results["methods"].items()):
        cluster = cluster_column(name)
        ids = (part[cluster].to_numpy(dtype=float, na_value=np.nan) if cluster in part
               else np.full(len(rows), np.nan))
        data[f"c{j}"] = ["noise" if np.isnan(c) else str(int(c)) for c in ids]
        data[f"r{j}"] = np.zeros(len(rows), dtype=np.int32)
    return ColumnDataSource(data, name="points")


def _groups(values: list[str]) -> list[str]:
    """Cluster ids in numeric order, noise last."""
    ids = sorted({v for v in values if v != "noise"}, key=int)
    return ids + (["noise"] if "noise" in values else [])


def density_rgba(xy: np.ndarray, bins: int = DENSITY_BINS) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A grey 2-D histogram of the points ``xy`` (N×2) as a Bokeh RGBA image (uint32, transparent where empty;
    opacity grows with the log of the count), and where it goes: x, y, width, height in data units."""
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    counts, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=bins, range=[[low[1], high[1]], [low[0], high[0]]])
    alpha = np.where(counts > 0, 40 + 200 * np.log1p(counts) / np.log1p(counts.max() or 1), 0).astype(np.uint32)
    grey = np.uint32(0x55)
    rgba = (alpha << 24) | (grey << 16) | (grey << 8) | grey  # little-endian RGBA bytes
    return rgba.astype(np.uint32), (float(low[0]), float(low[1]), float(span[0]), float(span[1]))


def _method_figure(j: int, name: str, method: dict, source: ColumnDataSource, x_range, y_range,
                   subtitle: str, density: np.ndarray | None = None) -> figure:
    data = source.data
    fig = figure(name=f"scatter-{j}", width=600, height=500, x_range=x_range, y_range=y_range,
                 tools="pan,wheel_zoom,box_zoom,reset", active_scroll="wheel_zoom", output_backend=OUTPUT_BACKEND,
                 title=_title(name, method),
                 x_axis_label=subtitle + " 1", y_axis_label=subtitle + " 2", toolbar_location="above")
    fig.title.text_font_size = "13px"
    density_item = None
    if density is not None:  # drawn first, under the points: every image, as a grey density
        image, (x, y, width, height) = density_rgba(density)
        shade = fig.image_rgba(image=[image], x=x, y=y, dw=width, dh=height, level="image", name=f"density-{j}")
        density_item = LegendItem(label=f"all {len(density)} images (density)", renderers=[shade])
    labels = list(dict.fromkeys(list(MARKERS) + sorted(set(data["label"]))))
    splits = [s for s in ("train", "valid", "test") if s in set(data["split"])]
    cluster_ids = _groups(data[f"c{j}"])
    renderer_of_row = np.zeros(len(data["x"]), dtype=np.int32)
    clusters, given, split_of = (np.asarray(data[k], dtype=object) for k in (f"c{j}", "label", "split"))
    renderers, by_cluster, by_kind = [], {}, {}
    for position, cluster in enumerate(cluster_ids):
        colour = NOISE_COLOUR if cluster == "noise" else cluster_colour(position)
        in_cluster = clusters == cluster
        for label in labels:
            of_label = in_cluster & (given == label)
            for split in splits:
                rows = np.flatnonzero(of_label & (split_of == split)).astype(np.int32)
                if len(rows) == 0:
                    continue
                renderer = fig.scatter("x", "y", source=source, view=CDSView(filter=IndexFilter(rows)),
                                       marker=MARKERS.get(label, OTHER_MARKER), size=SIZE, line_color=colour,
                                       fill_color=colour, fill_alpha=0.6 if split == "train" else 0.0,
                                       line_width=1.0 if split == "train" else 1.5, line_alpha=0.9)
                renderer_of_row[rows] = len(renderers)
                renderers.append(renderer)
                by_cluster.setdefault(cluster, []).append(renderer)
                by_kind.setdefault((label, split), []).append(renderer)
    data[f"r{j}"] = renderer_of_row

    # Legend swatches are empty renderers; hiding one hides the points it stands for.
    items = []
    for position, cluster in enumerate(cluster_ids):
        colour = NOISE_COLOUR if cluster == "noise" else cluster_colour(position)
        swatch = _swatch(fig, by_cluster[cluster], marker="square", size=10, color=colour)
        text = "noise" if cluster == "noise" else f"cluster {cluster} → {(method.get('mapping') or {}).get(cluster, '–')}"
        items.append(LegendItem(label=text, renderers=[swatch]))
    for label, split in ((label, split) for label in labels for split in splits if (label, split) in by_kind):
        members = by_kind[(label, split)]
        swatch = _swatch(fig, members, marker=MARKERS.get(label, OTHER_MARKER), size=SIZE, line_color=NEUTRAL,
                         fill_color=NEUTRAL, fill_alpha=0.6 if split == "train" else 0.0,
                         line_width=1.0 if split == "train" else 1.5)
        items.append(LegendItem(label=f"{label} · {split}", renderers=[swatch]))
    if density_item is not None:
        items.append(density_item)
    fig.add_layout(Legend(items=items, click_policy="hide", label_text_font_size="11px", glyph_height=14,
                          glyph_width=16, spacing=0, padding=6, margin=4, border_line_alpha=0), "right")

    # One invisible renderer over every point answers the hover, so the callback sees all hits at once.
    hover_target = fig.scatter("x", "y", source=source, size=SIZE + 2, fill_alpha=0, line_alpha=0,
                               name=f"hover-{j}")
    hover_target.nonselection_glyph = None
    hover_target.hover_glyph = None
    callback = CustomJS(args=dict(source=source, renderers=renderers, x_range=fig.x_range, y_range=fig.y_range,
                                  mapping=method.get("mapping") or {},
                                  columns={"cluster": f"c{j}", "renderer": f"r{j}"}),
                        code=HOVER_JS)
    fig.add_tools(HoverTool(renderers=[hover_target], tooltips=None, callback=callback))
    # Selecting on the drawn renderers (not the hover target) leaves legend-hidden points out.
    fig.add_tools(BoxSelectTool(renderers=renderers), LassoSelectTool(renderers=renderers))
    return fig


def scatter_figures(results: dict, table, reduced: np.ndarray, thumbs: list[str | None],
                    points: np.ndarray | None = None) -> list[figure]:
    """One figure per method over the usable images (rows of ``reduced`` without NaN).

    ``points`` (a mask over the rows) limits the points drawn, hovered and selectable to those
    rows; every usable image is then drawn beneath them as a grey density (`density_rgba`).
    """
    usable = np.isfinite(reduced).all(axis=1)
    rows = np.flatnonzero(usable if points is None else usable & points)
    if len(rows) == 0 or not results["methods"]:
        return []
    density = None
    if len(rows) < usable.sum():
        everything = reduced[usable]
        density = np.column_stack([everything[:, 0], everything[:, 1] if reduced.shape[1] > 1
                                   else np.zeros(len(everything))]).astype(float)
    source = _source(results, table, reduced, thumbs, rows)
    source.selected.js_on_change("indices", CustomJS(code=SELECTION_JS))
    dims = reduced.shape[1]
    subtitle = "PCA component" if results["reduce"].get("steps", ["pca"])[-1] == "pca" else "component"
    if dims < 2:
        subtitle += " (1-D run: y is 0)"
    figures: list[figure] = []
    for j, (name, method) in enumerate(results["methods"].items()):
        x_range = figures[0].x_range if figures else DataRange1d()
        y_range = figures[0].y_range if figures else DataRange1d()
        figures.append(_method_figure(j, name, method, source, x_range, y_range, subtitle, density))
    return figures
