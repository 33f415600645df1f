"""The ``facecluster`` command: parses, calls the pipeline, prints."""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from facecluster.errors import ConfigError, FaceclusterError
from facecluster.images import display_name
from facecluster.report.tables import audit_lines, family_table, fmt_score, leaderboard_table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cluster face embeddings and measure how well clusters separate real from fake faces.")
# Wide enough for the score table when stdout is a pipe or a file (rich would assume 80).
out_console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


@app.callback()
def _main() -> None:
    """Cluster face embeddings and measure how well clusters separate real from fake faces."""
    # The command line, not the library, decides what the user sees of the log.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


# The options every command that reads a dataset shares, written once.
Data = Annotated[Path, typer.Argument(help="Dataset root (<split>/<label>/ folders, or any folder of images: "
                                            "unlabelled) or a CSV (path[,label][,split]).")]
Labels = Annotated[Optional[Path], typer.Option(
    help="CSV path,label naming some images (paths relative to the dataset folder); the rest stay unlabelled.")]
Preset = Annotated[str, typer.Option(help="Settings to start from; 'study' is the original study's.")]
ConfigFile = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="TOML file overriding any setting (for sweep: also a \\[sweep] grid table).")]
CacheDir = Annotated[Optional[Path], typer.Option(help="Feature cache folder (default: the user cache).")]
Workers = Annotated[Optional[int], typer.Option(min=0, help="Processes for decoding and detection (default: all cores).")]
EngineName = Annotated[str, typer.Option(help="Where extraction runs: 'local' or 'ray' (pip install facecluster\\[ray]).")]
Address = Annotated[Optional[str], typer.Option(help="Ray cluster to join with --engine ray: 'auto' or ray://host:port.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
ModelOption = Annotated[Path, typer.Option("--model", "-m", help="A model folder, or the folder `fit`/`run` wrote.")]


# typer's Exit and Abort are their own classes (RuntimeError subclasses), not click's.
_EXITS = (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.Abort)


class _ErrorHandler:
    """The one error handler of every command.

    A `FaceclusterError` (bad config, dataset, weights or model file, missing extra) is the
    user's to fix: its message as one line, exit code 2. An interrupt is exit code 130 and an
    `OSError` one line naming the file, exit code 1. Anything else is ours: one line naming it,
    the traceback saved in ``out/error.log`` for a bug report, exit code 1. ``out`` may be set
    inside the block, once the command knows its output folder.
    """

    def __init__(self, out: Optional[Path] = None) -> None:
        self.out = out

    def __enter__(self) -> "_ErrorHandler":
        return self

    def __exit__(self, kind, error, trace) -> bool:
        if error is None or isinstance(error, _EXITS):
            return False  # a deliberate exit (`_fail`) or a usage error: typer reports it
        if isinstance(error, FaceclusterError):
            _fail(str(error))
        if isinstance(error, KeyboardInterrupt):
            _fail("interrupted; run the same command again to resume from the feature cache", 130)
        if isinstance(error, OSError):
            where = display_name(error.filename) if error.filename else "a file"
            _fail(f"{where}: {error.strerror or error}; check the path, its permissions and the free space", 1)
        if isinstance(error, Exception):  # one line for the user, the traceback kept for a bug report
            _fail(f"stopped by {type(error).__name__}: {error} (traceback in {_crash_report(self.out, error)})", 1)
        return False


def _extraction(engine: str, workers: Optional[int], address: Optional[str], cache_dir: Optional[Path]):
    """The engine and feature store the extraction options name."""
    from facecluster.engines import make_engine
    from facecluster.store import FeatureStore

    return make_engine(engine, workers=workers, address=address), FeatureStore(cache_dir)


def _fail(message: str, code: int = 2) -> None:
    # Text, not markup: a file name like "[/x].jpg" must print as it is, not crash rich.
    err_console.print(Text.assemble(("error:", "bold red"), " ", display_name(message)), highlight=False,
                      soft_wrap=True)
    raise typer.Exit(code)


def _say(message: str) -> None:
    err_console.print(Text(message), highlight=False, soft_wrap=True)


def _tally(items: list[dict]) -> str:
    return ", ".join(f"{n} {code}" for code, n in Counter(item["code"] for item in items).most_common())


def _print_issues(results: dict) -> None:
    """One line each for unusable images, files not read and warnings; the details are in results.json."""
    problems, skipped, warnings = results["problems"], results.get("skipped", []), results.get("warnings", [])
    if problems:
        _say(f"problems: {len(problems)} image(s) unusable ({_tally(problems)}); each is named above and in "
             "results.json 'problems'")
    if skipped:
        files = sum(item.get("n_files", 1) for item in skipped)
        _say(f"skipped: {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} not read ({files} file(s): "
             f"{_tally(skipped)}); listed in results.json 'skipped'")
    if warnings:
        _say(f"warnings: {len(warnings)} ({_tally(warnings)}); named above and in results.json 'warnings'")


def _crash_report(out: Optional[Path], error: BaseException) -> str:
    """Save the traceback of an unexpected error; return where it went."""
    text = "".join(traceback.format_exception(error))
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "error.log"
        path.write_text(text, encoding="utf-8", errors="backslashreplace")
    except (OSError, AttributeError):
        handle = tempfile.NamedTemporaryFile("w", prefix="facecluster-error-", suffix=".log", delete=False,
                                             encoding="utf-8", errors="backslashreplace")
        with handle:
            handle.write(text)
        path = Path(handle.name)
    return str(path)


def score_table(results: dict) -> Table:
    """The study's table: accuracy per method on each split, then the last split's other scores."""
    splits = list(results["dataset"]["counts"])
    last = splits[-1]
    dims = (results.get("reduce") or {}).get("n_components", "all")
    what = "the model's cluster names" if results.get("kind") == "score" else "clusters named from train labels"
    table = Table(title=f"{results['features']['extractor']} features, {dims} dims; scores of {what} "
                        "(AUC: of the synthetic score)")
    table.add_column("method", no_wrap=True)
    table.add_column("clusters", justify="right")
    for split in splits:
        table.add_column(f"{split} acc", justify="right")
    for key in ("bal.acc", "AUC", "ARI", "NMI"):
        table.add_column(f"{last} {key}", justify="right")
    for name, method in results["methods"].items():
        scores = method["scores"]

        def cell(split, key):
            value = scores.get(split, {}).get(key)
            return "–" if value is None else f"{value:.3f}"

        table.add_row(name, str(method["n_clusters"]), *[cell(s, "accuracy") for s in splits],
                      cell(last, "balanced_accuracy"), cell(last, "roc_auc"), cell(last, "ari"), cell(last, "nmi"))
    return table


def _print_counts(results: dict) -> None:
    counts = results["dataset"]["counts"]
    parts = [f"{split}: {sum(c.values())} ({', '.join(f'{n} {label}' for label, n in c.items())})"
             for split, c in counts.items()]
    err_console.print("dataset " + "; ".join(parts), highlight=False)
    faces = results["faces"]
    err_console.print(f"faces: {faces['found']} found, {faces['no_face']} without a face (centre crop), "
                      f"{faces['failed']} unusable", highlight=False)


def with_options(settings, detector: str | None = None, precision: str | None = None, labels: Path | None = None):
    """The settings with the command line's ``--detector`` and ``--precision`` applied.

    Raises
    ------
    ConfigError
        For a value the config would refuse, naming the option.
    """
    from pydantic import ValidationError

    for option, section, key, value in (("--detector", "faces", "detector", detector),
                                        ("--precision", "features", "precision", precision)):
        if value is None:
            continue
        try:
            setattr(getattr(settings, section), key, value)
        except ValidationError as error:
            allowed = error.errors()[0].get("ctx", {}).get("expected", "")
            raise ConfigError(f"{option} {value!r} is not allowed; expected {allowed}") from None
    if labels is not None:
        settings.dataset.labels = str(labels)
    return settings


@app.command()
def run(
    data: Data,
    preset: Preset = "study",
    config: ConfigFile = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default: a new one under runs/).")] = None,
    cache_dir: CacheDir = None,
    workers: Workers = None,
    engine: EngineName = "local",
    address: Address = None,
    quiet: Quiet = False,
    detector: Annotated[Optional[str], typer.Option(help="Face detector: mtcnn (the study's) or yunet (faster).")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="FaceNet precision: fp32 (the study's) or int8 (faster).")] = None,
    labels: Labels = None,
) -> None:
    """Embed, reduce and cluster the faces in DATA, then score the clusters against the labels (where there are any)."""
    _run_and_print(data, preset, config, out, cache_dir, workers, engine, address, quiet, detector, precision, labels)


def _run_and_print(data, preset, config, out, cache_dir, workers, engine, address, quiet, detector, precision,
                   labels) -> dict:
    from facecluster.pipeline import new_run_dir, run as run_pipeline
    from facecluster.resolve import load_config

    with _ErrorHandler(out) as handler:
        settings = with_options(load_config(config, preset), detector=detector, precision=precision, labels=labels)
        runner, store = _extraction(engine, workers, address, cache_dir)
        out = handler.out = out or new_run_dir()
        started = time.perf_counter()
        results = run_pipeline(data, settings, out, store=store, engine=runner, progress=not quiet)
        seconds = time.perf_counter() - started
        _print_run(results, out, seconds)
    return results


@app.command()
def fit(
    data: Data,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the fitted model (model/), its card and report.")],
    preset: Annotated[str, typer.Option(help="Settings to start from; 'recommended' is the README's best on data "
                                             "without shortcuts, 'study' the original study's.")] = "recommended",
    config: ConfigFile = None,
    labels: Labels = None,
    cache_dir: CacheDir = None,
    workers: Workers = None,
    engine: EngineName = "local",
    address: Address = None,
    quiet: Quiet = False,
) -> None:
    """Fit a model on DATA (labels optional) and save it in OUT/model, to score other folders with `score`."""
    results = _run_and_print(data, preset, config, out, cache_dir, workers, engine, address, quiet, None, None, labels)
    model = results.get("model") or {}
    if model.get("folder"):
        _say(f"model: {display_name(out / model['folder'])} (score a folder: facecluster score FOLDER --model "
             f"{display_name(out)} --out DIR)")
    else:
        _fail(f"the model could not be saved: {model.get('not_saved')}")


@app.command()
def score(
    data: Data,
    model: ModelOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for scores.csv, scores.parquet, results.json "
                                                         "and report.html.")],
    method: Annotated[Optional[str], typer.Option(help="The model's method to score with (default: its best by "
                                                       "the train-only criterion).")] = None,
    labels: Labels = None,
    cache_dir: CacheDir = None,
    workers: Workers = None,
    engine: EngineName = "local",
    address: Address = None,
    quiet: Quiet = False,
) -> None:
    """Score every image in DATA with a saved model, without re-fitting: cluster, name, synthetic score, rank."""
    from facecluster.config import DatasetConfig
    from facecluster.scoring import score_folder

    with _ErrorHandler(out):
        runner, store = _extraction(engine, workers, address, cache_dir)
        started = time.perf_counter()
        dataset_config = DatasetConfig(labels=str(labels) if labels else None)
        results = score_folder(data, model, out, dataset_config, method=method, store=store, engine=runner,
                               progress=not quiet)
        _print_counts(results)
        _print_issues(results)
        if any(m["scores"] for m in results["methods"].values()):
            out_console.print(score_table(results))
        scoring = results["scoring"]
        _say(f"scored {scoring['n_scored']} of {results['dataset']['n_images']} images with method "
             f"{scoring['method']!r} in {time.perf_counter() - started:.1f} s"
             + ("" if scoring["named"] else f"; no scores: {scoring['why_no_scores']}"))
        _say(f"scores: {display_name(out / 'scores.csv')} and scores.parquet; report: {display_name(out / 'report.html')}")


@app.command()
def ask(
    data: Data,
    model: ModelOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for ask.csv and the labelling page ask.html.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many images to ask a person to label.")] = 32,
    strategy: Annotated[str, typer.Option(help="After each cluster's medoid: 'typical' (medoids of k cells: the "
                                               "default, better on benchmarks/labels.py) or 'doubtful' (where the "
                                               "model's clusterings disagree).")] = "typical",
    cache_dir: CacheDir = None,
    workers: Workers = None,
    engine: EngineName = "local",
    address: Address = None,
    quiet: Quiet = False,
) -> None:
    """Choose the K train images of DATA whose labels name the model's clusters best; write them to label."""
    from facecluster.report.ask_page import write_ask_page
    from facecluster.scoring import ask_for_labels

    with _ErrorHandler(out):
        runner, store = _extraction(engine, workers, address, cache_dir)
        table, scored, chosen = ask_for_labels(data, model, out, k, strategy, store=store, engine=runner,
                                               progress=not quiet)
        faces = scored.faces
        page = write_ask_page(out, table, [scored.dataset.samples[i] for i in chosen],
                              scored.extraction.records[chosen], faces.margin, faces.crop, str(data), store=store)
        _say(f"label these {len(table)} images: {display_name(page)} (or fill the label column of "
             f"{display_name(out / 'ask.csv')}), then: facecluster name {display_name(model)} --labels labels.csv "
             f"--images {display_name(data)} (or re-fit, the answers choosing the fit: facecluster fit "
             f"{display_name(data)} --labels labels.csv --out NEW)")


@app.command()
def name(
    model: Annotated[Path, typer.Argument(help="A model folder, or the folder `fit`/`run` wrote.")],
    names: Annotated[Optional[list[str]], typer.Argument(
        help="Cluster names, e.g. 0=fake 1=real (unnamed clusters: real).")] = None,
    method: Annotated[Optional[str], typer.Option(help="The method whose clusters to name (default: the model's).")] = None,
    labels: Annotated[Optional[Path], typer.Option(
        help="Instead of NAMES: ask.csv (or the page's labels.csv), scores.csv or the report's selection CSV "
             "with a label column filled in.")] = None,
    images: Annotated[Optional[Path], typer.Option(
        help="With --labels: the folder its paths are relative to; the model then also learns the method "
             "'answers', a linear classifier on those images (better than naming clusters from a few labels: "
             "docs/labels.md), and makes it its default.")] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Name a saved model's clusters by hand (as the study did by eye) or from labelled rows; nothing is re-fitted."""
    from facecluster.scoring import rename_clusters

    with _ErrorHandler(model):
        if images is not None and labels is None:
            raise ConfigError("--images goes with --labels FILE: the folder that FILE's paths are relative to")
        if bool(names) == bool(labels):
            raise ConfigError("give either cluster names (0=fake 1=real …) or --labels FILE")
        mapping = {}
        for item in names or []:
            cluster, _, label = item.partition("=")
            if not (cluster.strip().isdigit() and label.strip() in ("real", "fake")):
                raise ConfigError(f"{item!r}: write a cluster name as <cluster id>=real or <cluster id>=fake, e.g. 0=fake")
            mapping[int(cluster)] = label.strip()
        store = _extraction("local", None, None, cache_dir)[1] if images is not None else None
        folder, method, mapping, agreement = rename_clusters(model, mapping or None, method, labels=labels,
                                                             images=images, store=store)
        if agreement:
            _say("the answers agree best with method " + repr(method) + " (leave-one-out balanced accuracy: " +
                 ", ".join(f"{m} {'–' if v is None else f'{v:.2f}'}" for m, v in agreement.items()) +
                 "); it is now the model's default")
        _say(f"{display_name(folder)}: method {method!r} now names " +
             ", ".join(f"cluster {k} {v}" for k, v in sorted(mapping.items())) + "; the synthetic score follows "
             "these names (uncalibrated)")
        if images is not None:
            _say(f"{display_name(folder)}: learnt the method 'answers' from the labelled images of "
                 f"{display_name(images)}; it is now the model's default (score with it: facecluster score FOLDER "
                 f"--model {display_name(folder)})")


def _print_run(results: dict, out: Path, seconds: float) -> None:
    _print_counts(results)
    _print_issues(results)
    if any(m.get("scores") for m in results["methods"].values()):
        out_console.print(score_table(results))
    else:
        _say(f"no scores: {results['scoring'].get('why_no_scores', 'no method could be scored')}; "
             "the clusters, montages and report are written")
    computed = results["timings"]["computed"]
    features = results["features"]
    model = (f" checkpoint {features['checkpoint']} (the study used {features['study_checkpoint']})"
             if "study_checkpoint" in features else "")
    err_console.print(f"features: {features['extractor']}{model}; "
                      f"computed {computed['features']} of {results['dataset']['n_images']}, rest from cache",
                      highlight=False)
    extract = results["timings"]["extract_seconds"]
    rate = f", {computed['features'] / extract:.0f} img/s" if computed["features"] and extract > 0 else ""
    err_console.print(f"time: {seconds:.1f} s in all; extraction {extract:.1f} s{rate}", highlight=False)
    _say(f"results: {display_name(out / 'results.json')}")
    _say(f"report: {display_name(out / 'report.html')}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `facecluster run`.")],
    images: Annotated[Optional[Path], typer.Option(
        help="Where the dataset's images are now, if they moved since the run.")] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Rebuild RUN_DIR/report.html from the run's results.json and files; nothing is recomputed.

    The thumbnails' face crops come from the feature cache when the run (or an earlier report) put them there.
    """
    from facecluster.report.html import write_report
    from facecluster.store import FeatureStore

    with _ErrorHandler(run_dir):
        path = write_report(run_dir, root=images, store=FeatureStore(cache_dir))
        err_console.print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)", highlight=False)


@app.command()
def sweep(
    data: Data,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for sweep.json, best.toml and plots/.")],
    config: ConfigFile = None,
    preset: Preset = "study",
    cache_dir: CacheDir = None,
    workers: Workers = None,
    engine: EngineName = "local",
    address: Address = None,
    top: Annotated[int, typer.Option(min=1, help="Leaderboard rows to print.")] = 15,
    quiet: Quiet = False,
) -> None:
    """Run a grid of features × crops × reducers × clusterers; choose the best with train-only criteria."""
    from facecluster.dataset import discover
    from facecluster.sweep import Grid, sweep as run_sweep, write_outputs

    with _ErrorHandler(out):
        grid = Grid.from_toml(config, preset)
        dataset = discover(data, grid.base.dataset)
        runner, store = _extraction(engine, workers, address, cache_dir)
        result = run_sweep(dataset, grid, runner, store, progress=not quiet)
        files = write_outputs(result, grid, out)
        out_console.print(leaderboard_table(result, top))
        out_console.print(family_table(result))
        best = result["best"]
        if best is None:
            _fail("no configuration of the grid could be fitted; see the errors in " + str(files["sweep"]))
        out_console.print(f"chosen with train-only criterion '{result['selection']['criterion']}': {best['id']}; "
                          f"valid balanced accuracy {fmt_score(best.get('valid', {}).get('balanced_accuracy'))} "
                          f"(reported, not used to choose)", highlight=False)
        err_console.print(f"{len(result['failed'])} configurations failed; sweep took {result['seconds']:.0f} s; "
                          f"written: {', '.join(str(p) for p in files.values())}", highlight=False)


def print_audit(result: dict) -> None:
    """One line per check: flags first (what looks like a shortcut), then what passed."""
    if result.get("skipped"):
        err_console.print(f"audit skipped: {result['skipped']}", highlight=False)
    for flagged, message in audit_lines(result):
        mark = "[bold yellow]FLAG[/]" if flagged else "[green]ok  [/]"
        out_console.print(f"{mark} {escape(message)}", highlight=False, soft_wrap=True)
    checks = result.get("checks", [])
    out_console.print(f"{sum(c['flag'] for c in checks)} of {len(checks)} checks flagged a possible shortcut "
                      f"({result['n_read']} of {result['n_images']} images read)", highlight=False)


@app.command()
def audit(
    data: Data,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for audit.json (default: print only).")] = None,
    config: ConfigFile = None,
    preset: Preset = "study",
    alignment: Annotated[bool, typer.Option(
        help="Compare box and aligned crops (extracts features twice, cached).")] = True,
    cache_dir: CacheDir = None,
    workers: Workers = None,
    engine: EngineName = "local",
    address: Address = None,
    quiet: Quiet = False,
) -> None:
    """Look for shortcuts: metadata, file names, framing and alignment that separate the labels without realness."""

    from facecluster.audit import audit as run_audit
    from facecluster.dataset import discover
    from facecluster.outputs import provenance, write_json
    from facecluster.resolve import load_config

    with _ErrorHandler(out):
        settings = load_config(config, preset)
        dataset = discover(data, settings.dataset)
        runner, store = _extraction(engine, workers, address, cache_dir) if alignment else (None, None)
        result = run_audit(dataset, settings, runner, store, alignment=alignment, progress=not quiet)
        print_audit(result)
        if out is not None:
            write_json(out / "audit.json", {**result, "provenance": provenance(settings)})
            err_console.print(f"audit: {out / 'audit.json'}", highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    app()
