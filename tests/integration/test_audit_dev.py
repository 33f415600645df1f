"""The audit on the real dev images: it must expose the shortcuts documented in RESEARCH.md."""

import pytest

from facecluster.audit import audit
from facecluster.dataset import discover
from facecluster.resolve import build_config


@pytest.mark.integration
def test_audit_flags_the_dev_sets_known_shortcuts(dev_dataset):
    result = audit(discover(dev_dataset), build_config())
    flagged = {check["check"]: check for check in result["checks"] if check["flag"]}
    assert {"framing:thumbnails", "greyscale", "names:label_words"} <= set(flagged)
    assert flagged["framing:thumbnails"]["accuracy"] > 0.95
    real, fake = result["per_label"]["real"], result["per_label"]["fake"]
    assert 100 <= real["greyscale"] <= 125 and fake["greyscale"] == 0  # RESEARCH.md counts 111 of 589
    assert real["name_words"] == {"real": 589} and fake["name_words"] == {"fake": 700}
    # What is identical across the classes must not be flagged.
    for attribute in ("format", "dimensions", "jpeg_quality"):
        assert f"metadata:{attribute}" not in flagged
    assert real["jpeg_quality"] == {"75": 589} and fake["jpeg_quality"] == {"75": 700}
