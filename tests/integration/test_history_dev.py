"""The history probes on real dev images: every file is probed, the readings are complete and repeatable."""

import numpy as np
import pytest

from facecluster.history import PROBES, probe_file


@pytest.mark.integration
def test_every_dev_file_gets_a_full_repeatable_reading(dev_dataset):
    files = [path for label in ("real", "fake") for path in sorted((dev_dataset / "train" / label).glob("*.jpg"))[:5]]
    readings = []
    for path in files:
        probes, error = probe_file(path, path.name)
        assert error is None, error
        readings.append(probes)
    assert all(r["jpeg_quality"] == 75 for r in readings)  # PROVENANCE.md: quality 75 for both labels
    assert all(np.isfinite(r[name]) for r in readings for name in PROBES)
    assert probe_file(files[0], files[0].name)[0] == readings[0]
