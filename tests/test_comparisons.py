"""comparisons: the paired differences over seeds, worked by hand; benchmarks/seeds.py's report."""

import importlib.util
import json
from pathlib import Path

import pytest

from tripletlib import comparisons

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "seeds.py"


def _metrics(start, trained):
    return {"pretrained": {"rank1": 0.1, "mAP": start}, "untrained": {"rank1": 0.0, "mAP": 0.01},
            "trained": {"rank1": 0.5, "mAP": trained}}  # fmt: skip


def _record(offsets=(0.0, 0.02)):
    per_seed, baselines = {}, {}
    for seed, offset in enumerate(offsets):
        per_seed[seed] = {
            "mildnet-triplet-offline": _metrics(0.02, 0.10 + offset),
            "resnet50-triplet-offline": _metrics(0.05, 0.30 + offset),
            "resnet50-lossless-offline": _metrics(0.05, 0.25 + 2 * offset),
            "resnet50-batch-all-online": _metrics(0.05, 0.40),
        }
        baselines[seed] = {"rank1": 0.4, "mAP": 0.2}
    return comparisons.seed_record("ci", per_seed, baselines)


def test_paired_differences_by_hand():
    record = _record()
    first = comparisons.paired_differences(record, comparisons.COMPARISONS[0])  # 4.1
    # Trained: (0.30 + o) - (0.10 + o) = 20 points at both seeds, no spread.
    assert first["trained mAP"]["per seed"] == pytest.approx([20.0, 20.0])
    assert first["trained mAP"]["std"] == pytest.approx(0.0, abs=1e-9)
    # Added to the start: (0.30 + o - 0.05) - (0.10 + o - 0.02) = 17 points.
    assert first["added to the start"]["mean"] == pytest.approx(17.0)
    second = comparisons.paired_differences(record, comparisons.COMPARISONS[1])  # 4.2
    # (0.25 + 2o) - (0.30 + o) = -5 + 100 o points: -5 and -3; std of (-5, -3) with ddof 1 = sqrt 2.
    assert second["trained mAP"]["per seed"] == pytest.approx([-5.0, -3.0])
    assert second["trained mAP"]["std"] == pytest.approx(2**0.5)
    assert second["trained mAP"]["same sign at every seed"] is True


def test_a_difference_that_changes_sign_is_not_the_same_sign():
    record = _record(offsets=(0.0, 0.2))  # lossless over triplet: -5 then +15
    second = comparisons.paired_differences(record, comparisons.COMPARISONS[1])
    assert second["trained mAP"]["per seed"] == pytest.approx([-5.0, 15.0])
    assert second["trained mAP"]["same sign at every seed"] is False


def test_tables_and_the_record_round_trip(tmp_path):
    record = _record()
    path = comparisons.write_seed_record(tmp_path / "seeds.json", record)
    assert comparisons.read_seed_record(path) == json.loads(json.dumps(record))
    table = comparisons.comparisons_table(record, tables=("4.2",))
    assert list(table["difference of"]) == ["trained mAP", "added to the start"]
    assert table.iloc[0]["per seed"] == "-5.0, -3.0" and table.iloc[0]["mean"] == -4.0
    rows = comparisons.rows_table(record)
    mildnet = rows[(rows.row == "mildnet-triplet-offline") & (rows.seed == 1)].iloc[0]
    assert mildnet["added to the start"] == pytest.approx(10.0)
    summary = comparisons.summary_table(record)
    assert summary.loc["resnet50-triplet-offline", "trained mAP mean"] == pytest.approx(31.0)
    assert summary.loc[comparisons.BASELINE, "trained mAP mean"] == pytest.approx(20.0)


def test_bad_records_say_which_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        comparisons.read_seed_record(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"version": 1, "seeds"')
    with pytest.raises(ValueError, match="bad.json is damaged.*benchmarks/seeds.py"):
        comparisons.read_seed_record(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="unknown table"):
        comparisons.comparisons_table(_record(), tables=("4.4",))
    with pytest.raises(ValueError, match="differ"):
        comparisons.seed_record("ci", {0: {}}, {1: {}})


def test_the_script_reports_every_table():
    spec = importlib.util.spec_from_file_location("seeds", SCRIPT)
    seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeds)
    text = seeds.markdown(_record())
    assert "| 4.1 | ResNet-50 over MILDNet | trained mAP | +20.0, +20.0 | 20.0 | 0.0 | True |" in text
    assert "Profile ci, seeds 0, 1" in text


def test_describe_says_the_mean_and_whether_the_sign_holds():
    text = comparisons.describe(_record(offsets=(0.0, 0.2)), "4.2")
    assert "trained mAP: +5.0 ± 14.1 points (-5.0, +15.0); the sign changes between seeds" in text
    assert "seeds 0, 1" in text
    with pytest.raises(ValueError, match="unknown table"):
        comparisons.describe(_record(), "4.9")
