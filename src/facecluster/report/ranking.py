"""The synthetic score on the page: faces ranked by it, and its histogram by given label.

Everything is read from the run's files: the scoring method (results.json's ``scoring.method``),
and each image's score under it and its given label (the image table, `facecluster.image_table`). The ranking is the score table's
(`facecluster.score_table.rank_of`: 1 is the most synthetic-looking, ties in image order), so a
rank on the page is the ``rank`` of scores.csv. When the clusters are not named there are no
scores, and the page says why (``scoring.why_no_scores``) instead of showing zeros.
"""

from __future__ import annotations

import numpy as np

from facecluster.image_table import score_column
from facecluster.score_table import rank_of

#: Faces shown at each end of the ranking.
RANKED_FACES = 30
#: Bins of the score histogram over [0, 1].
HISTOGRAM_BINS = 20
#: The histogram's stacking order, bottom first, and the names of the page's colours for them.
HISTOGRAM_LABELS = ("fake", "real", "unlabelled")
HISTOGRAM_WIDTH, HISTOGRAM_HEIGHT = 420, 120
NO_SCORES = "no image has a synthetic score"


def image_scores(table, method: str | None) -> np.ndarray:
    """Each image's synthetic score under ``method``, NaN where it has none (or without a method)."""
    column = score_column(method) if method else None
    if column is None or column not in table:
        return np.full(len(table), np.nan)
    return table[column].to_numpy(dtype=float, na_value=np.nan)


def why_no_scores(results: dict) -> str | None:
    """Why the page shows no synthetic scores; None when it has some."""
    scoring = results.get("scoring")
    if not scoring:
        return "this run has no synthetic scores (made by an older facecluster); re-run it to get them"
    if not scoring.get("named", False) or not scoring.get("n_scored"):
        return scoring.get("why_no_scores") or NO_SCORES
    return None


def _face(table, i: int, rank: int, score: float, thumb: str | None) -> dict:
    return {"rank": int(rank), "score": f"{score:.3f}", "score_value": float(score), "path": table["path"].iat[i],
            "split": table["split"].iat[i], "label": table["label"].iat[i], "thumb": thumb}


def ranked_rows(table, method: str, n: int = RANKED_FACES) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows of the ``n`` most and the ``n`` least synthetic-looking faces (each end in rank order), and
    how many are scored; the least leaves out rows already in the most (a small folder)."""
    scores = image_scores(table, method)
    ranks = rank_of(scores)
    order = np.argsort(np.where(ranks > 0, ranks, len(ranks) + 1), kind="stable")[: int((ranks > 0).sum())]
    return order[:n], order[max(n, len(order) - n):][::-1], len(order)


def ranked_faces(table, thumbs: list[str | None], method: str, n: int = RANKED_FACES) -> dict:
    """The ``n`` most and ``n`` least synthetic-looking faces under ``method``, each end in rank order.

    Returns ``{"most": [...], "least": [...], "n_scored": int}``; a face is a dict of rank,
    score (text and value), path, split, given label (None when unlabelled) and thumbnail.
    The least list starts at the least synthetic-looking face, and leaves out faces already
    in the most list (a small folder).
    """
    scores = image_scores(table, method)
    ranks = rank_of(scores)
    most, least, n_scored = ranked_rows(table, method, n)
    faces = [[_face(table, int(i), ranks[i], scores[i], thumbs[i]) for i in rows] for rows in (most, least)]
    return {"most": faces[0], "least": faces[1], "n_scored": n_scored}


def score_histogram(table, method: str, bins: int = HISTOGRAM_BINS) -> dict:
    """Counts of the scores under ``method`` per bin of [0, 1] and given label, as bars of a small SVG.

    Returns the labels present, their counts per bin, and the bars (``x``, ``y``, ``width``,
    ``height`` in the SVG's pixels, with ``label`` and ``count``), stacked fake, real, unlabelled.
    """
    scores = image_scores(table, method)
    given = np.array([label or "unlabelled" for label in table["label"]], dtype=object)
    rows = np.isfinite(scores)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = {label: np.histogram(np.clip(scores[rows & (given == label)], 0, 1), edges)[0]
              for label in HISTOGRAM_LABELS}
    present = [label for label in HISTOGRAM_LABELS if counts[label].sum() > 0]
    peak = max((sum(int(counts[label][b]) for label in present) for b in range(bins)), default=0) or 1
    width = HISTOGRAM_WIDTH / bins
    bars = []
    for b in range(bins):
        base = 0.0
        for label in present:
            n = int(counts[label][b])
            if n == 0:
                continue
            height = HISTOGRAM_HEIGHT * n / peak
            bars.append({"x": round(b * width + 0.5, 2), "y": round(HISTOGRAM_HEIGHT - base - height, 2),
                         "width": round(width - 1, 2), "height": round(height, 2), "label": label, "count": n,
                         "low": f"{edges[b]:.2f}", "high": f"{edges[b + 1]:.2f}"})
            base += height
    return {"labels": present, "counts": {label: counts[label].tolist() for label in present}, "bars": bars,
            "peak": peak, "width": HISTOGRAM_WIDTH, "height": HISTOGRAM_HEIGHT, "n": int(rows.sum())}


def score_context(results: dict, table, thumbs: list[str | None]) -> dict:
    """What the page's score section shows: the method, the ranked faces and the histogram, or why not."""
    method = (results.get("scoring") or {}).get("method")
    absent = why_no_scores(results)
    if absent is None and not np.isfinite(image_scores(table, method)).any():
        absent = NO_SCORES
    if absent is not None:
        return {"method": method, "absent": absent}
    return {"method": method, "absent": None, "ranked": ranked_faces(table, thumbs, method),
            "histogram": score_histogram(table, method)}
