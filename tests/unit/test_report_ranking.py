"""The synthetic score on the page (report.ranking): ranked faces, histogram, absent scores; no models."""

from __future__ import annotations

import json
import re

import pytest

from facecluster.report.html import build_report
from facecluster.report.ranking import ranked_faces, score_context, score_histogram, why_no_scores
from tests.unit.test_report_html import HOSTILE, _fake_run

WHY = "the clusters are not named: give some labels (--labels FILE) or name them (facecluster name)"


def _results(scores: list[float | None], labels: list[str | None]) -> dict:
    images = [{"path": f"img_{i}.jpg", "split": "train", "label": label, "scores": {"m": score}}
              for i, (score, label) in enumerate(zip(scores, labels))]
    return {"images": images, "scoring": {"method": "m", "named": True, "n_scored": sum(s is not None for s in scores)}}


def _with_scores(run, named: bool = True):
    """Give a hand-made run folder the scoring block and per-image scores a run writes."""
    path = run / "results.json"
    results = json.loads(path.read_text())
    for i, entry in enumerate(results["images"]):
        entry["scores"] = {m: (round(0.1 + 0.8 * ((i * 7) % 10) / 10, 6) if named and entry["status"] != "empty_file"
                               else None) for m in results["methods"]}
    results["scoring"] = {"method": next(iter(results["methods"])), "named": named, "table": ["scores.csv"],
                          "n_scored": sum(e["scores"][next(iter(results["methods"]))] is not None for e in results["images"])}
    if not named:
        results["scoring"]["why_no_scores"] = WHY
        for method in results["methods"].values():
            method.update(mapping=None, mapping_source=None, scores={})
    path.write_text(json.dumps(results))
    return results


def test_ranked_faces_run_from_the_highest_score_and_the_other_end_from_the_lowest():
    scores = [0.2, None, 0.9, 0.5, 0.9, 0.1]
    ranking = ranked_faces(_results(scores, ["real", None, "fake", None, "fake", "real"]), [None] * 6, "m", n=2)
    assert [(f["path"], f["rank"]) for f in ranking["most"]] == [("img_2.jpg", 1), ("img_4.jpg", 2)]  # tie: input order
    assert [(f["path"], f["rank"]) for f in ranking["least"]] == [("img_5.jpg", 5), ("img_0.jpg", 4)]
    assert ranking["n_scored"] == 5 and ranking["most"][0]["score"] == "0.900"
    small = ranked_faces(_results([0.3, 0.7, 0.5], ["real"] * 3), [None] * 3, "m", n=2)
    assert [f["rank"] for f in small["most"]] == [1, 2] and [f["rank"] for f in small["least"]] == [3]  # no face twice


def test_histogram_counts_every_score_once_by_given_label():
    scores = [0.0, 0.04, 0.51, 0.99, 1.0, None, 0.5]
    labels = ["real", "real", "fake", "fake", None, "fake", None]
    histogram = score_histogram(_results(scores, labels), "m", bins=10)
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
    results = _results([None, None], ["real", None])
    results["scoring"] = scoring
    if scoring is None:
        del results["scoring"]
    assert expected in why_no_scores(results)
    assert expected in score_context(results, [None, None])["absent"]


def test_page_ranks_faces_with_hostile_names_as_text(tmp_path):
    run = _fake_run(tmp_path, HOSTILE + ["d.jpg", "e.jpg", "f.jpg"])
    results = _with_scores(run)
    html = build_report(run)
    section = html[html.index('id="synthetic"'):html.index('id="scatter"')]
    method = results["scoring"]["method"]
    expected = sorted((e["scores"][method] for e in results["images"] if e["scores"][method] is not None), reverse=True)
    assert 'data-kind="least"' not in section  # 8 scored faces: all in the top 30, none shown twice
    most = section[section.index('data-kind="most"'):]
    assert [float(s) for s in re.findall(r'data-score="([0-9.]+)"', most)] == expected
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in section and "<img src=x" not in section
    assert "<svg class=\"hist\"" in section and section.count("<rect ") >= 2
    assert "ROC AUC" in html


def test_page_of_unnamed_clusters_shows_dashes_and_the_reason(tmp_path):
    run = _fake_run(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"])
    _with_scores(run, named=False)
    html = build_report(run)
    scores = html[html.index('id="scores"'):html.index('id="synthetic"')]
    cells = re.findall(r'<td class="num(?: first)?" title="([^"]*)">([^<]*)</td>', scores)
    assert cells and {text for _, text in cells} == {"–"} and {title for title, _ in cells} == {WHY}
    assert scores.count(f"no scores – {WHY}") == 2  # one note per method
    synthetic = html[html.index('id="synthetic"'):html.index('id="scatter"')]
    assert WHY in synthetic and 'class="ranked"' not in synthetic
    assert ">0.000<" not in scores
