"""benchmarks/learning_probe.py: its switches do what the documentation table says they do.

The training runs themselves take minutes and live in the benchmark; these tests check the parts
that decide what a documented number means: typed overrides, the camera patches and the
one-batch triplet model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tripletlib import config, synthetic

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_probe.py"


@pytest.fixture()
def probe(monkeypatch):
    # The camera patches change synthetic.CAMERAS in place: give each test its own copy.
    monkeypatch.setattr(synthetic, "CAMERAS", dict(synthetic.CAMERAS))
    spec = importlib.util.spec_from_file_location("learning_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overrides_are_typed_like_the_profile_fields(probe):
    ci = config.resolve_profile("ci")
    overrides = probe.parse_overrides(
        ["learning_rate=0", "augment=False", "steps_per_epoch=75", "weights=None"], ci
    )
    assert overrides == {
        "learning_rate": 0.0,
        "augment": False,
        "steps_per_epoch": 75,
        "weights": None,
    }
    assert ci.replace(**overrides).learning_rate == 0.0


@pytest.mark.parametrize("bad", ["no_such_field=1", "learning_rate", "augment=yes"])
def test_bad_overrides_name_the_problem(probe, bad):
    with pytest.raises(SystemExit, match="learning_rate|True or False|KEY=VALUE"):
        probe.parse_overrides([bad], config.resolve_profile("ci"))


def test_no_camera_effects_draws_every_camera_like_camera_1(probe):
    original = dict(synthetic.CAMERAS)
    probe.soften_cameras("none")
    first = synthetic.CAMERAS[1]
    for camera, style in synthetic.CAMERAS.items():
        assert (style.wall, style.gains, style.texture) == (first.wall, first.gains, first.texture)
        assert style.view_weights == original[camera].view_weights


def test_half_camera_effects_halve_the_colour_cast(probe):
    original = dict(synthetic.CAMERAS)
    probe.soften_cameras("half")
    for camera, style in synthetic.CAMERAS.items():
        expected = [1 + (g - 1) / 2 for g in original[camera].gains]
        assert np.allclose(style.gains, expected)
        assert style.wall == original[camera].wall


def test_one_batch_model_returns_each_branch_in_its_place(probe):
    import keras

    inputs = keras.Input(shape=(4,))
    embedder = keras.Model(inputs, keras.layers.Dense(3, use_bias=False)(inputs))
    model = probe.one_batch_triplet_model(embedder)
    rng = np.random.default_rng(0)
    anchor, positive, negative = (rng.normal(size=(5, 4)).astype("float32") for _ in range(3))
    stacked = np.asarray(model.predict_on_batch([anchor, positive, negative]))
    assert stacked.shape == (5, 3, 3)
    for index, branch in enumerate((anchor, positive, negative)):
        expected = np.asarray(embedder.predict_on_batch(branch))
        np.testing.assert_allclose(stacked[:, index], expected, rtol=1e-5, atol=1e-6)


def test_phase_clock_adds_the_seconds_of_every_call(probe):
    class Work:
        def step(self, value):
            import time

            time.sleep(0.01)
            return value * 2

        def fail(self):
            raise RuntimeError("stopped")

    seconds = {}
    probe.clock_phases({"steps": (Work, "step"), "failures": (Work, "fail")}, seconds)
    work = Work()
    assert work.step(3) == 6 and work.step(4) == 8
    assert seconds["steps"] >= 0.02 and "failures" not in seconds
    with pytest.raises(RuntimeError, match="stopped"):
        work.fail()
    assert seconds["failures"] >= 0.0


def test_every_phase_names_a_library_function(probe):
    for owner, attribute in probe.PHASES.values():
        assert callable(getattr(owner, attribute))
