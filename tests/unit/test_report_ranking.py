"""The synthetic score on the page (report.ranking): ranked faces, histogram, absent scores; no models."""

from __future__ import annotations

import json
import re

import pytest

from facecluster.report.html import build_report
from facecluster.report.ranking import ranked_faces, score_context, score_histogram, why_no_scores
from facecluster.image_table import load_image_table, score_column
from tests.unit.test_report_html import HOSTILE, _fake_run, _rewrite

WHY = "the clusters are not named: give some labels (--labels FILE) or name them (facecluster name)"


def _table(scores: list[float | None], labels: list[str | None]):
    """An image table (as `load_image_table` gives it) of train images with these scores under method "m"."""
    import pandas as pd

    return pd.DataFrame({"path": [f"img_{i}.jpg" for i in range(len(scores))], "split": ["train"] * len(scores),
                         "label": pd.Series(labels, dtype=object),
                         "score_m": [float("nan") if s is None else s for s in scores]})


def _scoring(scores: list[float | None]) -> dict:
    return {"scoring": {"method": "m", "named": True, "n_scored": sum(s is not None for s in scores)}}


def _scored_run(tmp_path, names: list[str], named: bool = True):
    """A hand-made run folder with the scoring block and per-image scores a run writes; its results and table."""
    run = _fake_run(tmp_path, names, scores=lambda i, entry: round(0.1 + 0.8 * ((i * 7) % 10) / 10, 6) if named else None)

    def scoring(results):
        table = load_image_table(run, results)
        method = next(iter(results["methods"]))
        results["scoring"] = {"method": method, "named": named, "table": ["scores.csv"],
                              "n_scored": int(table[score_column(method)].notna().sum())}
        if not named:
            results["scoring"]["why_no_scores"] = WHY
            for method in results["methods"].values():
                method.update(mapping=None, mapping_source=None, scores={})

    _rewrite(run, scoring)
    results = json.loads((run / "results.json").read_text())
    return run, results, load_image_table(run, results)


def test_ranked_faces_run_from_the_highest_score_and_the_other_end_from_the_lowest():
    scores = [0.2, None, 0.9, 0.5, 0.9, 0.1]
    ranking = ranked_faces(_table(scores, ["real", None, "fake", None, "fake", "real"]), [None] * 6, "m", n=2)
    assert [(f["path"], f["rank"]) for f in ranking["most"]] == [("img_2.jpg", 1), ("img_4.jpg", 2)]  # tie: input order
    assert [(f["path"], f["rank"]) for f in ranking["least"]] == [("img_5.jpg", 5), ("img_0.jpg", 4)]
    assert ranking["n_scored"] == 5 and ranking["most"][0]["score"] == "0.900"
    small = ranked_faces(_table([0.3, 0.7, 0.5], ["real"] * 3), [None] * 3, "m", n=2)
    assert [f["rank"] for f in small["most"]] == [1, 2] and [f["rank"] for f in small["least"]] == [3]  # no face twice


def test_histogram_counts_every_score_once_by_given_label():
    scores = [0.0, 0.04, 0.51, 0.99, 1.0, None, 0.5]
    labels = ["real", "real", "fake", "fake", None, "fake", None]
    histogram = score_histogram(_table(scores, labels), "m", bins=10)
    assert histogram["labels"] == ["fake", "real", "unlabelled"]
    assert histogram["counts"]["real"][0] == 2 and sum(histogram["counts"]["real"]) == 2
    assert histogram["counts"]["fake"][5] == 1 and histogram["counts"]["fake"][9] == 1
    assert histogram["counts"]["unlabelled"][9] == 1 and histogram["counts"]["unlabelled"][5] == 1  # 1.0 and 0.5
    assert histogram["n"] == 6 == sum(b["count"] for b in histogram["bars"])
    tallest = max(histogram["bars"], key=lambda b: b["height"])
    assert tallest["height"] == pytest.approx(histogram["height"]) and tallest["count"] == histogram["peak"] == 2


@pytest.mark.parametrize("scoring, expected", [
    ({"method": "m", "named": False, "n_scored": 0, "why_no_scores": WHY}, WHY),
    (None, "older facecluster"),
    ({"method": "m", "named": True, "n_scored": 0}, "no image has a synthetic score"),
])
def test_no_scores_are_explained_never_zero(scoring, expected):
    results = {} if scoring is None else {"scoring": scoring}
    assert expected in why_no_scores(results)
    assert expected in score_context(results, _table([None, None], ["real", None]), [None, None])["absent"]


def test_page_ranks_faces_with_hostile_names_as_text(tmp_path):
    run, results, table = _scored_run(tmp_path, HOSTILE + ["d.jpg", "e.jpg", "f.jpg"])
    html = build_report(run)
    section = html[html.index('id="synthetic"'):html.index('id="scatter"')]
    method = results["scoring"]["method"]
    expected = sorted(table[score_column(method)].dropna(), reverse=True)
    assert 'data-kind="least"' not in section  # 8 scored faces: all in the top 30, none shown twice
    most = section[section.index('data-kind="most"'):]
    assert [float(s) for s in re.findall(r'data-score="([0-9.]+)"', most)] == expected
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in section and "<img src=x" not in section
    assert "<svg class=\"hist\"" in section and section.count("<rect ") >= 2
    assert "ROC AUC" in html


def test_page_of_unnamed_clusters_shows_dashes_and_the_reason(tmp_path):
    run, _, _ = _scored_run(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"], named=False)
    html = build_report(run)
    scores = html[html.index('id="scores"'):html.index('id="synthetic"')]
    cells = re.findall(r'<td class="num(?: first)?" title="([^"]*)">([^<]*)</td>', scores)
    assert cells and {text for _, text in cells} == {"–"} and {title for title, _ in cells} == {WHY}
    assert scores.count(f"no scores – {WHY}") == 2  # one note per method
    synthetic = html[html.index('id="synthetic"'):html.index('id="scatter"')]
    assert WHY in synthetic and 'class="ranked"' not in synthetic
    assert ">0.000<" not in scores
