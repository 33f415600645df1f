"""Shortcut audit: can the classes be told apart by something other than the faces' realness?

Checks, each with a one-line verdict (``flag`` true when it looks like a shortcut):

* **metadata**: format, mode, dimensions, JPEG quality (from the quantisation tables),
  chroma subsampling, file size, EXIF, progressive encoding, greyscale share, per label;
  each attribute alone and all of them together as a classifier (cross-validated);
* **file names**: label words ("fake", "real", "gan", …) in the path below the label folder,
  and a character n-gram classifier on the names;
* **framing**: a logistic regression on 32×32 grey thumbnails of the whole frame;
* **alignment** (needs a second extraction, so only in ``facecluster audit``): the run's
  feature and clusterers on box crops and on 5-point aligned crops; a warning when most of
  the separation disappears once faces are aligned identically;
* **processing history** (`facecluster.history`, `facecluster.history_checks`): per-file
  probes of earlier JPEG grids, resampling and double compression; whether each separates
  the labels, and whether each clustering (the run's, or the alignment check's) follows them.

A classifier "separates" the classes when its cross-validated balanced accuracy is at least
`FLAG_BALANCED_ACCURACY` and its out-of-fold predictions are associated with the labels at
p ≤ `FLAG_P_VALUE` (one-sided Fisher exact test), so small data sets do not flag by chance.
The audit reads labels on purpose: it is a diagnosis of the data set, never an input to the
clusters.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.stats import fisher_exact

from facecluster.config import LABELS, Config
from facecluster.dataset import DEFAULT_LABEL_NAMES, SPLIT_NAMES, Dataset, Sample
from facecluster.history_checks import history_checks
from facecluster.separation import FLAG_BALANCED_ACCURACY, FLAG_P_VALUE, SeparationCache, oof_separation
from facecluster.imagemeta import ImageMeta, meta_from_vector, meta_table, meta_vector, name_words, read_meta

log = logging.getLogger(__name__)

SHARE_DIFFERENCE = 0.05  # a binary attribute's share must differ by this much between labels
NAME_SHARE_DIFFERENCE = 0.1
ALIGNMENT_KEPT = 0.5  # warn when aligned crops keep less than this share of the box crops' separation
ALIGNMENT_MIN_EXCESS = 0.1  # ... and the box crops separated at least this far above chance


def relative_name(sample: Sample, label_folders: set[str]) -> str:
    """The sample's path below its split and label folders (what the user named the file)."""
    parts = sample.relpath.split("/")
    if len(parts) > 1 and parts[0].lower() in SPLIT_NAMES:
        parts = parts[1:]
    if len(parts) > 1 and parts[0].lower() in label_folders:
        parts = parts[1:]
    return "/".join(parts)


def _sample_rows(dataset: Dataset, max_per_label: int, seed: int, among: np.ndarray | None = None) -> np.ndarray:
    """At most ``max_per_label`` rows of each label (seeded), drawn from ``among`` (default: every row)."""
    rng = np.random.default_rng(seed)
    candidates = np.arange(len(dataset.samples)) if among is None else np.asarray(among, dtype=int)
    rows = []
    for label in LABELS:
        members = np.array([i for i in candidates.tolist() if dataset.samples[i].label == label], dtype=int)
        if len(members) > max_per_label:
            members = np.sort(rng.choice(members, max_per_label, replace=False))
        rows.extend(members.tolist())
    return np.array(sorted(rows), dtype=int)


def _tree(seed: int, depth: int = 3):
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=depth, class_weight="balanced", random_state=seed)


def _attribute_columns(metas: list[ImageMeta]) -> dict[str, tuple[np.ndarray, bool]]:
    """Attribute name → (values, categorical?)."""
    return {
        "format": (np.array([str(m.format) for m in metas]), True),
        "mode": (np.array([str(m.mode) for m in metas]), True),
        "dimensions": (np.array([f"{m.width}x{m.height}" for m in metas]), True),
        "jpeg_quality": (np.array([-1 if m.jpeg_quality is None else m.jpeg_quality for m in metas], dtype=float), False),
        "subsampling": (np.array([str(m.subsampling) for m in metas]), True),
        "file_size": (np.array([np.log10(max(m.file_size, 1)) for m in metas]), False),
    }


def _encode(values: np.ndarray, categorical: bool) -> np.ndarray:
    if not categorical:
        return values.reshape(-1, 1).astype(float)
    levels = sorted(set(values.tolist()))
    return (values[:, None] == np.array(levels)[None, :]).astype(float)


def _share_check(name: str, flags: np.ndarray, labels: np.ndarray, what: str) -> dict:
    counts = {label: [int(flags[labels == label].sum()), int((labels == label).sum())] for label in LABELS}
    shares = {label: (k / n if n else 0.0) for label, (k, n) in counts.items()}
    table = [[counts[label][0], counts[label][1] - counts[label][0]] for label in LABELS]
    p_value = float(fisher_exact(table).pvalue) if all(n for _, n in counts.values()) else 1.0
    flag = abs(shares["real"] - shares["fake"]) >= SHARE_DIFFERENCE and p_value <= FLAG_P_VALUE
    detail = " vs ".join(f"{counts[label][0]}/{counts[label][1]} {label}" for label in LABELS)
    message = (f"{what} differs by label: {detail} (p={p_value:.1e}); a model can key on it"
               if flag else f"{what}: {detail}, no difference")
    return {"check": name, "flag": bool(flag), "message": message, "counts": counts, "p_value": p_value}


def metadata_checks(metas: list[ImageMeta], labels: np.ndarray, seed: int = 0,
                    cache: SeparationCache | None = None) -> list[dict]:
    """Per-attribute and combined metadata checks (``cache``: see `facecluster.separation`)."""
    from sklearn.ensemble import RandomForestClassifier

    checks = [_share_check("greyscale", np.array([m.greyscale for m in metas]), labels, "greyscale share"),
              _share_check("exif", np.array([m.exif for m in metas]), labels, "EXIF presence"),
              _share_check("progressive", np.array([m.progressive for m in metas]), labels, "progressive JPEG share")]
    columns = _attribute_columns(metas)
    for name, (values, categorical) in columns.items():
        result = oof_separation(_encode(values, categorical), labels, _tree(seed), seed, cache)
        summary = {label: _describe_values(name, values[labels == label], categorical) for label in LABELS}
        hint = "; file size follows content (detail, colour) as well as encoding" if name == "file_size" else ""
        verdict = (f"{name} alone separates the labels (balanced accuracy {result['balanced_accuracy']:.2f}, "
                   f"p={result['p_value']:.1e}): {summary['real']} real vs {summary['fake']} fake{hint}"
                   if result["separates"] else f"{name}: {summary['real']} real vs {summary['fake']} fake, no separation")
        checks.append({"check": f"metadata:{name}", "flag": result["separates"], "message": verdict, **result})
    X = np.hstack([_encode(v, c) for v, c in columns.values()]
                  + [np.array([[m.greyscale, m.exif, m.progressive] for m in metas], dtype=float)])
    forest = RandomForestClassifier(n_estimators=100, max_depth=6, class_weight="balanced", random_state=seed, n_jobs=1)
    result = oof_separation(X, labels, forest, seed, cache)
    message = (f"metadata alone (no pixels, no names) separates the labels: balanced accuracy "
               f"{result['balanced_accuracy']:.2f} (random forest, cross-validated)"
               if result["separates"] else
               f"metadata alone does not separate the labels (balanced accuracy {_fmt(result['balanced_accuracy'])})")
    checks.append({"check": "metadata:classifier", "flag": result["separates"], "message": message, **result})
    return checks


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _describe_values(name: str, values: np.ndarray, categorical: bool) -> str:
    if len(values) == 0:
        return "none"
    if categorical:
        return ", ".join(f"{v} {n}" for v, n in Counter(values.tolist()).most_common(2))
    if name == "file_size":  # held as log10(bytes)
        return f"median {10 ** np.median(values) / 1000:.1f} kB"
    return f"median {np.median(values):.3g}"


def name_checks(names: list[str], words: list[list[str]], labels: np.ndarray, seed: int = 0,
                cache: SeparationCache | None = None) -> list[dict]:
    """Label words in the names, and whether a character n-gram classifier on the names separates the labels."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    n = {label: int((labels == label).sum()) for label in LABELS}
    per_word = {}
    for word in sorted({w for ws in words for w in ws}):
        has = np.array([word in ws for ws in words])
        per_word[word] = {label: int(has[labels == label].sum()) for label in LABELS}
    leaking = {w: c for w, c in per_word.items()
               if abs(c["real"] / max(n["real"], 1) - c["fake"] / max(n["fake"], 1)) >= NAME_SHARE_DIFFERENCE}
    detail = "; ".join(f"'{w}' in {c['real']}/{n['real']} real, {c['fake']}/{n['fake']} fake" for w, c in leaking.items())
    checks = [{"check": "names:label_words", "flag": bool(leaking), "words": per_word,
               "message": (f"file names contain label words: {detail}; never use names as features" if leaking
                           else "no label words in the file names")}]
    model = make_pipeline(CountVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=True),
                          LogisticRegression(max_iter=1000, class_weight="balanced"))
    stems = np.array([name.rsplit(".", 1)[0] or "_" for name in names], dtype=object)
    try:
        result = oof_separation(stems, labels, model, seed, cache)
    except ValueError:  # empty vocabulary (names without letters or digits)
        result = {"balanced_accuracy": None, "accuracy": None, "p_value": None, "separates": False}
    checks.append({"check": "names:classifier", "flag": result["separates"], **result,
                   "message": (f"the file name alone predicts the label (balanced accuracy {result['balanced_accuracy']:.2f}, "
                               "character n-grams)" if result["separates"] else
                               f"file names do not predict the label (balanced accuracy {_fmt(result['balanced_accuracy'])})")})
    return checks


def thumbnail_check(thumbnails: np.ndarray, labels: np.ndarray, seed: int = 0,
                    cache: SeparationCache | None = None) -> dict:
    """Framing: a logistic regression on 32×32 grey thumbnails of the whole frame."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000, class_weight="balanced"))
    result = oof_separation(thumbnails.reshape(len(thumbnails), -1), labels, model, seed, cache)
    message = (f"framing: 32x32 grey thumbnails of the whole frame separate the labels (accuracy "
               f"{result['accuracy']:.2f}, balanced {result['balanced_accuracy']:.2f}): composition differs by label "
               "(face position, size, background); clusters may follow framing, not realness" if result["separates"] else
               f"framing: 32x32 thumbnails do not separate the labels (balanced accuracy {_fmt(result['balanced_accuracy'])})")
    return {"check": "framing:thumbnails", "flag": result["separates"], "message": message, **result}


def alignment_verdict(box: dict[str, float | None], aligned: dict[str, float | None]) -> dict:
    """Flag the scorers (methods, ceilings) whose separation mostly disappears on aligned crops.

    ``box`` and ``aligned`` map a scorer name to its validation balanced accuracy.
    """
    lost = {}
    for name, before in box.items():
        after = aligned.get(name)
        if before is None or after is None:
            continue
        excess_before, excess_after = before - 0.5, after - 0.5
        if excess_before >= ALIGNMENT_MIN_EXCESS and excess_after < ALIGNMENT_KEPT * excess_before:
            lost[name] = (before, after)

    def scores(names):
        return ", ".join(f"{name} {_fmt(box[name])} → {_fmt(aligned.get(name))}" for name in names)

    kept = [name for name in box if name not in lost]
    if lost:
        message = (f"alignment: most of the separation disappears on aligned crops ({scores(lost)}): it came from "
                   "framing/pose, not realness" + (f"; kept by {scores(kept)}" if kept else ""))
    else:
        message = f"alignment: the separation survives 5-point alignment ({scores(kept)})"
    return {"check": "framing:alignment", "flag": bool(lost), "message": message,
            "box": box, "aligned": aligned}


def _label_folders(config: Config) -> set[str]:
    return {k.lower() for k in DEFAULT_LABEL_NAMES} | {k.lower() for k in config.dataset.label_names}


def read_metadata(dataset: Dataset, config: Config, rows: np.ndarray, store=None) -> list[ImageMeta]:
    """Metadata and thumbnails of the chosen rows, read by a few threads (decoding releases the GIL).

    With a ``store``, what a file's bytes say is cached by content hash (`imagemeta.meta_table`), so a
    re-run reads only the files it has not seen; the name words always come from the current name.
    """
    folders = _label_folders(config)
    extra = frozenset(folders)
    table = meta_table(store) if store is not None else None
    keys = [dataset.samples[i].sha256 or None for i in rows.tolist()]
    cached = table.get([k for k in keys if k]) if table is not None else {}

    def one(position: int) -> ImageMeta:
        sample = dataset.samples[int(rows[position])]
        name = relative_name(sample, folders)
        if keys[position] in cached:
            return meta_from_vector(cached[keys[position]], name_words(name, extra))
        return read_meta(sample.path, name, extra)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        metas = list(pool.map(one, range(len(keys))))
    if table is not None:
        new = {key: vector for key, meta in zip(keys, metas)
               if key and key not in cached and (vector := meta_vector(meta)) is not None}
        if new:
            try:
                table.put(list(new), np.stack(list(new.values())))
            except OSError as error:  # an unwritable cache costs the next run time, never this one's audit
                log.warning("file metadata not cached in %s (%s)", table.folder, error)
    return metas


def named_clusterings(model, clusters: dict[str, np.ndarray], prefix: str = "") -> dict[str, dict]:
    """Each fitted method's cluster per dataset row and the label its clusters are named (None where none)."""
    out = {}
    for name, assigned in clusters.items():
        if name not in model.mappings_:
            continue
        out[prefix + name] = {"clusters": np.asarray(assigned), "named": model.names_of(assigned, name)}
    return out


def alignment_check(dataset: Dataset, config: Config, engine, store, progress: bool = False,
                    clusterings: dict | None = None) -> dict:
    """The run's feature, reducer and clusterers on box crops and on aligned crops; the verdict.

    Each crop's fitted clusterings are added to ``clusterings`` (``box/<method>``, ``aligned/<method>``).
    """
    from facecluster.features import make_extractor
    from facecluster.model import fit_and_evaluate
    from facecluster.supervised import supervised_ceiling
    from facecluster.sweep import faces_with_crop

    faces = {crop: faces_with_crop(config.faces, crop) for crop in ("box", "aligned")}
    if faces["aligned"] is None:
        return {"check": "framing:alignment", "flag": False, "skipped": True,
                "message": "alignment: skipped, this build has no aligned crops (faces.crop)"}
    labels = np.array([s.label for s in dataset.samples], dtype=object)
    splits = np.array([s.split for s in dataset.samples], dtype=object)
    scored = "valid" if "valid" in dataset.splits else dataset.splits[-1]
    scores: dict[str, dict[str, float | None]] = {}
    for crop, faces_config in faces.items():
        extractor = make_extractor(config.features)
        extraction = engine.extract(dataset.samples, faces_config, extractor, store, progress=progress)
        model, evaluation = fit_and_evaluate(extraction.features, extraction.status, labels, splits,
                                             reduce=config.reduce, methods=config.methods, seed=config.seed,
                                             naming=config.evaluation.naming,
                                             blocks=getattr(extractor, "blocks", None), n_resamples=0)
        usable = evaluation["usable"]
        if clusterings is not None:
            clusterings.update(named_clusterings(model, evaluation["clusters"], prefix=f"{crop}/"))
        scores[crop] = {name: result["scores"].get(scored, {}).get("balanced_accuracy")
                        for name, result in evaluation["methods"].items()}
        ceiling = supervised_ceiling(extraction.features, labels, splits, usable, models=("logistic_regression",),
                                     seed=config.seed)
        scores[crop]["supervised logistic regression"] = ceiling.get("logistic_regression", {}).get(scored, {}).get(
            "balanced_accuracy")
    verdict = alignment_verdict(scores["box"], scores["aligned"])
    verdict.update({"features": config.features.extractor, "split": scored,
                    "reduce": config.reduce.model_dump(mode="json")})
    return verdict


def per_label_summary(metas: list[ImageMeta], labels: np.ndarray) -> dict[str, dict]:
    """What the files of each label look like: counts of formats, sizes, qualities…"""
    out = {}
    for label in LABELS:
        group = [m for m, y in zip(metas, labels) if y == label]
        sizes = np.array([m.file_size for m in group if m.error is None], dtype=float)
        out[label] = {
            "n": len(group),
            "unreadable": sum(m.error is not None for m in group),
            "formats": dict(Counter(str(m.format) for m in group).most_common()),
            "modes": dict(Counter(str(m.mode) for m in group).most_common()),
            "dimensions": dict(Counter(f"{m.width}x{m.height}" for m in group).most_common(5)),
            "jpeg_quality": {str(k): v for k, v in Counter(m.jpeg_quality for m in group).most_common(5)},
            "jpeg_standard_tables": sum(m.jpeg_quality_exact for m in group),
            "subsampling": dict(Counter(str(m.subsampling) for m in group).most_common()),
            "greyscale": sum(m.greyscale for m in group),
            "exif": sum(m.exif for m in group),
            "progressive": sum(m.progressive for m in group),
            "file_size": ({"median": float(np.median(sizes)), "p5": float(np.percentile(sizes, 5)),
                           "p95": float(np.percentile(sizes, 95))} if len(sizes) else None),
            "name_words": dict(Counter(w for m in group for w in m.name_words).most_common()),
        }
    return out


def audit(dataset: Dataset, config: Config, engine=None, store=None, alignment: bool = False,
          progress: bool = False, clusterings: dict[str, dict] | None = None) -> dict:
    """Run every check on ``dataset``; return the audit (``audit.json``, and ``results.json``'s ``audit``).

    ``clusterings`` maps a name to ``{"clusters": int per dataset row (-1 none), "named": label
    per row}`` (see `named_clusterings`); the history check says how much each follows the
    processing-history probes. The alignment check's own clusterings are added to them.
    The alignment check runs only with ``alignment=True`` and an engine and store. The
    classifiers run with one BLAS thread: on a busy machine, thread pools oversubscribe the
    cores (the thumbnail regression ran 40× slower).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _audit(dataset, config, engine, store, alignment, progress, dict(clusterings or {}))


def _audit(dataset: Dataset, config: Config, engine, store, alignment: bool, progress: bool,
           clusterings: dict[str, dict]) -> dict:
    rows = _sample_rows(dataset, config.audit.max_images_per_label, config.seed)
    metas = read_metadata(dataset, config, rows, store)
    readable = np.array([m.error is None for m in metas], dtype=bool)  # bool even when no image is labelled
    labels = np.array([dataset.samples[i].label for i in rows], dtype=object)
    out = {"n_images": len(dataset.samples), "n_read": int(readable.sum()),
           "sampled": bool(len(rows) < len(dataset.samples)),
           "per_label": per_label_summary(metas, labels),
           "unreadable": [m.error for m in metas if m.error is not None],
           "thresholds": {"balanced_accuracy": FLAG_BALANCED_ACCURACY, "p_value": FLAG_P_VALUE,
                          "share_difference": SHARE_DIFFERENCE, "alignment_kept": ALIGNMENT_KEPT}}
    counts = Counter(labels[readable].tolist())
    if min(counts.get(label, 0) for label in LABELS) < 2:
        out["checks"] = []
        out["skipped"] = "the audit needs at least 2 readable images of each label"
        out["flags"] = []
        return out
    kept = [m for m, ok in zip(metas, readable) if ok]
    y = labels[readable]
    names = [relative_name(dataset.samples[i], _label_folders(config)) for i, ok in zip(rows, readable) if ok]
    cache = SeparationCache(store) if store is not None else None  # the classifiers' answers, by their inputs
    checks = metadata_checks(kept, y, config.seed, cache)
    checks += name_checks(names, [m.name_words for m in kept], y, config.seed, cache)
    checks.append(thumbnail_check(np.stack([m.thumbnail for m in kept]), y, config.seed, cache))
    if cache is not None:
        cache.flush()
    if alignment and engine is not None and store is not None:
        checks.append(alignment_check(dataset, config, engine, store, progress, clusterings))
    # The probes read whole files at full resolution (about 60 ms of CPU per file): a seeded sample
    # per label bounds the first run's cost; the probes are cached by content hash after that.
    # Drawn from the files read above, so the sample stays full however large the folder is.
    probed = _sample_rows(dataset, config.audit.history_max_images_per_label, config.seed, among=rows[readable])
    found, out["history"] = history_checks(dataset, probed, clusterings, store)
    checks += found
    out["checks"] = checks
    out["flags"] = [c["message"] for c in checks if c["flag"]]
    return out
