"""A profile's hardware settings: precision, device-resident batches, data parallel.

Tiny rows (8 + 6 synthetic identities, 64x32, 2 steps an epoch, one iteration). The bf16 row is a
quarter-width MILDNet (its embeddings must come back float32 and unit-norm from the run folder);
the rows that compare losses swap in `tiny_embedder` (one convolution, BatchNorm, the library's
float32 L2 normalisation), since what they test is the trainer's data path and JAX compiles a
full backbone for a minute on 2 cores. The data-parallel row runs in a subprocess that starts JAX
with two CPU devices, as tests/test_devices.py does.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from support import run_on_two_cpu_devices, tiny_embedder

from tripletlib import config, runs
from tripletlib.training import train_row

PROFILE = config.resolve_profile(
    "ci", epochs=1, steps_per_epoch=2, triplet_batch_size=4, pk_identities=4, pk_images=2,
    warm_start=None, offline_iterations=1,
)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"precision": "bfloat16"}, r"precision='bfloat16'; expected one of \['float32', 'mixed_b"),
        ({"device_resident": "yes"}, r"device_resident='yes'; expected True or False"),
        ({"data_parallel": 1}, r"data_parallel=1; expected True or False"),
        ({"synthetic_preset": "huge"}, r"synthetic_preset='huge'; expected None or one of"),
        ({"synthetic_preset": "market"}, r"synthetic_preset='market' has \(751, 750\)"),
    ],
)
def test_bad_hardware_settings_are_refused_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        config.resolve_profile("cpu", **changes)


def test_set_overrides_are_typed_by_the_field_and_bad_ones_name_it(capsys):
    overrides = config.parse_overrides(
        ["epochs=1", "weights=none", "steps-per-epoch=None", "device_resident=true",
         "learning_rate=3e-4", "precision=mixed_bfloat16", "dataset=synthetic"]
    )  # fmt: skip
    assert overrides == {
        "epochs": 1, "weights": None, "steps_per_epoch": None, "device_resident": True,
        "learning_rate": 3e-4, "precision": "mixed_bfloat16", "dataset": "synthetic",
    }  # fmt: skip
    profile = config.profile_from_parameter({"name": "thesis", "overrides": overrides})
    assert profile.name == "thesis" and profile.weights is None and profile.epochs == 1
    assert config.profile_from_parameter("ci") == config.PROFILES["ci"]
    for bad, message in (
        ("epochs=x", r"epochs='x'; expected an int$"),
        ("augment=maybe", r"augment='maybe'; expected true or false$"),
        ("steps_per_epoch=1.5", r"steps_per_epoch='1.5'; expected an int or none$"),
        ("colour=1", r"unknown profile field 'colour'"),
        ("name=x", r"unknown profile field 'name'"),
        ("epochs", r"'epochs'; expected FIELD=VALUE"),
    ):
        with pytest.raises(ValueError, match=message):
            config.parse_overrides([bad])
    with pytest.raises(ValueError, match="PROFILE="):
        config.profile_from_parameter({"profile": "ci"})
    from tripletlib.cli import main

    assert main(["book", "--profile", "thesis", "--set", "precision=fp8"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "precision='fp8'; expected one of" in error


def test_the_gpu_profile_trains_on_the_market_sized_set_with_the_gpu_settings():
    gpu = config.PROFILES["gpu"]
    assert (gpu.precision, gpu.device_resident, gpu.width_multiplier) == ("mixed_bfloat16", True, 1)
    assert (gpu.synthetic_preset, gpu.synthetic_train_ids, gpu.synthetic_test_ids) == (
        "market", 751, 750,
    )  # fmt: skip
    assert gpu.input_shape == (256, 128, 3) and gpu.warm_start == "label-free" and gpu.weights is None
    assert (gpu.triplet_batch_size, gpu.pk_identities, gpu.pk_images) == (32, 8, 8)
    for name in ("ci", "cpu", "thesis"):  # the other profiles keep the defaults
        profile = config.PROFILES[name]
        assert (profile.precision, profile.device_resident, profile.data_parallel) == (
            "float32", False, False,
        )  # fmt: skip


def test_mixed_bfloat16_row_gives_float32_unit_norm_embeddings(tiny_market, tmp_path):
    profile = PROFILE.replace(precision="mixed_bfloat16")
    result = train_row(
        "mildnet", "triplet", "offline", profile, tiny_market, tmp_path / "row", progress=False
    )
    assert result.finished and keras.mixed_precision.global_policy().name == "float32"
    setup = result.metrics["setup"]
    assert setup["precision"] == "mixed_bfloat16" and setup["backend"] == keras.backend.backend()
    assert setup["device_resident"] is False and setup["data_parallel_devices"] == 1
    assert runs.read_run_config(result.out_dir)["profile"]["precision"] == "mixed_bfloat16"
    embedder = runs.load_embedder(result.out_dir)  # rebuilt under the run's policy
    assert embedder.get_layer("embedding").compute_dtype == "bfloat16"
    with np.load(result.out_dir / "embeddings.npz") as stored:
        arrays = [stored[name] for name in stored.files if stored[name].ndim == 2]
    assert arrays
    for embeddings in arrays:
        assert embeddings.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(pd.read_csv(result.out_dir / "history.csv")["loss"]).all()


@pytest.mark.parametrize(("loss", "mining"), [("triplet", "offline"), ("batch-all", "online")])
def test_device_resident_batches_give_the_losses_of_host_batches(
    loss, mining, tiny_market, tmp_path
):
    histories = {}
    for resident in (False, True):
        result = train_row(
            "mildnet", loss, mining, PROFILE.replace(device_resident=resident), tiny_market,
            tmp_path / f"resident-{resident}", progress=False, stop_after_epochs=1,
            cache_dir=tmp_path / "cache", build_embedder=tiny_embedder,
        )  # fmt: skip
        assert result.epochs_completed == 1
        histories[resident] = result.history()
    host, device = histories[False], histories[True]
    assert host["loss"].iloc[0] > 0
    np.testing.assert_allclose(device["loss"], host["loss"], rtol=1e-5)
    np.testing.assert_allclose(device["val_loss"], host["val_loss"], rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the error of the other backends")
def test_data_parallel_outside_jax_is_one_clear_error_before_any_file(tiny_market, tmp_path):
    with pytest.raises(ValueError, match=r"^data_parallel=True needs KERAS_BACKEND=jax[^\n]*$"):
        train_row(
            "mildnet", "triplet", "offline", PROFILE.replace(data_parallel=True), tiny_market,
            tmp_path / "row", progress=False,
        )  # fmt: skip
    assert not (tmp_path / "row").exists()


# One epoch of a tiny row on one device, then with data_parallel=True (and device-resident
# batches) on two CPU devices; prints the losses and the recorded setup as JSON.
TWO_DEVICE_ROW = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from support import tiny_embedder
from tripletlib import config
from tripletlib.synthetic import generate_synthetic_market
from tripletlib.training import train_row

work = Path(sys.argv[1])
generate_synthetic_market(work / "data", train_ids=8, test_ids=6, seed=0, progress=False)
profile = config.resolve_profile(
    "ci", epochs=1, steps_per_epoch=2, triplet_batch_size=4, pk_identities=4, pk_images=2,
    warm_start=None, offline_iterations=1,
)
result = {}
for parallel in (False, True):
    run = train_row(
        "mildnet", "triplet", "offline",
        profile.replace(data_parallel=parallel, device_resident=parallel),
        work / "data", work / f"parallel-{parallel}", progress=False,
        build_embedder=tiny_embedder,
    )
    result[str(parallel)] = {"setup": run.metrics["setup"], "loss": run.history()["loss"].tolist(),
                             "mAP": run.metrics["trained"]["mAP"]}
print("RESULT " + json.dumps(result))
"""


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="Keras' distribution API: JAX")
def test_a_data_parallel_row_on_two_cpu_devices_trains_like_one(tmp_path):
    result = run_on_two_cpu_devices(
        ["-c", TWO_DEVICE_ROW, str(tmp_path), str(Path(__file__).parent)], timeout=600
    )
    one, two = result["False"], result["True"]
    assert one["setup"]["devices"] == ["cpu:0", "cpu:1"]
    assert one["setup"]["data_parallel_devices"] == 1 and two["setup"]["data_parallel_devices"] == 2
    assert two["setup"]["device_resident"] is True
    assert one["loss"][0] > 0
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    assert 0 < two["mAP"] <= 1
