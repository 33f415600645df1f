"""Terminal tables of a sweep and the lines of an audit (rich renderables, no printing)."""

from __future__ import annotations

from rich.table import Table


def fmt_score(value, digits: int = 3) -> str:
    """A score with 3 decimals, or a dash for none."""
    return "–" if value is None else f"{value:.{digits}f}"


def leaderboard_table(result: dict, top: int = 15) -> Table:
    """The sweep's leaderboard: rows in the order of the train-only criterion, validation beside it."""
    selection = result["selection"]["criterion"]
    table = Table(title=f"sweep leaderboard, ranked by the train-only criterion '{selection}' "
                        f"({result['n_configurations']} configurations; valid never used to rank)")
    for name, justify in (("#", "right"), ("configuration", "left"), ("k", "right"), ("train cv-map", "right"),
                          ("train sil.", "right"), ("valid bal.acc [95% CI]", "right"), ("valid ARI", "right"),
                          ("ceiling LR / SVM", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    for i, row in enumerate(result["leaderboard"][:top], start=1):
        valid = row.get("valid", {})
        ci = valid.get("ci", {}).get("balanced_accuracy")
        interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
        ceiling = row.get("supervised", {})
        table.add_row(str(i), row["id"], str(row["n_clusters"]), fmt_score(row["train"]["cv_mapping_balanced_accuracy"]),
                      fmt_score(row["train"]["silhouette"]), fmt_score(valid.get("balanced_accuracy")) + interval,
                      fmt_score(valid.get("ari")),
                      f"{fmt_score(ceiling.get('logistic_regression', {}).get('valid'))} / "
                      f"{fmt_score(ceiling.get('linear_svm', {}).get('valid'))}")
    return table


def family_table(result: dict) -> Table:
    """Per feature family and crop: the train-chosen configuration's validation score beside the ceiling."""
    by_id = {row["id"]: row for row in result["leaderboard"]}
    table = Table(title="per feature family and crop: train-chosen clustering vs supervised ceiling (valid balanced accuracy)")
    for name in ("features", "crop", "chosen configuration", "unsupervised", "logistic reg.", "linear SVM"):
        table.add_column(name, overflow="fold")
    for family in result["families"]:
        key = f"{family['features']}|{family['crop']}"
        if "skipped" in family:
            table.add_row(family["features"], family["crop"], f"skipped: {family['skipped']}", "–", "–", "–")
            continue
        row = by_id.get(result["best_by_family"].get(key, ""), {})
        supervised = family.get("supervised", {})
        table.add_row(family["features"], family["crop"], row.get("id", "–"),
                      fmt_score(row.get("valid", {}).get("balanced_accuracy")),
                      fmt_score(supervised.get("logistic_regression", {}).get("valid", {}).get("balanced_accuracy")),
                      fmt_score(supervised.get("linear_svm", {}).get("valid", {}).get("balanced_accuracy")))
    return table


def audit_lines(result: dict) -> list[tuple[bool, str]]:
    """(flagged, message) for every check of an audit, flagged ones first."""
    return [(c["flag"], c["message"]) for c in sorted(result.get("checks", []), key=lambda c: not c["flag"])]
