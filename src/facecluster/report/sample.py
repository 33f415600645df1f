"""Which images get a face thumbnail on the page: a bounded, stratified, seeded sample.

A thumbnail costs ~3 KB of page, so a 100k-image run cannot carry one per image. The sample
holds, in this order: every image that takes no part (problems) and every image without a
detected face (the page lists them all); the rows the page must show a face for (``always``:
the ranked faces); one image of every cluster × given label × split of every method, so no
group goes unseen; then a uniform random draw of the rest, up to ``size`` in all (uniform, so
each group keeps its share). The first three kinds are kept even past ``size``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facecluster.config import ReportConfig
from facecluster.image_table import cluster_column
from facecluster.records import NO_FACE, USABLE

#: Thumbnails on a page when the run's config does not say (``[report] thumbnail_sample``).
DEFAULT_SAMPLE = ReportConfig.model_fields["thumbnail_sample"].default
#: Usable images above which only the sample is drawn as points (``[report] interactive_points``).
DEFAULT_INTERACTIVE = ReportConfig.model_fields["interactive_points"].default


def _group_representatives(keys: np.ndarray, candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random row of ``candidates`` for each distinct value of ``keys`` (an int code per candidate)."""
    order = rng.permutation(len(candidates))
    _, first = np.unique(keys[order], return_index=True)
    return candidates[order[first]]


def report_sample(table, methods: Sequence[str], usable: np.ndarray, size: int = DEFAULT_SAMPLE, seed: int = 0,
                  always: Sequence[int] = ()) -> np.ndarray:
    """A boolean mask over the table's rows: the images the page shows a face for (see the module).

    Parameters
    ----------
    table : pandas.DataFrame
        The image table (`facecluster.image_table.load_image_table`).
    methods : sequence of str
        The run's methods; each one's clusters are represented.
    usable : ndarray of bool
        Rows drawn in the scatter (a point with coordinates).
    size : int
        Rows wanted in all; the problems, no-face rows, ``always`` and group representatives are
        kept even past it.
    seed : int
        The run's seed: the same run gives the same sample.
    always : sequence of int
        Rows that must be in (e.g. the ranked faces).
    """
    usable = np.asarray(usable, dtype=bool)
    status = table["status"].to_numpy(dtype=object)
    chosen = (status == NO_FACE) | ~np.isin(status, USABLE)
    chosen[np.asarray(always, dtype=int)] = True
    if usable.sum() <= size:  # every face fits
        return chosen | usable
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(usable)
    label = table["label"].to_numpy(dtype=object)[candidates]
    split = table["split"].to_numpy(dtype=object)[candidates]
    kind = np.unique(np.array([f"{lab}|{s}" for lab, s in zip(label, split)]), return_inverse=True)[1]
    for method in methods:
        column = cluster_column(method)
        if column not in table:
            continue
        clusters = table[column].to_numpy(dtype=float, na_value=-1.0)[candidates].astype(np.int64)
        keys = (clusters + 1) * (kind.max() + 1) + kind  # noise (-1) is a group of its own
        chosen[_group_representatives(keys, candidates, rng)] = True
    rest = candidates[~chosen[candidates]]
    wanted = max(0, size - int(chosen[usable].sum()))  # problems have no face: they take no thumbnail
    chosen[rng.permutation(rest)[:wanted]] = True
    return chosen
