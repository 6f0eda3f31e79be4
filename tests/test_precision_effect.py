"""benchmarks/precision_effect.py: a finished row scored with float32 and with bf16."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tripletlib import config
from tripletlib.synthetic import generate_synthetic_market
from tripletlib.training import train_row

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "precision_effect.py"
spec = importlib.util.spec_from_file_location("precision_effect", SCRIPT)
precision_effect = importlib.util.module_from_spec(spec)
spec.loader.exec_module(precision_effect)


def test_both_precisions_are_scored_and_bf16_embeddings_stay_unit_norm(tmp_path):
    data = tmp_path / "data"
    generate_synthetic_market(data, train_ids=8, test_ids=6, seed=0, progress=False)
    profile = config.resolve_profile(
        "ci", epochs=1, steps_per_epoch=2, triplet_batch_size=4, warm_start=None,
        offline_iterations=1,
    )  # fmt: skip
    run = train_row("mildnet", "triplet", "offline", profile, data, tmp_path / "row",
                    progress=False).out_dir  # fmt: skip
    report = precision_effect.precision_effect(run, data, tmp_path / "cache")
    assert set(report["precisions"]) == {"float32", "mixed_bfloat16"}
    for metrics in report["precisions"].values():
        assert 0 <= metrics["rank1"] <= 1 and 0 < metrics["mAP"] <= 1
    # bf16 rounds the activations: the embeddings move, a little, and stay on the unit sphere.
    assert 0 < report["max_embedding_change"] < 0.5
    assert report["unit_norm_error_bf16"] < 1e-5
    assert np.isfinite(report["max_embedding_change"])


def test_a_run_folder_without_weights_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        precision_effect.main(["--run", str(tmp_path), "--data", str(tmp_path)])
    assert "expected a finished run" in capsys.readouterr().err
