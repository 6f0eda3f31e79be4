"""scripts/make_starts.py: the label-free start's record, its validation curve and weights that
load into the CPU profiles' embedder, at a tiny size (a 4-person pool, 2 steps)."""

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tripletlib import pretraining

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_starts.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_starts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_start_writes_the_embedder_its_record_and_validation_curve(
    script, tmp_path, monkeypatch
):
    monkeypatch.setattr(pretraining, "START_POOL", {"train_ids": 4, "test_ids": 2, "seed": 7})
    monkeypatch.setattr(pretraining, "VALIDATION_SET", {"train_ids": 2, "test_ids": 3, "seed": 8})
    monkeypatch.setitem(pretraining.START_RECIPE, "batch_size", 8)
    target = script.make_start("resnet50", tmp_path / "work", tmp_path / "out", steps=2,
                               validate=True, every=1, progress=False)  # fmt: skip
    record = json.loads(pretraining.start_record_path(target).read_text())
    assert target.name == pretraining.start_path("resnet50").name
    assert record["steps"] == 2 and record["labels"].startswith("none")
    assert record["pool"]["train_ids"] == 4 and record["pool"]["images"] > 4
    assert [point["step"] for point in record["validation"]["curve"]] == [1, 2]
    rank1, mean_ap = record["validation"]["rank1_map"]
    assert 0 <= rank1 <= 100 and 0 < mean_ap <= 100
    assert record["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    embedder = script.build_start_embedder("resnet50")
    embedder.load_weights(target)
    fresh = script.build_start_embedder("resnet50")
    assert not np.allclose(embedder.get_layer("embedding").get_weights()[0],
                           fresh.get_layer("embedding").get_weights()[0])  # fmt: skip


@pytest.mark.parametrize(("argv", "named"), [(["--steps", "0"], "--steps"),
                                             (["--every", "0"], "--every")])  # fmt: skip
def test_bad_counts_are_parser_errors(script, tmp_path, capsys, argv, named):
    with pytest.raises(SystemExit):
        script.main(["--work", str(tmp_path), *argv])
    assert named in capsys.readouterr().err


def test_a_start_of_another_size_loads_where_a_profile_names_its_folder(script, tmp_path,
                                                                        monkeypatch):  # fmt: skip
    """The gpu run's plan at a tiny size: a start at another input size and width, in a folder
    that the profile's warm_start names (scripts/gpu_run.py passes --set warm_start=FOLDER)."""
    from tripletlib import config, models

    monkeypatch.setitem(pretraining.START_RECIPE, "batch_size", 8)
    folder = tmp_path / "starts"
    target = script.make_start("resnet50", tmp_path / "work", folder, steps=1, progress=False,
                               input_shape=(64, 32, 3), width=0.125, pool_ids=3)  # fmt: skip
    assert target.name == "resnet50-w0.125-64x32.weights.h5"
    profile = config.resolve_profile("ci", width_multiplier=0.125, warm_start=str(folder))
    assert pretraining.profile_start_path(profile, "resnet50") == target
    embedder = models.build_embedder("resnet50", **profile.embedder_options())
    pretraining.load_start(embedder, "resnet50", target)
    record = pretraining.start_record("resnet50", target)
    assert record["pool"]["train_ids"] == 3 and tuple(record["recipe"]["input_shape"]) == (64, 32, 3)
    with pytest.raises(FileNotFoundError, match="mildnet-w0.125-64x32.weights.h5"):
        pretraining.check_profile_starts(profile)  # no MILDNet start in that folder
    with pytest.raises(FileNotFoundError, match="--input-size"):
        pretraining.check_profile_starts(config.resolve_profile("gpu"))  # 256x128: not shipped
