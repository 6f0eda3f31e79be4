"""scripts/make_warm_starts.py (issue 14): the shipped warm start's recipe, its monitor curve and
its record, at a tiny size (a 4-person pool, 2 steps)."""

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tripletlib import models, pretraining
from tripletlib.synthetic import generate_synthetic_market

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_warm_starts.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_warm_starts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_warm_start_writes_the_whole_embedder_and_its_monitor_curve(
    script, tmp_path, monkeypatch
):
    monkeypatch.setattr(pretraining, "WARM_START_POOL", {"train_ids": 4, "test_ids": 2, "seed": 7})
    later = ({"train_ids": 5, "test_ids": 2, "seed": 9}, {"train_ids": 3, "test_ids": 2, "seed": 11})
    monkeypatch.setattr(pretraining, "WARM_START_LATER_POOLS", later)
    monkeypatch.setitem(pretraining.WARM_START_RECIPE, "p", 2)
    monitored = tmp_path / "monitored"
    generate_synthetic_market(monitored, train_ids=2, test_ids=3, seed=8, progress=False)
    target = script.make_warm_start("mildnet", tmp_path / "work", tmp_path / "out", steps=2,
                                    progress=False, monitor=[monitored], every=1)  # fmt: skip
    record = json.loads(pretraining.warm_start_record_path(target).read_text())
    assert record["steps"] == 6 and record["contains"] == "embedder (backbone and head)"
    assert record["pools"] == pretraining.warm_start_pools() == [pretraining.WARM_START_POOL, *later]
    # Each stage trains on its own pool: 4 people, then 5, then 3.
    assert [stage["identities"] for stage in record["stages"]] == [4, 5, 3]
    assert [stage["learning_rate"] for stage in record["stages"]] == [
        stage["learning_rate"] for stage in pretraining.warm_start_stages("mildnet")
    ]
    for stage in record["stages"]:
        curve = stage["monitor"]["curve"]
        assert [point["step"] for point in curve] == [1, 2]
        for point in curve:
            rank1, mean_ap = point["head"]["monitored"]
            assert 0 <= rank1 <= 100 and 0 < mean_ap <= 100
            assert len(point["random_head"]["monitored"]) == 2
    lines = (tmp_path / "out" / "mildnet-monitor.jsonl").read_text().splitlines()
    assert len(lines) == 6
    # The file holds backbone and head: loading it gives a fresh embedder the trained head.
    keras.utils.set_random_seed(5)
    recipe = pretraining.WARM_START_RECIPE
    embedder = models.build_embedder("mildnet", input_shape=recipe["input_shape"],
                                     width=recipe["width"], freeze_layers=0,
                                     input_normalization=recipe["input_normalization"])  # fmt: skip
    random_head = embedder.get_layer("embedding").get_weights()[0]
    embedder.load_weights(target)
    assert not np.allclose(embedder.get_layer("embedding").get_weights()[0], random_head)

    # --continue-from: a file with the first two stages goes on with the third only and keeps the
    # records of the stages it holds; a file that holds every stage is refused.
    with monkeypatch.context() as two_stages:
        two_stages.setattr(pretraining, "WARM_START_LATER_POOLS", later[:1])
        earlier = script.make_warm_start("mildnet", tmp_path / "work", tmp_path / "two", steps=1,
                                         progress=False)  # fmt: skip
    earlier_record = json.loads(pretraining.warm_start_record_path(earlier).read_text())
    again = script.make_warm_start("mildnet", tmp_path / "work", tmp_path / "again", steps=2,
                                   progress=False, continue_from=earlier)  # fmt: skip
    continued = json.loads(pretraining.warm_start_record_path(again).read_text())
    assert continued["stages"][:2] == earlier_record["stages"]
    assert continued["steps"] == 1 + 1 + 2 and continued["stages"][2]["identities"] == 3
    assert continued["pools"] == pretraining.warm_start_pools()
    embedder.load_weights(earlier)
    two = embedder.get_layer("embedding").get_weights()[0].copy()
    embedder.load_weights(again)
    assert not np.allclose(embedder.get_layer("embedding").get_weights()[0], two)
    with pytest.raises(ValueError, match="fewer than all of the recipe's pools"):
        script.make_warm_start("mildnet", tmp_path / "work", tmp_path / "three", steps=1,
                               progress=False, continue_from=again)  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--every", "0"], "--every must be >= 1"),
        (["--monitor", "/nonexistent/set"], "expected a Market-1501 folder"),
        (["--continue-from", "/nonexistent/mildnet.weights.h5", "--backbones", "mildnet"],
         "expected a .weights.h5 file written by this script"),
    ],
)
def test_bad_arguments_are_refused_by_name(script, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        script.main(["--work", str(tmp_path), *argv])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_continue_from_a_finished_warm_start_is_refused_before_training(script, tmp_path, capsys):
    # The shipped file holds every stage of the recipe: nothing is left to train.
    shipped = pretraining.warm_start_path("mildnet")
    with pytest.raises(SystemExit) as stopped:
        script.main(["--work", str(tmp_path), "--backbones", "mildnet",
                     "--continue-from", str(shipped)])  # fmt: skip
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"--continue-from {shipped}" in error and "fewer than all of the recipe's pools" in error
    assert not any(tmp_path.iterdir())  # refused before any pool was drawn
