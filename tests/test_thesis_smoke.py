"""Smoke runs of what needs a GPU, at a tiny size on the CPU under JAX.

- The whole book on the `thesis` profile (`tripletlib book --profile thesis --set ...`): the
  synthetic set standing in for Market-1501, random weights for ImageNet, 64x32 instead of 256x128,
  one epoch of 2 steps per iteration, everything else the thesis' (full-width ResNet-50 and
  MILDNet, 2 offline iterations, hard mining, P x K batches). Every notebook must execute and
  tables 4.1-4.4 must be written, labelled synthetic.
- `scripts/gpu_run.py --tiny`: the prepared GPU check (environment, data, book, timed row).

Both start JAX and the notebooks' kernels in subprocesses and compile the networks with XLA; they
are marked `smoke` (and slow) and run by `make smoke`. The thesis-profile book (full-width networks,
about 11 minutes on 2 cores) stays out of `make test` (CI's 30-minute budget); the tiny GPU script
(about 3 minutes) is a step of `scripts/test.sh` too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import jax_environment

ROOT = Path(__file__).resolve().parents[1]
# The thesis profile at a CPU smoke size: only what a 2-core machine cannot afford changes.
THESIS_SMOKE_SETTINGS = [
    "weights=none", "dataset=synthetic", "image_height=64", "image_width=32", "epochs=1",
    "steps_per_epoch=2", "synthetic_train_ids=12", "synthetic_test_ids=8",
    "triplet_batch_size=8", "pk_identities=4", "pk_images=4", "embed_batch_size=64",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.smoke
def test_the_thesis_profile_book_runs_every_notebook_at_a_tiny_size(tmp_path):
    out = tmp_path / "thesis"
    command = [sys.executable, "-m", "tripletlib", "book", "--profile", "thesis", "--out", str(out)]
    command += [item for setting in THESIS_SMOKE_SETTINGS for item in ("--set", setting)]
    completed = subprocess.run(
        command, env=jax_environment(), capture_output=True, text=True, timeout=3000, check=False
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]

    notebooks = sorted(path.name for path in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(path.name for path in (out / "notebooks").glob("*.ipynb")) == notebooks
    book_run = json.loads((out / "book_run.json").read_text())
    assert book_run["profile"] == "thesis" and book_run["overrides"]["weights"] is None
    assert sorted(book_run["seconds"]) == notebooks
    for table in ("4_1", "4_2", "4_3", "4_4"):
        text = (out / "tables" / f"table_{table}.md").read_text()
        assert "synthetic" in text.lower(), table
    for row in (
        "mildnet-triplet-offline",
        "resnet50-lossless-offline",
        "resnet50-batch-all-online",
    ):
        metrics = json.loads((out / "runs" / row / "metrics.json").read_text())
        assert metrics["profile"] == "thesis" and metrics["dataset"] == "synthetic"
        assert metrics["setup"]["backend"] == "jax"
        config = json.loads((out / "runs" / row / "config.json").read_text())
        assert config["profile"]["image_height"] == 64 and config["profile"]["weights"] is None
        assert config["profile"]["width_multiplier"] == 1.0  # the thesis' full-width networks
    assert json.loads((out / "runs" / "resnet50-lossless-offline" / "mining.json").read_text())


@pytest.mark.slow
@pytest.mark.smoke
def test_the_prepared_gpu_script_runs_at_a_tiny_size(tmp_path):
    out, work = tmp_path / "evidence", tmp_path / "work"
    command = [sys.executable, str(ROOT / "scripts" / "gpu_run.py"), str(out), "--tiny",
               "--work", str(work), "--row-epochs", "2", "--row-limit", "1500"]  # fmt: skip
    completed = subprocess.run(
        command, env=jax_environment(), capture_output=True, text=True, timeout=2400, check=False
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiny"] and summary["book"]["status"] == 0
    # The gpu profile's label-free starts, trained first at the tiny book's size.
    assert summary["starts"]["status"] == 0
    assert sorted(summary["starts"]["records"]) == ["mildnet-w0.25-64x32.json",
                                                    "resnet50-w0.25-64x32.json"]  # fmt: skip
    assert (out / "book" / "book_run.json").is_file() and (out / "environment.txt").is_file()
    assert "jax" in summary["environment"]["devices"]
    row = json.loads((out / "row.json").read_text())
    assert row["finished"] and row["seconds_per_epoch"] > 0 and row["train_images"] > 0
    assert row["setup"]["precision"] == "mixed_bfloat16" and row["setup"]["device_resident"]
    assert row["projected_thesis_row_hours"] > 0 and "2 x 100 epochs" in row["projection"]
    assert json.loads((out / "row_metrics.json").read_text())["row"] == "resnet50-lossless-offline"
    assert all(path.stat().st_size < 1_000_000 for path in out.rglob("*") if path.is_file())
