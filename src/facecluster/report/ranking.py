"""The synthetic score on the page: faces ranked by it, and its histogram by given label.

Everything is read from results.json: the scoring method (``scoring.method``), each image's
score under it (``images[i].scores``) and its given label. The ranking is the score table's
(`facecluster.score_table.rank_of`: 1 is the most synthetic-looking, ties in image order), so a
rank on the page is the ``rank`` of scores.csv. When the clusters are not named there are no
scores, and the page says why (``scoring.why_no_scores``) instead of showing zeros.
"""

from __future__ import annotations

import numpy as np

from facecluster.score_table import rank_of

#: Faces shown at each end of the ranking.
RANKED_FACES = 30
#: Bins of the score histogram over [0, 1].
HISTOGRAM_BINS = 20
#: The histogram's stacking order, bottom first, and the names of the page's colours for them.
HISTOGRAM_LABELS = ("fake", "real", "unlabelled")
HISTOGRAM_WIDTH, HISTOGRAM_HEIGHT = 420, 120
NO_SCORES = "no image has a synthetic score"


def image_scores(results: dict, method: str | None) -> np.ndarray:
    """Each image's synthetic score under ``method``, NaN where it has none (or without a method)."""
    values = [(entry.get("scores") or {}).get(method) if method else None for entry in results["images"]]
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def why_no_scores(results: dict) -> str | None:
    """Why the page shows no synthetic scores; None when it has some."""
    scoring = results.get("scoring")
    if not scoring:
        return "this run has no synthetic scores (made by an older facecluster); re-run it to get them"
    if not scoring.get("named", False) or not scoring.get("n_scored"):
        return scoring.get("why_no_scores") or NO_SCORES
    return None


def _face(entry: dict, rank: int, score: float, thumb: str | None) -> dict:
    return {"rank": int(rank), "score": f"{score:.3f}", "score_value": float(score), "path": entry["path"],
            "split": entry["split"], "label": entry.get("label"), "thumb": thumb}


def ranked_faces(results: dict, thumbs: list[str | None], method: str, n: int = RANKED_FACES) -> dict:
    """The ``n`` most and ``n`` least synthetic-looking faces under ``method``, each end in rank order.

    Returns ``{"most": [...], "least": [...], "n_scored": int}``; a face is a dict of rank,
    score (text and value), path, split, given label (None when unlabelled) and thumbnail.
    The least list starts at the least synthetic-looking face, and leaves out faces already
    in the most list (a small folder).
    """
    scores = image_scores(results, method)
    ranks = rank_of(scores)
    order = np.argsort(np.where(ranks > 0, ranks, len(ranks) + 1), kind="stable")[: int((ranks > 0).sum())]
    faces = [_face(results["images"][i], ranks[i], scores[i], thumbs[i]) for i in order]
    most = faces[:n]
    least = faces[max(n, len(faces) - n):][::-1]
    return {"most": most, "least": least, "n_scored": len(faces)}


def score_histogram(results: dict, method: str, bins: int = HISTOGRAM_BINS) -> dict:
    """Counts of the scores under ``method`` per bin of [0, 1] and given label, as bars of a small SVG.

    Returns the labels present, their counts per bin, and the bars (``x``, ``y``, ``width``,
    ``height`` in the SVG's pixels, with ``label`` and ``count``), stacked fake, real, unlabelled.
    """
    scores = image_scores(results, method)
    given = np.array([entry.get("label") or "unlabelled" for entry in results["images"]], dtype=object)
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


def score_context(results: dict, thumbs: list[str | None]) -> dict:
    """What the page's score section shows: the method, the ranked faces and the histogram, or why not."""
    method = (results.get("scoring") or {}).get("method")
    absent = why_no_scores(results)
    if absent is None and not np.isfinite(image_scores(results, method)).any():
        absent = NO_SCORES
    if absent is not None:
        return {"method": method, "absent": absent}
    return {"method": method, "absent": None, "ranked": ranked_faces(results, thumbs, method),
            "histogram": score_histogram(results, method)}
