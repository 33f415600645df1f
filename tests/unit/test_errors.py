"""Every error facecluster raises on purpose shares one base, so the command line can print it as one line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import facecluster
from facecluster.errors import FaceclusterError


def _modules():
    for info in pkgutil.walk_packages(facecluster.__path__, "facecluster."):
        if info.name == "facecluster.__main__":  # runs the command line
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError as error:  # an optional extra (ray) that is not installed here
            assert info.name == "facecluster.engines.ray", error


def test_every_exception_class_in_the_package_is_a_facecluster_error():
    defined = {obj for module in _modules() for _, obj in inspect.getmembers(module, inspect.isclass)
               if issubclass(obj, BaseException) and obj.__module__.startswith("facecluster.")}
    assert len(defined) >= 12
    assert [cls.__qualname__ for cls in defined if not issubclass(cls, FaceclusterError)] == []


def test_the_second_bases_are_kept_for_existing_handlers():
    from facecluster.dataset import DatasetError
    from facecluster.errors import ConfigError, MissingExtraError
    from facecluster.features.weights_io import WeightsFileError

    assert issubclass(ConfigError, ValueError) and issubclass(DatasetError, ValueError)
    assert issubclass(MissingExtraError, ImportError) and issubclass(WeightsFileError, ValueError)
