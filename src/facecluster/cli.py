"""The ``facecluster`` command: parses, calls the pipeline, prints."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from facecluster.config import ConfigError, load_config
from facecluster.dataset import DatasetError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cluster face embeddings and measure how well clusters separate real from fake faces.")
# Wide enough for the score table when stdout is a pipe or a file (rich would assume 80).
out_console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


@app.callback()
def _main() -> None:
    """Cluster face embeddings and measure how well clusters separate real from fake faces."""


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def score_table(results: dict) -> Table:
    """The study's table: accuracy per method on each split, then the last split's other scores."""
    splits = list(results["dataset"]["counts"])
    last = splits[-1]
    dims = results["reduce"].get("n_components", "all")
    table = Table(title=f"{results['features']['extractor']} features, {dims} dims; scores of the train-majority mapping")
    table.add_column("method", no_wrap=True)
    table.add_column("clusters", justify="right")
    for split in splits:
        table.add_column(f"{split} acc", justify="right")
    for key in ("bal.acc", "ARI", "NMI"):
        table.add_column(f"{last} {key}", justify="right")
    for name, method in results["methods"].items():
        scores = method["scores"]

        def cell(split, key):
            value = scores.get(split, {}).get(key)
            return "–" if value is None else f"{value:.3f}"

        table.add_row(name, str(method["n_clusters"]), *[cell(s, "accuracy") for s in splits],
                      cell(last, "balanced_accuracy"), cell(last, "ari"), cell(last, "nmi"))
    return table


def _print_counts(results: dict) -> None:
    counts = results["dataset"]["counts"]
    parts = [f"{split}: {sum(c.values())} ({', '.join(f'{n} {label}' for label, n in c.items())})"
             for split, c in counts.items()]
    err_console.print("dataset " + "; ".join(parts), highlight=False)
    faces = results["faces"]
    err_console.print(f"faces: {faces['found']} found, {faces['no_face']} without a face (centre crop), "
                      f"{faces['failed']} unusable", highlight=False)


def with_options(settings, detector: str | None = None, precision: str | None = None):
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
    return settings


@app.command()
def run(
    data: Path = typer.Argument(..., help="Dataset root (<split>/<label>/ folders) or a CSV (path,label[,split])."),
    preset: str = typer.Option("study", help="Settings to start from; 'study' is the original study's."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file overriding any setting."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: a new one under runs/)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Feature cache folder (default: the user cache)."),
    workers: Optional[int] = typer.Option(None, min=0, help="Processes for decoding and detection (default: all cores)."),
    engine: str = typer.Option("local", help="Where extraction runs: 'local' or 'ray' (pip install facecluster[ray])."),
    address: Optional[str] = typer.Option(None, help="Ray cluster to join with --engine ray: 'auto' or ray://host:port."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    detector: Optional[str] = typer.Option(None, help="Face detector: mtcnn (the study's) or yunet (faster)."),
    precision: Optional[str] = typer.Option(None, help="FaceNet precision: fp32 (the study's) or int8 (faster)."),
) -> None:
    """Embed, reduce and cluster the faces in DATA, then score the clusters against the labels."""
    from facecluster.engine import make_engine
    from facecluster.pipeline import new_run_dir, run as run_pipeline
    from facecluster.store import FeatureStore

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        settings = load_config(config, preset)
        settings = with_options(settings, detector=detector, precision=precision)
        runner = make_engine(engine, workers=workers, address=address)
        out = out or new_run_dir()
        results = run_pipeline(data, settings, out, store=FeatureStore(cache_dir), engine=runner, progress=not quiet)
    except (ConfigError, DatasetError) as error:
        _fail(str(error))
    _print_counts(results)
    out_console.print(score_table(results))
    computed = results["timings"]["computed"]
    err_console.print(f"features: {results['features']['extractor']} checkpoint {results['features']['checkpoint']} "
                      f"(the study used {results['features']['study_checkpoint']}); "
                      f"computed {computed['features']} of {results['dataset']['n_images']}, rest from cache",
                      highlight=False)
    err_console.print(f"results: {out / 'results.json'}", highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    app()
