"""It learns: the ci profile's ResNet-50 + triplet loss + offline mining beats its untrained self.

Slow (a couple of minutes on 2 CPU cores): run with `pytest -m slow`.
"""

from __future__ import annotations

import pytest

from tripletlib import config
from tripletlib.synthetic import generate_synthetic_market
from tripletlib.training import train_row

# Measured on the ci profile's synthetic dataset (see the report in docs/benchmarks.md).
MAP_GAIN = 0.0


@pytest.mark.slow
def test_trained_network_beats_the_untrained_one(tmp_path):
    profile = config.resolve_profile("ci")
    data_root = tmp_path / "data"
    generate_synthetic_market(
        data_root,
        train_ids=profile.synthetic_train_ids,
        test_ids=profile.synthetic_test_ids,
        seed=profile.synthetic_seed,
        progress=False,
    )
    result = train_row(
        "resnet50", "triplet", "offline", profile, data_root, tmp_path / "run", progress=False
    )
    untrained, trained = result.metrics["untrained"], result.metrics["trained"]
    assert trained["num_valid_queries"] == untrained["num_valid_queries"] > 0
    assert trained["mAP"] > untrained["mAP"] + MAP_GAIN
    history = result.history()
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
