"""benchmarks/learning_probe.py: its switches do what the documentation table says they do.

The training runs themselves take minutes and live in the benchmark; these tests check the parts
that decide what a documented number means: typed overrides, the camera patches and the
zero-init embedder that the probe passes to `train_row`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tripletlib import config, drawing

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_probe.py"


@pytest.fixture()
def probe(monkeypatch):
    # The camera patches change drawing.CAMERAS in place: give each test its own copy.
    monkeypatch.setattr(drawing, "CAMERAS", dict(drawing.CAMERAS))
    spec = importlib.util.spec_from_file_location("learning_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("bad", "named"),
    [("no_such_field=1", "no_such_field"), ("learning_rate", "FIELD=VALUE"),
     ("augment=maybe", "true or false")],
)  # fmt: skip
def test_bad_overrides_name_the_problem(probe, monkeypatch, bad, named):
    # --set goes through config.parse_overrides, the CLI's rules, before any data is touched.
    monkeypatch.setattr("sys.argv", ["learning_probe.py", "resnet50-triplet-offline", "--set", bad])
    with pytest.raises(SystemExit, match=named):
        probe.main()


def test_data_and_camera_effects_exclude_each_other(probe, monkeypatch, tmp_path):
    argv = ["learning_probe.py", "resnet50-triplet-offline", "--data", str(tmp_path),
            "--camera-effects", "none"]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit, match="does not apply to --data"):
        probe.main()


def test_no_camera_effects_draws_every_camera_like_camera_1(probe):
    original = dict(drawing.CAMERAS)
    probe.soften_cameras("none")
    first = drawing.CAMERAS[1]
    for camera, style in drawing.CAMERAS.items():
        assert (style.wall, style.gains, style.texture) == (first.wall, first.gains, first.texture)
        assert style.view_weights == original[camera].view_weights


def test_half_camera_effects_halve_the_colour_cast(probe):
    original = dict(drawing.CAMERAS)
    probe.soften_cameras("half")
    for camera, style in drawing.CAMERAS.items():
        expected = [1 + (g - 1) / 2 for g in original[camera].gains]
        assert np.allclose(style.gains, expected)
        assert style.wall == original[camera].wall


def test_zero_init_residual_embedder_takes_the_library_options(probe):
    """The switch is an embedder builder that `train_row(build_embedder=...)` accepts."""
    from tripletlib import models

    options = config.resolve_profile("ci").embedder_options(input_shape=(32, 32, 3))
    embedder = probe.zero_init_residual_embedder("resnet50", **options)
    gammas = [
        layer.gamma for layer in models.get_backbone(embedder).layers if layer.name.endswith("_3_bn")
    ]
    assert len(gammas) == 16 and all(not np.any(np.asarray(gamma)) for gamma in gammas)
