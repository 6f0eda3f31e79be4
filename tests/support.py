"""Helpers shared by the test modules (the shared fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np

from tripletlib import config, models

ROOT = Path(__file__).resolve().parents[1]
# The tiny synthetic set of `conftest.tiny_market_64x32`, at the CPU profiles' input size.
TINY = {"train_ids": 6, "test_ids": 4, "seed": 0, "image_height": 64, "image_width": 32}

SMALL = config.resolve_profile(
    "ci", epochs=2, steps_per_epoch=1, offline_iterations=1, triplet_batch_size=4,
    validation_identity_fraction=0.0,
)  # fmt: skip


DETERMINISTIC = {
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "TF_DETERMINISTIC_OPS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, item: (
                arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` with its bytes: what must survive a refused command."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def jax_environment() -> dict[str, str]:
    """The environment of a test's subprocess under JAX, this checkout on its path."""
    return {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "MPLBACKEND": "Agg",
    }


def run_on_two_cpu_devices(arguments: list[str], timeout: int) -> dict:
    """Run ``python arguments...`` under JAX with two host CPU devices and return the JSON of its
    last ``RESULT `` line (the flag must be set before jax starts, hence the subprocess)."""
    environment = {
        **jax_environment(),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",  # read when jax starts
    }
    completed = subprocess.run(
        [sys.executable, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def tiny_embedder(backbone: str, input_shape, **options) -> keras.Model:
    """`models.build_embedder`'s signature, a network small enough to compile in seconds."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(
        keras.layers.Rescaling(1 / 255)(inputs)
    )
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Dense(16, name="embedding")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, models.L2Normalization(dtype="float32")(x), name=f"tiny_{backbone}")
