import logging
import os

import pytest

from facecluster.features.facenet_model import THREADS_ENV, inference_threads


def test_inference_threads_follow_the_environment_cap(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    assert inference_threads() == 1


@pytest.mark.parametrize("value", ["", "0", "-2", "many"])
def test_inference_threads_ignore_a_cap_that_is_not_a_positive_number(monkeypatch, caplog, value):
    monkeypatch.setenv(THREADS_ENV, value)
    with caplog.at_level(logging.WARNING, logger="facecluster.features.facenet_model"):
        assert inference_threads() == len(os.sched_getaffinity(0))
    assert (f"{THREADS_ENV}={value!r} is not a positive whole number" in caplog.text) == bool(value)
