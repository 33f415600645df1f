"""Settings resolved for a run: the config schema, then each registry's own checks of its names and parameters.

`facecluster.config` is the schema and knows no stage; the cluster and feature registries know
their algorithms, families and parameters. Resolving a config runs both, so a bad setting is
refused with one line naming the key before any image is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facecluster.cluster import check_method
from facecluster.config import Config, one_line, parse_config, read_toml
from facecluster.errors import ConfigError
from facecluster.features import check_extractor


def check_config(config: Config, source: str = "config") -> Config:
    """``config`` after the registries have checked its methods and feature families.

    Raises
    ------
    ConfigError
        For an unknown algorithm or family, or parameters its estimator refuses; the message names the key.
    """
    try:
        for name, method in config.methods.items():
            check_method(name, method.algorithm, method.params, seed=config.seed)
        check_extractor(config.features.extractor)
    except ValueError as error:
        raise ConfigError(one_line(f"{source}: {error}")) from None
    return config


def build_config(preset: str | None = "study", overrides: dict[str, Any] | None = None,
                 source: str = "config") -> Config:
    """Resolve a preset and overrides into a validated `Config`.

    Raises
    ------
    ConfigError
        On an unknown preset, key, type, value, algorithm, parameter or feature family; the message names it.
    """
    return check_config(parse_config(preset, overrides, source), source)


def load_config(path: Path | None, preset: str | None = "study") -> Config:
    """Read a TOML file (if any) over a preset."""
    return build_config(preset, read_toml(path), source=str(path) if path else "config")
