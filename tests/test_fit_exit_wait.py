"""benchmarks/fit_exit_wait.py: the clock it reads is Keras' `on_train_end` of the `fit` it times.

The measured fits take minutes and live in the benchmark; this checks what its "wait after the
last step" means, on a tiny model.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import keras
import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fit_exit_wait.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("fit_exit_wait", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_timed_fit_adds_the_clock_and_keeps_the_callers_callbacks(monkeypatch):
    benchmark = load_benchmark()
    clock = benchmark.TrainEndClock()
    monkeypatch.setattr(keras.Model, "fit", benchmark.timed_fit(clock))
    epochs = []
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    started = time.perf_counter()
    model.fit(
        np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32"), epochs=2, verbose=0,
        callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: epochs.append(e))],
    )  # fmt: skip
    returned = time.perf_counter()
    assert epochs == [0, 1]
    assert clock.ended is not None and started < clock.ended <= returned
