"""Tests for tripletlib.devices: data parallel on two CPU devices, mixed precision (bf16)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from support import run_on_two_cpu_devices

from tripletlib import devices, models

ROOT = Path(__file__).resolve().parents[1]

# Three steps of a small online-mining model (BatchNorm, the augmentation, the batch-all loss on
# the whole batch) on one device, then under `data_parallel` on two; prints the losses as JSON.
TWO_DEVICE_STEPS = """
import json
import keras
import numpy as np
from tripletlib import augment, devices, losses, models

def steps(distributed):
    keras.distribution.set_distribution(None)
    if distributed:
        devices.data_parallel()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Dense(8)(keras.layers.GlobalAveragePooling2D()(x))
    embedder = keras.Model(inputs, models.L2Normalization(dtype="float32")(x))
    model = models.build_online_model(embedder, augment.build_augmentation(seed=1))
    model.compile(keras.optimizers.Adam(1e-2), losses.BatchAllTripletLoss())
    images = np.random.default_rng(0).uniform(0, 255, (16, 16, 8, 3)).astype("float32")
    labels = np.repeat(np.arange(4), 4).astype("int32")
    step_losses = [float(model.train_on_batch(images, labels)) for _ in range(3)]
    kernel = model.trainable_variables[0].value
    return {"losses": step_losses, "kernel_devices": len(kernel.sharding.device_set),
            "jit_compile": bool(model.jit_compile)}

print("RESULT " + json.dumps({"devices": keras.distribution.list_devices(),
                              "one": steps(False), "two": steps(True)}))
"""


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="Keras' distribution API: JAX")
def test_a_training_step_on_two_cpu_devices_gives_the_loss_of_one():
    result = run_on_two_cpu_devices(["-c", TWO_DEVICE_STEPS], timeout=300)
    assert result["devices"] == ["cpu:0", "cpu:1"]
    one, two = result["one"], result["two"]
    assert one["kernel_devices"] == 1 and two["kernel_devices"] == 2  # replicated weights
    assert one["jit_compile"] and two["jit_compile"]
    assert one["losses"][0] > 0 and one["losses"][0] != pytest.approx(one["losses"][2])
    np.testing.assert_allclose(two["losses"], one["losses"], atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the error of the other backends")
def test_data_parallel_needs_jax():
    with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
        devices.data_parallel()


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="Keras' distribution API: JAX")
def test_data_parallel_rejects_unknown_devices_and_can_stay_local():
    with pytest.raises(ValueError, match="not among"):
        devices.data_parallel(["gpu:7"], set_global=False)
    with pytest.raises(ValueError, match="empty"):
        devices.data_parallel([], set_global=False)
    local = devices.data_parallel(set_global=False)
    assert isinstance(local, keras.distribution.DataParallel)
    assert keras.distribution.distribution() is None


def test_mixed_bfloat16_embedder_returns_unit_float32_embeddings():
    with devices.precision("mixed_bfloat16"):
        embedder = models.build_embedder("resnet50", input_shape=(32, 32, 3))
        triplet_model = models.build_triplet_model(embedder)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert embedder.get_layer("embedding").compute_dtype == "bfloat16"
    assert embedder.get_layer("embedding").variable_dtype == "float32"
    devices.check_float32_embeddings(embedder)
    assert str(triplet_model.outputs[0].dtype) == "float32"
    images = np.random.default_rng(0).uniform(0, 255, size=(3, 32, 32, 3)).astype(np.float32)
    embeddings = keras.ops.convert_to_numpy(embedder(images))
    assert embeddings.dtype == np.float32
    # a bfloat16 normalisation would leave errors near 4e-3; float32 leaves about 1e-7
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    stacked = keras.ops.convert_to_numpy(triplet_model([images, images, images]))
    assert stacked.dtype == np.float32 and stacked.shape == (3, 3, embeddings.shape[1])


def test_precision_rejects_unknown_policies_and_a_bfloat16_output():
    with pytest.raises(ValueError, match="precision"), devices.precision("bfloat16"):
        pass
    inputs = keras.Input((4,))
    bf16 = keras.Model(inputs, keras.layers.Dense(2, dtype="mixed_bfloat16")(inputs), name="bf16")
    with pytest.raises(ValueError, match="bf16 returns bfloat16"):
        devices.check_float32_embeddings(bf16)
