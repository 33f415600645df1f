"""How much the labels and each clustering follow the files' processing history (`facecluster.history`).

Two questions, asked per probe:

* **by label**: does the probe alone tell real from fake (AUC of the probe, fake vs real,
  per split)? Then a model can separate the classes by their history, not their faces;
* **by clustering**: does a clustering follow the probe? The AUC of the probe between the
  images a clustering names fake and those it names real (the *naming* AUC), and, for the
  cluster ids themselves, the AUC of "the image's cluster's train mean of the probe" for
  telling the images above the probe's train median from those below (the *cluster* AUC).
  Within-label AUCs ask the same inside each true label: clusters that split the reals by
  their history follow the history, whatever the labels do.

AUCs are folded to ≥ 0.5 (``direction`` says which way); the verdict is read on train, where
the clusters were fitted, and valid is reported beside it. These checks read labels on
purpose: they diagnose the data and the clusters, never feed them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.stats import mannwhitneyu

from facecluster.config import LABELS
from facecluster.dataset import Dataset
from facecluster.store import FeatureStore
from facecluster.history import PROBE_NAMES, PROBES, probe_file

LABEL_AUC = 0.65  # a probe whose fake-vs-real AUC reaches this separates the labels by history
FOLLOW_AUC = 0.7  # a clustering whose naming AUC on a probe reaches this follows that probe
P_VALUE = 1e-3
MIN_GROUP = 5  # images each side needs before an AUC is read


def auc(values: np.ndarray, positive: np.ndarray) -> tuple[float | None, float | None]:
    """AUC of ``values`` for telling ``positive`` rows from the rest (ties count half) and its Mann-Whitney p."""
    finite = np.isfinite(values)
    a, b = values[finite & positive], values[finite & ~positive]
    if len(a) < MIN_GROUP or len(b) < MIN_GROUP or np.ptp(values[finite]) == 0:
        return None, None
    test = mannwhitneyu(a, b, alternative="two-sided")
    return float(test.statistic / (len(a) * len(b))), float(test.pvalue)


def _folded(value: float | None) -> tuple[float | None, str | None]:
    if value is None:
        return None, None
    return (value, "higher") if value >= 0.5 else (1 - value, "lower")


def _round(value):
    return None if value is None else round(float(value), 4)


def _describe(values: np.ndarray) -> dict | None:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return {"n": int(len(values)), "median": _round(median), "p5": _round(p5), "p95": _round(p95)}


def probe_label_checks(probes: dict[str, np.ndarray], labels: np.ndarray, splits: np.ndarray) -> list[dict]:
    """Per probe: its distribution per split and label, its fake-vs-real AUC per split, and a flag.

    The flag is read on all audited rows (every split): AUC ≥ `LABEL_AUC` (folded) at p ≤ `P_VALUE`.
    """
    checks = []
    present = [s for s in ("train", "valid", "test") if (splits == s).any()]
    fake = labels == "fake"
    for probe in PROBES:
        values = probes[probe]
        distribution = {split: {label: _describe(values[(splits == split) & (labels == label)]) for label in LABELS}
                        for split in present}
        overall, p_value = auc(values, fake)
        folded, direction = _folded(overall)
        per_split = {}
        for split in present:  # in the overall direction, so a split that turns the other way shows below 0.5
            value = auc(values[splits == split], fake[splits == split])[0]
            per_split[split] = _round(None if value is None else (value if direction == "higher" else 1 - value))
        name = PROBE_NAMES[probe]
        flag = bool(folded is not None and folded >= LABEL_AUC and p_value <= P_VALUE)
        if folded is None:
            message = f"{name} probe: no reading that varies (n/a on these files)"
        elif flag:
            message = (f"processing history differs by label: the {name} probe alone gives AUC {folded:.2f} "
                       f"(fakes {direction}; train {_fmt(per_split.get('train'))}, valid {_fmt(per_split.get('valid'))}); "
                       "a model can key on the files' history, not their faces")
        else:
            message = f"{name} probe: AUC {folded:.2f} fake vs real, no difference by label"
        checks.append({"check": f"history:{probe}", "flag": flag, "message": message, "probe": probe,
                       "auc": _round(folded), "direction": direction, "p_value": p_value,
                       "auc_by_split": per_split, "distribution": distribution})
    return checks


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _cluster_auc(values: np.ndarray, clusters: np.ndarray, train: np.ndarray, rows: np.ndarray) -> float | None:
    """AUC of the cluster's train mean of the probe for telling ``rows`` above the train median from those below."""
    finite = np.isfinite(values) & (clusters >= 0)
    fitted = finite & train
    if fitted.sum() < 2 * MIN_GROUP:
        return None
    means = {int(c): float(values[fitted & (clusters == c)].mean()) for c in np.unique(clusters[fitted])}
    score = np.array([means.get(int(c), np.nan) for c in clusters])
    above = values > np.median(values[fitted])
    chosen = rows & finite & np.isfinite(score)
    return _folded(auc(score[chosen], above[chosen])[0])[0]


def follows_history(name: str, clusters: np.ndarray, named: np.ndarray, probes: dict[str, np.ndarray],
                    labels: np.ndarray, splits: np.ndarray, label_aucs: dict[str, float | None]) -> dict:
    """How much one clustering follows each probe, and its verdict (see the module's docstring).

    Parameters
    ----------
    clusters : int array
        The cluster of every audited row, -1 where it has none.
    named : object array
        The label the clustering gives every row ("real"/"fake", None where it has no cluster).
    label_aucs : dict
        The probes' own fake-vs-real AUCs, quoted in the verdict when a probe is confounded with the labels.
    """
    train = splits == "train"
    present = [s for s in ("train", "valid", "test") if (splits == s).any()]
    called_fake = named == "fake"
    has_name = np.array([n in LABELS for n in named])
    per_probe = {}
    for probe in PROBES:
        values = probes[probe]
        naming, within = {}, {}
        for split in present:
            rows = has_name & (splits == split)
            raw, p_value = auc(values[rows], called_fake[rows])
            folded, direction = _folded(raw)
            naming[split] = {"auc": _round(folded), "direction": direction, "p_value": p_value}
            inside = []
            for label in LABELS:
                chosen = rows & (labels == label)
                value, _ = auc(values[chosen], called_fake[chosen])
                if value is not None and raw is not None:  # the same direction as overall, not folded again
                    inside.append((value if raw >= 0.5 else 1 - value, int(chosen.sum())))
            within[split] = (_round(sum(v * n for v, n in inside) / sum(n for _, n in inside)) if inside else None)
        per_probe[probe] = {"naming_auc": naming, "within_label_auc": within,
                            "cluster_auc": {split: _round(_cluster_auc(values, clusters, train, splits == split))
                                            for split in present}}
    return {"clustering": name, **_verdict(name, per_probe, label_aucs), "probes": per_probe}


def _verdict(name: str, per_probe: dict, label_aucs: dict[str, float | None]) -> dict:
    """The probe the clustering follows most on train (naming AUC, else cluster AUC) and the flag."""
    def strength(probe):
        naming = per_probe[probe]["naming_auc"].get("train", {})
        if naming.get("auc") is not None:
            return naming["auc"], naming["p_value"], "naming"
        return per_probe[probe]["cluster_auc"].get("train"), None, "cluster"

    readings = {probe: strength(probe) for probe in PROBES if strength(probe)[0] is not None}
    if not readings:
        return {"check": f"history:clusters:{name}", "flag": False, "followed_probe": None,
                "message": f"{name}: no history probe varies on these files; nothing to compare the clusters with"}
    probe = max(readings, key=lambda p: readings[p][0])
    value, p_value, kind = readings[probe]
    flag = bool(value >= FOLLOW_AUC and (p_value is None or p_value <= P_VALUE))
    within = per_probe[probe]["within_label_auc"].get("train")
    valid = per_probe[probe]["naming_auc"].get("valid", {}).get("auc")
    label_auc = label_aucs.get(probe)
    detail = (f"{PROBE_NAMES[probe]} probe AUC {value:.2f} on train ({kind}), valid {_fmt(valid)}, "
              f"within labels {_fmt(within)}")
    if flag:
        confounded = (f"; the probe alone separates the labels at AUC {label_auc:.2f}, so history and label are "
                      "confounded here" if label_auc is not None and label_auc >= LABEL_AUC else "")
        message = f"{name}: these clusters follow processing history ({detail}){confounded}"
    else:
        message = f"{name}: the clusters do not follow processing history (strongest: {detail})"
    return {"check": f"history:clusters:{name}", "flag": flag, "message": message, "followed_probe": probe,
            "auc": _round(value), "auc_kind": kind, "within_label_auc": within}


#: Bump when a probe's computation changes: it keys the probes cached in the feature store.
PROBES_VERSION = 1


def read_probes(dataset: Dataset, rows: np.ndarray, store: FeatureStore | None = None
                ) -> tuple[dict[str, np.ndarray], list[str | None]]:
    """The processing-history probes of the chosen rows (NaN where a file cannot be probed) and the reasons.

    Probes are cached in the feature store by content hash (a table of their own), so a re-run
    reads only the files it has not probed; a file that could not be probed is tried again.
    """
    table = (store or FeatureStore()).table("history-probes", {"probes": list(PROBES), "version": PROBES_VERSION})
    keys = [dataset.samples[i].sha256 for i in rows.tolist()]
    cached = table.get([k for k in keys if k])

    def one(position: int):
        if keys[position] in cached:
            return dict(zip(PROBES, cached[keys[position]].tolist())), None
        sample = dataset.samples[int(rows[position])]
        probes, error = probe_file(sample.path, sample.relpath)
        # Rounded as the store keeps them (float32), so a cold and a warm run read the same values.
        return (None if probes is None else {k: float(np.float32(v)) for k, v in probes.items()}), error

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        found = list(pool.map(one, range(len(keys))))
    new = {keys[k]: p for k, (p, _) in enumerate(found) if p is not None and keys[k] and keys[k] not in cached}
    if new:
        table.put(list(new), np.array([[p[name] for name in PROBES] for p in new.values()], dtype=np.float64))
    probes = {name: np.array([np.nan if p is None else p[name] for p, _ in found], dtype=float) for name in PROBES}
    return probes, [error for _, error in found]


def history_checks(dataset: Dataset, rows: np.ndarray, clusterings: dict[str, dict] | None,
                   store: FeatureStore | None = None) -> tuple[list[dict], dict]:
    """The probes' label checks and, per clustering, how much it follows them; and the ``history`` block."""
    probes, errors = read_probes(dataset, rows, store)
    labels = np.array([dataset.samples[i].label for i in rows], dtype=object)
    splits = np.array([dataset.samples[i].split for i in rows], dtype=object)
    checks = probe_label_checks(probes, labels, splits)
    label_aucs = {c["probe"]: c["auc"] for c in checks}
    follow = [follows_history(name, c["clusters"][rows], c["named"][rows], probes, labels, splits, label_aucs)
              for name, c in (clusterings or {}).items()]
    block = {"n_probed": int(sum(e is None for e in errors)), "unprobed": [e for e in errors if e is not None],
             "probes": {c["probe"]: {k: c[k] for k in ("auc", "direction", "auc_by_split", "distribution")}
                        for c in checks},
             "clusterings": follow,
             "note": ("probes measure processing history (earlier JPEG, resampling), not realness"
                      + ("" if clusterings else "; no clusterings given, so none was compared with them"))}
    return checks + [{k: v for k, v in f.items() if k != "probes"} for f in follow], block
