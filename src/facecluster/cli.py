"""The ``facecluster`` command: parses, calls the pipeline, prints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from facecluster.config import ConfigError, load_config
from facecluster.dataset import DatasetError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cluster face embeddings and measure how well clusters separate real from fake faces.")
out_console = Console()
err_console = Console(stderr=True)


@app.callback()
def _main() -> None:
    """Cluster face embeddings and measure how well clusters separate real from fake faces."""


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def score_table(results: dict) -> Table:
    """The study's table: accuracy per method on train and validation, plus the other scores."""
    splits = list(results["dataset"]["counts"])
    table = Table(title=f"{results['features']['extractor']} features, {results['reduce'].get('n_components', 'all')} dims")
    table.add_column("method")
    table.add_column("clusters", justify="right")
    for split in splits:
        table.add_column(f"{split} acc", justify="right")
    for split in splits:
        table.add_column(f"{split} bal.acc", justify="right")
    table.add_column(f"{splits[-1]} ARI", justify="right")
    table.add_column(f"{splits[-1]} NMI", justify="right")
    for name, method in results["methods"].items():
        scores = method["scores"]

        def cell(split, key):
            value = scores.get(split, {}).get(key)
            return "–" if value is None else f"{value:.3f}"

        table.add_row(name, str(method["n_clusters"]), *[cell(s, "accuracy") for s in splits],
                      *[cell(s, "balanced_accuracy") for s in splits], cell(splits[-1], "ari"), cell(splits[-1], "nmi"))
    return table


def _print_counts(results: dict) -> None:
    counts = results["dataset"]["counts"]
    parts = [f"{split}: {sum(c.values())} ({', '.join(f'{n} {label}' for label, n in c.items())})"
             for split, c in counts.items()]
    err_console.print("dataset " + "; ".join(parts), highlight=False)
    faces = results["faces"]
    err_console.print(f"faces: {faces['found']} found, {faces['no_face']} without a face (centre crop), "
                      f"{faces['failed']} unusable", highlight=False)


@app.command()
def run(
    data: Path = typer.Argument(..., help="Dataset root (<split>/<label>/ folders) or a CSV (path,label[,split])."),
    preset: str = typer.Option("study", help="Settings to start from; 'study' is the original study's."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file overriding any setting."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: a new one under runs/)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Feature cache folder (default: the user cache)."),
    workers: Optional[int] = typer.Option(None, min=0, help="Processes for decoding and detection (default: all cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Embed, reduce and cluster the faces in DATA, then score the clusters against the labels."""
    from facecluster.engine import LocalEngine
    from facecluster.pipeline import new_run_dir, run as run_pipeline
    from facecluster.store import FeatureStore

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        settings = load_config(config, preset)
        out = out or new_run_dir()
        results = run_pipeline(data, settings, out, store=FeatureStore(cache_dir), engine=LocalEngine(workers),
                               progress=not quiet)
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
