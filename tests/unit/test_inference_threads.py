import os

import pytest

from facecluster.features.facenet_model import THREADS_ENV, inference_threads


def test_inference_threads_follow_the_environment_cap(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    assert inference_threads() == 1


@pytest.mark.parametrize("value", ["", "0", "-2", "many"])
def test_inference_threads_ignore_a_cap_that_is_not_a_positive_number(monkeypatch, value):
    monkeypatch.setenv(THREADS_ENV, value)
    assert inference_threads() == len(os.sched_getaffinity(0))
