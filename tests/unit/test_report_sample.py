"""Which faces the page embeds (report.sample): bounded, seeded, every group seen, problems and no-face always in."""

from __future__ import annotations

import numpy as np
import pandas as pd

from facecluster.report.sample import report_sample


def _table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    status = np.where(rng.random(n) < 0.005, "no_face", "ok").astype(object)
    status[:5] = "corrupt"
    rare = rng.random(n) < 0.002  # a tiny cluster a uniform sample would likely miss
    return pd.DataFrame({
        "status": status,
        "split": pd.Series(rng.choice(["train", "valid", "test"], n, p=[0.8, 0.1, 0.1]), dtype=object),
        "label": pd.Series([None if v < 0.05 else ("real" if v < 0.5 else "fake") for v in rng.random(n)],
                           dtype=object),
        "cluster_a": pd.array(np.where(rare, 9, rng.integers(0, 3, n)), dtype="Int64"),
        "cluster_b": pd.array(np.where(rng.random(n) < 0.05, None, rng.integers(0, 5, n)), dtype="Int64"),
    })


def test_the_sample_is_bounded_seeded_and_holds_every_group_problem_and_no_face_image():
    table = _table(20_000)
    usable = (table["status"] != "corrupt").to_numpy()
    always = [7, 11, 19_999]
    sample = report_sample(table, ["a", "b"], usable, size=600, seed=3, always=always)
    assert np.array_equal(sample, report_sample(table, ["a", "b"], usable, size=600, seed=3, always=always))
    assert not np.array_equal(sample, report_sample(table, ["a", "b"], usable, size=600, seed=4, always=always))
    no_face = (table["status"] == "no_face").to_numpy()
    assert sample[no_face | ~usable].all() and sample[always].all()
    assert sample[usable].sum() == 600 < usable.sum()  # the faces: no-face images count, problems (no face) do not
    for method in ("a", "b"):
        groups = table[usable].groupby([table[f"cluster_{method}"].fillna(-1), table["label"].fillna("none"),
                                        "split"]).groups
        chosen = set(np.flatnonzero(sample))
        assert all(chosen & set(rows) for rows in groups.values()), method  # every cluster x label x split


def test_a_small_run_keeps_every_face():
    table = _table(200)
    usable = (table["status"] != "corrupt").to_numpy()
    assert report_sample(table, ["a"], usable, size=500).all()
