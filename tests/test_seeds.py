"""benchmarks/seeds.py: mean, spread and the comparisons from per-seed scores (no training here)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "seeds.py"
spec = importlib.util.spec_from_file_location("seeds", SCRIPT)
seeds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seeds)


def _scores(offset):
    rows = [seeds.BASELINE, "mildnet-triplet-offline", "resnet50-triplet-offline",
            "resnet50-lossless-offline", "resnet50-batch-all-online"]  # fmt: skip
    return {row: {"rank1": 0.5, "mAP": 0.1 * i + offset} for i, row in enumerate(rows)}


def test_summary_by_hand():
    per_seed = {0: _scores(0.0), 1: _scores(0.02)}
    summary = seeds.summarise(per_seed)
    mildnet = summary["rows"]["mildnet-triplet-offline"]["mAP"]
    assert mildnet["mean"] == pytest.approx(0.11) and mildnet["std"] == pytest.approx(0.0141421, 1e-4)
    first = summary["comparisons"][0]  # resnet50-triplet (0.2 + offset) over mildnet (0.1 + offset)
    assert first["mAP difference"] == pytest.approx(0.1)
    assert first["spread"] == pytest.approx(2 * 0.0141421, 1e-4)
    assert first["larger than the spread"] is True
    # Paired: the same +0.1 at both seeds, so no spread and the same sign.
    assert first["per-seed differences"] == pytest.approx([0.1, 0.1])
    assert first["paired std"] == pytest.approx(0.0, abs=1e-9)
    assert first["same sign at every seed"] is True
    text = seeds.markdown(per_seed, summary)
    assert "| 4.1: ResNet-50 over MILDNet | +10.0 |" in text
    assert "| +10.0, +10.0 | +10.0 ± 0.0 | True |" in text


def test_a_difference_that_changes_sign_is_not_the_same_sign():
    per_seed = {0: _scores(0.0), 1: _scores(0.0)}
    per_seed[1]["resnet50-lossless-offline"]["mAP"] = 0.1  # below triplet (0.2) at seed 1 only
    second = seeds.summarise(per_seed)["comparisons"][1]  # lossless over triplet
    assert second["per-seed differences"] == pytest.approx([0.1, -0.1])
    assert second["same sign at every seed"] is False
