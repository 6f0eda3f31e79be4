"""The fault suite: bad inputs, interruptions and file-system errors.

Each case says what must have happened to the files: nothing that was on disk before a failed
command is missing or changed after it, a partial or damaged dataset is refused by every reader, and
an interrupted run (SIGKILL, not a clean stop) resumes to the weights of an uninterrupted one.
docs/faults.md tables the cases and their results. Tiny data (6 + 4 identities at 64x32); the
SIGKILL case starts three Python processes and takes about a minute.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import DETERMINISTIC, SMALL, TINY, error_line, h5_arrays, snapshot

from tripletlib import config, data, files, runs
from tripletlib.cli import main
from tripletlib.synthetic import generate_synthetic_market

TRAIN = ["train", "--backbone", "mildnet", "--loss", "triplet", "--mining", "offline",
         "--profile", "ci", "--quiet"]  # fmt: skip


@pytest.fixture
def plain_market(tiny_market_64x32, tmp_path) -> Path:
    """The tiny set as a real Market-1501 folder would be: no synthetic marker."""
    root = tmp_path / "plain"
    shutil.copytree(tiny_market_64x32, root)
    (root / data.SYNTHETIC_MARKER).unlink()
    return root


@pytest.fixture
def broken_market(plain_market) -> Path:
    """A Market folder with one zero-byte training image."""
    (plain_market / "bounding_box_train" / "0999_c1s1_000001_00.jpg").write_bytes(b"")
    return plain_market


@pytest.fixture
def synthetic_copy(tiny_market_64x32, tmp_path) -> Path:
    root = tmp_path / "synthetic"
    shutil.copytree(tiny_market_64x32, root)
    return root


def fake_run(folder: Path, seed: int) -> Path:
    """A run folder as `tripletlib train` leaves it (config, metrics, a checkpoint pointer)."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"row": "mildnet-triplet-offline",
                                                    "seed": seed}))  # fmt: skip
    (folder / "metrics.json").write_text('{"trained": {"mAP": 0.5}}')
    (folder / "checkpoints" / "latest.json").write_text('{"folder": "epoch-0001"}')
    return folder


# ----------------------------------------------------------------------------- train --out


def test_train_leaves_a_folder_that_is_not_a_run_alone(broken_market, tiny_market_64x32, tmp_path,
                                                        capsys):
    """The reported case: checkpoints/m.pt and metrics.json were deleted before the data
    was read. Refused with good and with bad data; every file stays."""
    out = tmp_path / "o"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "m.pt").write_text("keep")
    (out / "metrics.json").write_text("{}")
    before = snapshot(out)
    for dataset in (broken_market, tiny_market_64x32):
        assert main([*TRAIN, "--data", str(dataset), "--out", str(out)]) == 2
        line = error_line(capsys)
        assert str(out) in line and "another folder" in line
        assert snapshot(out) == before


def test_train_reads_the_data_before_it_creates_out(broken_market, tmp_path, capsys):
    out = tmp_path / "new-run"
    assert main([*TRAIN, "--data", str(broken_market), "--out", str(out)]) == 2
    assert "0999_c1s1_000001_00.jpg" in error_line(capsys)
    assert not out.exists()


def test_train_refuses_a_run_of_another_config(broken_market, tmp_path, capsys):
    """Another finished run is not replaced after a warning: exit 2 naming the folder and
    --overwrite; and with --overwrite, bad data still leaves it untouched (data first)."""
    out = fake_run(tmp_path / "run", seed=7)
    before = snapshot(out)
    assert main([*TRAIN, "--data", str(broken_market), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert str(out) in line and "--overwrite" in line and "another config" in line
    assert snapshot(out) == before
    assert main([*TRAIN, "--data", str(broken_market), "--out", str(out), "--overwrite"]) == 2
    assert "0999_c1s1_000001_00.jpg" in error_line(capsys)
    assert snapshot(out) == before


def test_train_out_that_is_a_file(tiny_market_64x32, tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert main([*TRAIN, "--data", str(tiny_market_64x32), "--out", str(out)]) == 2
    assert "is a file" in error_line(capsys)
    assert out.read_text() == "mine"


def test_an_unwritable_out_is_one_line(tiny_market_64x32, tmp_path, capsys, monkeypatch):
    """Root ignores file modes, so the permission answer is simulated: refused up front."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(tmp_path) in str(path)
                        else real_access(path, mode))  # fmt: skip
    assert main([*TRAIN, "--data", str(tiny_market_64x32), "--out", str(tmp_path / "run")]) == 2
    assert "permission denied" in error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(errno.EACCES, "Permission denied", "/runs/x/config.json"),
        OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.json"),
        OSError(errno.EROFS, "Read-only file system", "/runs/x/history.csv"),
    ],
)
def test_file_system_errors_during_training_are_one_line(error, tiny_market_64x32, tmp_path, capsys,
                                                         monkeypatch):
    from tripletlib import training

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(training, "train_row", failing)
    assert main([*TRAIN, "--data", str(tiny_market_64x32), "--out", str(tmp_path / "run")]) == 2
    assert error_line(capsys) == f"tripletlib train: error: {error.strerror}: {error.filename}"


# ----------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-3"], "--epochs"),
        (["--steps-per-epoch", "0"], "--steps-per-epoch"),
        (["--seed", "-1"], "--seed"),
        (["--keep-checkpoints", "0"], "--keep-checkpoints"),
    ],
)
def test_train_values_below_range_name_the_option(arguments, option, tiny_market_64x32, tmp_path,
                                                  capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*TRAIN, "--data", str(tiny_market_64x32), "--out", str(tmp_path / "r"), *arguments])
    assert exit_info.value.code == 2
    line = error_line(capsys)
    assert option in line and ">= " in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (["--train-ids", "0"], "--train-ids"),
        (["--test-ids", "-2"], "--test-ids"),
        (["--workers", "0"], "--workers"),
        (["--seed", "-1"], "--seed"),
        (["--train-ids", "many"], "--train-ids"),
    ],
)
def test_synth_values_below_range_name_the_option(arguments, option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", str(tmp_path / "d"), "--quiet", *arguments])
    assert exit_info.value.code == 2
    assert option in error_line(capsys)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "overrides",
    [{"epochs": 0}, {"steps_per_epoch": 0}, {"epochs": -1}, {"synthetic_seed": -1},
     {"offline_iterations": 0}, {"triplet_batch_size": 0}, {"mining_neighbours": -5}],
)  # fmt: skip
def test_library_profiles_refuse_counts_below_range(overrides):
    """epochs=0 used to record the untrained weights as "trained"."""
    [name] = overrides
    with pytest.raises(ValueError, match=name):
        config.resolve_profile("ci", **overrides)


def test_preset_with_explicit_counts_is_a_conflict(tmp_path):
    """`synth --preset market --train-ids 5` wrote all of Market-1501's images (minutes)."""
    out = tmp_path / "d"
    completed = subprocess.run(
        [sys.executable, "-m", "tripletlib", "synth", "--out", str(out), "--preset", "market",
         "--train-ids", "5", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "--preset" in completed.stderr and "--train-ids" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert not out.exists()


# ----------------------------------------------------------------------------- datasets


def test_an_unfinished_synthetic_set_is_refused_by_every_reader(synthetic_copy, tmp_path, capsys):
    marker = synthetic_copy / data.SYNTHETIC_MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "complete": False}))
    for query in sorted((synthetic_copy / "query").glob("*.jpg"))[3:]:
        query.unlink()  # what an interruption leaves: a few queries of many
    with pytest.raises(data.MarketFormatError, match="did not finish"):
        data.load_market1501(synthetic_copy, progress=False)
    with pytest.raises(data.MarketFormatError, match="did not finish"):
        data.load_market1501(synthetic_copy, splits=("gallery", "query"), progress=False)
    assert main(["summary", "--data", str(synthetic_copy)]) == 2
    assert "did not finish" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main([*TRAIN, "--data", str(synthetic_copy), "--out", str(out)]) == 2
    assert "did not finish" in error_line(capsys) and not out.exists()
    from tripletlib.workspace import Workspace

    with pytest.raises(data.MarketFormatError, match="did not finish"):
        _ = Workspace("ci", data_root=synthetic_copy, output_dir=tmp_path / "book").metadata


def test_a_damaged_synthetic_set_is_refused_and_not_reused(synthetic_copy, tiny_market_64x32, capsys):
    """Only the file counts were compared: a truncated image was read and "reused"."""
    damaged = sorted((synthetic_copy / "bounding_box_test").glob("*.jpg"))[0]
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(data.MarketFormatError, match=damaged.name):
        data.load_market1501(synthetic_copy, progress=False)
    before = snapshot(synthetic_copy)
    arguments = ["synth", "--out", str(synthetic_copy), "--train-ids", "6", "--test-ids", "4",
                 "--seed", "0", "--quiet"]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:  # the fixture's 64x32 images
        import tripletlib.synthetic as synthetic

        original = synthetic.generate_synthetic_market
        patch.setattr(synthetic, "generate_synthetic_market",
                      lambda out, **kw: original(out, image_height=64, image_width=32, **kw))
        assert main(arguments) == 2
        line = error_line(capsys)
        assert damaged.name in line and "--overwrite" in line and "overwrite=True" in line
        assert snapshot(synthetic_copy) == before
        assert main([*arguments, "--overwrite"]) == 0
    assert snapshot(synthetic_copy) == snapshot(tiny_market_64x32)  # written anew, byte for byte


def test_same_size_damage_is_found_by_summary_check_and_by_synth(synthetic_copy, capsys):
    image = sorted((synthetic_copy / "query").glob("*.jpg"))[1]
    content = bytearray(image.read_bytes())
    content[-10] ^= 0xFF  # same size, other bytes
    image.write_bytes(bytes(content))
    assert main(["summary", "--data", str(synthetic_copy), "--check", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "digest" in captured.out and "1 problem" in captured.err
    with pytest.raises(ValueError, match="--overwrite"):
        generate_synthetic_market(synthetic_copy, progress=False, **TINY)


def test_a_complete_set_is_reused_without_writing(synthetic_copy):
    before = {p: p.stat().st_mtime_ns for p in synthetic_copy.rglob("*")}
    summary = generate_synthetic_market(synthetic_copy, progress=False, **TINY)
    assert summary.reused
    assert {p: p.stat().st_mtime_ns for p in synthetic_copy.rglob("*")} == before


def test_another_synthetic_set_names_the_command_line_option(synthetic_copy):
    with pytest.raises(ValueError, match=r"another synthetic dataset .* --overwrite"):
        generate_synthetic_market(synthetic_copy, progress=False, **{**TINY, "seed": 1})


def test_summary_check_decodes_every_image_and_names_each_bad_file(plain_market, capsys):
    """Zero-byte and truncated JPEGs passed `summary`; now each of 12 (more than the ten an
    error message lists) is named."""
    train = sorted((plain_market / "bounding_box_train").glob("*.jpg"))
    bad = train[:12]
    for index, path in enumerate(bad):
        path.write_bytes(b"" if index % 2 else path.read_bytes()[: len(path.read_bytes()) // 2])
    assert main(["summary", "--data", str(plain_market)]) == 0  # names and folders: fine
    capsys.readouterr()
    assert main(["summary", "--data", str(plain_market), "--check", "--quiet"]) == 2
    captured = capsys.readouterr()
    for path in bad:
        assert f"bad: {path}:" in captured.out
    assert captured.err.strip() == (
        f"tripletlib summary: error: {plain_market}: 12 problem(s), each listed above"
    )


# ----------------------------------------------------------------------------- summary output


def test_summary_save_to_a_folder_or_a_full_disk(plain_market, tmp_path, capsys):
    folder = tmp_path / "tables"
    folder.mkdir()
    assert main(["summary", "--data", str(plain_market), "--save", str(folder)]) == 2
    assert "is a folder" in error_line(capsys)
    assert list(folder.iterdir()) == []
    if os.path.exists("/dev/full"):
        assert main(["summary", "--data", str(plain_market), "--save", "/dev/full"]) == 2
        captured = capsys.readouterr()
        assert "identities per camera" in captured.out  # printed before the write failed
        assert captured.err.strip() == (
            "tripletlib summary: error: No space left on device: /dev/full"
        )


def test_summary_into_a_closed_pipe(plain_market):
    """`tripletlib summary | head`: a reader that leaves early is one line, not a traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tripletlib", "summary", "--data", str(plain_market)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    process.stdout.close()  # the reader is gone before the first line is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 2
    assert stderr.strip() == "tripletlib summary: error: output closed early (broken pipe)"


# ----------------------------------------------------------------------------- trained runs

@pytest.fixture(scope="module")
def trained_run(tiny_market_64x32, tmp_path_factory):
    from tripletlib.training import train_row

    out = tmp_path_factory.mktemp("trained") / "run"
    return train_row("mildnet", "triplet", "offline", SMALL, tiny_market_64x32, out, progress=False,
                     keep_checkpoints=2)  # fmt: skip


def test_keep_checkpoints_keeps_the_last_ones(trained_run):
    checkpoints = trained_run.out_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("epoch-*")) == ["epoch-0001", "epoch-0002"]
    assert files.leftover_temporary_files(trained_run.out_dir) == []


def test_evaluate_prints_before_it_writes(trained_run, tiny_market_64x32, tmp_path, capsys, monkeypatch):
    """A read-only model folder: every metric was computed, then the write crashed before they
    were printed. Now they are printed, then one line saying they were not saved; exit 0, no
    file, not half of one."""
    model = tmp_path / "model"
    shutil.copytree(trained_run.out_dir, model)
    before = snapshot(model)

    def read_only(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(runs, "write_json_atomic", read_only)
    assert main(["evaluate", "--model", str(model), "--data", str(tiny_market_64x32), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "mAP:" in captured.out and "queries evaluated" in captured.out
    assert captured.err.startswith("tripletlib evaluate: not saved (Permission denied: ")
    assert snapshot(model) == before


def test_evaluate_refuses_an_unfinished_synthetic_set(trained_run, synthetic_copy, capsys):
    """Once, metrics were measured over 21 of 545 queries, exit 0: now refused."""
    marker = synthetic_copy / data.SYNTHETIC_MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "complete": False}))
    before = snapshot(trained_run.out_dir)
    model = str(trained_run.out_dir)
    assert main(["evaluate", "--model", model, "--data", str(synthetic_copy), "--quiet"]) == 2
    assert "did not finish" in capsys.readouterr().err
    assert snapshot(trained_run.out_dir) == before


def test_the_same_run_is_returned_not_refused(trained_run, tiny_market_64x32):
    from tripletlib.training import train_row

    again = train_row("mildnet", "triplet", "offline", SMALL, tiny_market_64x32, trained_run.out_dir,
                      progress=False)  # fmt: skip
    assert again.reused and again.metrics == trained_run.metrics


# ----------------------------------------------------------------------------- SIGKILL

KILL_PROFILE = ("ci", {"epochs": 1, "steps_per_epoch": 2, "triplet_batch_size": 4})
TRAIN_SCRIPT = """
import json, sys
from pathlib import Path
from tripletlib import config
from tripletlib.training import train_row
data_root, out, reference = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
name, overrides = json.loads({profile!r})
profile = config.resolve_profile(name, **overrides)
row = ("mildnet", "triplet", "offline", profile, data_root)
result = train_row(*row, out, progress=False)
summary = {{"resumed": [result.epochs_completed, result.finished, result.reused]}}
if reference:
    reference_run = train_row(*row, Path(reference[0]), progress=False)
    summary["reference"] = [reference_run.epochs_completed, reference_run.finished]
(out.parent / "summary.json").write_text(json.dumps(summary))
"""
def test_training_killed_at_random_points_resumes_to_the_same_weights(tiny_market_64x32, tmp_path):
    """SIGKILL twice at random moments after the run folder is set up (evaluation, start,
    an epoch, a checkpoint, mining: wherever it lands), then run to the end; an uninterrupted run
    in the same final process gives the same weights and learning curve."""
    script = TRAIN_SCRIPT.format(profile=json.dumps(KILL_PROFILE))
    out, reference = tmp_path / "runs" / "resumed", tmp_path / "runs" / "reference"
    command = [sys.executable, "-c", script, str(tiny_market_64x32), str(out)]
    env = {**os.environ, **DETERMINISTIC}
    seed = int(time.time())
    rng = random.Random(seed)
    kills, finished_alone = [], False
    for _ in range(2):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        started = time.monotonic()
        while not (out / "config.json").is_file() and process.poll() is None:
            assert time.monotonic() - started < 300, "the run never started"
            time.sleep(0.05)
        # The CPU profiles' run takes seconds (shipped start, quarter-width networks).
        time.sleep(rng.uniform(0.0, 3.0))
        if process.poll() is not None:
            finished_alone = True  # ended before the kill: the last call reuses the finished run
        else:
            process.send_signal(signal.SIGKILL)
            process.wait()
            pointer = out / "checkpoints" / "latest.json"
            kills.append(json.loads(pointer.read_text())["epochs_completed"]
                         if pointer.is_file() else 0)  # fmt: skip
            for path in out.rglob("*.json"):  # atomic writes: never half a file
                json.loads(path.read_text())
    completed = subprocess.run([*command, str(reference)], env=env, capture_output=True,
                               text=True, timeout=900)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    expected = {"resumed": [2, True, finished_alone], "reference": [2, True]}
    assert summary == expected, (seed, kills)
    weights = h5_arrays(reference / "embedder.weights.h5")
    resumed = h5_arrays(out / "embedder.weights.h5")
    assert weights.keys() == resumed.keys() and len(weights) > 10
    for name, values in weights.items():
        np.testing.assert_allclose(resumed[name], values, rtol=0, atol=1e-6,
                                   err_msg=f"{name} (seed {seed}, killed after {kills})")
    history = np.loadtxt(reference / "history.csv", delimiter=",", skiprows=1, usecols=(0, 1, 3))
    resumed_history = np.loadtxt(out / "history.csv", delimiter=",", skiprows=1,
                                 usecols=(0, 1, 3))  # fmt: skip
    np.testing.assert_allclose(resumed_history, history, rtol=1e-6)
    assert [p.name for p in (out / "checkpoints").glob("epoch-*")] == ["epoch-0002"]
    assert files.leftover_temporary_files(out) == []


def test_generation_killed_and_rerun(tmp_path, capsys):
    """SIGKILL in the middle of `synth`: every reader refuses the partial set; the same command
    again finishes it, byte for byte the set an uninterrupted run writes."""
    out = tmp_path / "killed"
    arguments = ["synth", "--out", str(out), "--train-ids", "30", "--test-ids", "20",
                 "--seed", "3", "--quiet"]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "tripletlib", *arguments],
                               stderr=subprocess.DEVNULL)  # fmt: skip
    started = time.monotonic()
    while len(list(out.glob("*/*.jpg"))) < 20 and process.poll() is None:
        assert time.monotonic() - started < 120
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    marker = json.loads((out / data.SYNTHETIC_MARKER).read_text())
    assert marker["complete"] is False, "the generation finished before it was killed"
    assert main(["summary", "--data", str(out)]) == 2
    assert "did not finish" in capsys.readouterr().err
    assert main(arguments) == 0
    marker = json.loads((out / data.SYNTHETIC_MARKER).read_text())
    assert marker["complete"] is True
    clean = tmp_path / "clean"
    generate_synthetic_market(clean, train_ids=30, test_ids=20, seed=3, progress=False)
    assert snapshot(out) == snapshot(clean)



def test_generation_rerun_removes_a_killed_writers_temporary_image(tmp_path, capsys):
    """Every image is written through `files` (a temporary name, then a rename): what a writer
    killed mid-image leaves is the generator's own, removed by the same command again."""
    out = tmp_path / "killed"
    arguments = ["synth", "--out", str(out), "--train-ids", "3", "--test-ids", "2", "--quiet"]
    assert main(arguments) == 0
    marker_path = out / data.SYNTHETIC_MARKER
    marker = json.loads(marker_path.read_text())
    unfinished = {key: value for key, value in marker.items() if key not in ("files", "sha256")}
    marker_path.write_text(json.dumps({**unfinished, "complete": False}))  # as when killed
    image = sorted((out / "query").glob("*.jpg"))[0]
    leftover = image.with_name(f"{files.TEMPORARY_PREFIX}0123456789ab-{image.name}")
    leftover.write_bytes(image.read_bytes()[:100])
    image.unlink()
    assert main(arguments) == 0, capsys.readouterr().err
    assert not leftover.exists() and image.is_file()
    clean = tmp_path / "clean"
    generate_synthetic_market(clean, train_ids=3, test_ids=2, seed=0, progress=False)
    assert snapshot(out) == snapshot(clean)


# ----------------------------------------------------------------------------- damaged files

SMALL_ARGS = ["--set", "epochs=2", "--steps-per-epoch", "1", "--set", "offline_iterations=1",
              "--set", "triplet_batch_size=4", "--set", "validation_identity_fraction=0.0"]


def truncate(path: Path) -> None:
    """Keep the first half of `path`'s bytes, as a full disk or a killed copy would."""
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A copy of the finished tiny run, which `train ... SMALL_ARGS` reuses as it is."""
    out = tmp_path / "run"
    shutil.copytree(trained_run.out_dir, out)
    return out


@pytest.mark.parametrize("name", ["checkpoints/latest.json", "checkpoints/epoch-0002/state.npz",
                                  "checkpoints/epoch-0002/model.weights.h5", "metrics.json"])
def test_a_damaged_checkpoint_or_metrics_file_is_one_line_naming_it(name, run_copy, tiny_market_64x32,
                                                                     capsys):
    """Resuming from a truncated state.npz was a BadZipFile traceback; a truncated weights
    file, latest.json or metrics.json an h5py or JSON message without the path or the way out.
    Now one line naming the file and --restart; the folder is left as it was."""
    if name != "metrics.json":
        (run_copy / "metrics.json").unlink()  # unfinished: train resumes from the checkpoint
    truncate(run_copy / name)
    before = snapshot(run_copy)
    command = [*TRAIN, *SMALL_ARGS, "--data", str(tiny_market_64x32), "--out", str(run_copy)]
    assert main(command) == 2
    line = error_line(capsys)
    assert str(run_copy / name) in line and "is damaged" in line and "--restart" in line
    assert snapshot(run_copy) == before


def test_restart_is_the_way_out_of_a_damaged_checkpoint(run_copy, tiny_market_64x32, capsys):
    (run_copy / "metrics.json").unlink()
    truncate(run_copy / "checkpoints" / "epoch-0002" / "state.npz")
    command = [*TRAIN, *SMALL_ARGS, "--data", str(tiny_market_64x32), "--out", str(run_copy)]
    assert main([*command, "--restart"]) == 0
    assert (run_copy / "metrics.json").is_file()
    assert main(command) == 0 and "already holds this finished run" in capsys.readouterr().out


def test_a_damaged_config_json_names_overwrite(run_copy, tiny_market_64x32, capsys):
    (run_copy / "config.json").write_text('{"row": "mildnet-triplet-off')
    before = snapshot(run_copy)
    command = [*TRAIN, *SMALL_ARGS, "--data", str(tiny_market_64x32), "--out", str(run_copy)]
    assert main(command) == 2
    line = error_line(capsys)
    assert str(run_copy / "config.json") in line and "--overwrite" in line
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("damage", ["truncated weights", "garbage weights", "config.json"])
def test_evaluate_names_a_damaged_model_file(damage, run_copy, tiny_market_64x32, capsys):
    weights = run_copy / runs.WEIGHTS_FILE
    if damage == "truncated weights":
        truncate(weights)
    elif damage == "garbage weights":
        weights.write_bytes(b"not an HDF5 file" * 100)
    else:
        (run_copy / "config.json").write_text("{")
    damaged = run_copy / ("config.json" if damage == "config.json" else runs.WEIGHTS_FILE)
    before = snapshot(run_copy)
    assert main(["evaluate", "--model", str(run_copy), "--data", str(tiny_market_64x32), "--quiet"]) == 2
    line = error_line(capsys)
    assert str(damaged) in line and "is damaged" in line and "train the run again" in line
    assert snapshot(run_copy) == before


def test_every_reader_names_a_damaged_file(tmp_path):
    """One helper (files.read_json, load_npz, load_weights) for every file read back."""
    from tripletlib import book, comparisons, pretraining

    broken = tmp_path / "broken.json"
    broken.write_text('{"a": ')
    for read in (runs.RunMetrics.read, ):
        (tmp_path / "metrics.json").write_text('{"row": ')
        with pytest.raises(files.DamagedFileError, match="metrics.json is damaged"):
            read(tmp_path)
    with pytest.raises(files.DamagedFileError, match="broken.json is damaged.*seeds.py"):
        comparisons.read_seed_record(broken)
    (tmp_path / "book_run.json").write_text("[1, 2")
    with pytest.raises(book.BookError, match="book_run.json is damaged"):
        book._check_same_book(tmp_path, "ci", {}, 0)
    start = tmp_path / "start.weights.h5"
    start.write_bytes(b"x" * 64)
    pretraining.start_record_path(start).write_text("{")
    with pytest.raises(files.DamagedFileError, match="start.*json is damaged.*make_starts"):
        pretraining.start_record("mildnet", start)
    npz = tmp_path / "hard.npz"
    files.save_npz_atomic(npz, anchors=np.arange(3), counts=np.ones(3), rows=np.arange(3))
    truncate(npz)
    with pytest.raises(files.DamagedFileError, match="hard.npz is damaged.*--restart"):
        runs.load_hard_negatives(npz)


def test_a_damaged_marker_is_named_and_replaced_with_overwrite(tmp_path, capsys):
    """A truncated marker was refused, and `synth --overwrite` refused too. Now every reader
    names it and --overwrite; the same synth command with --overwrite writes the set again."""
    out = tmp_path / "set"
    command = ["synth", "--out", str(out), *SYNTH_SMALL]
    assert main(command) == 0
    original = snapshot(out)
    truncate(out / data.SYNTHETIC_MARKER)
    capsys.readouterr()
    assert main(["summary", "--data", str(out)]) == 2
    line = error_line(capsys)
    assert data.SYNTHETIC_MARKER in line and "is damaged" in line and "--overwrite" in line
    before = snapshot(out)
    assert main(command) == 2
    assert "--overwrite" in error_line(capsys)
    assert snapshot(out) == before
    assert main([*command, "--overwrite"]) == 0
    assert snapshot(out) == original
    marker = out / data.SYNTHETIC_MARKER  # valid JSON, but not a manifest
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "files": {"query": 5}}))
    assert main(["summary", "--data", str(out)]) == 2
    assert "is damaged" in error_line(capsys)
    assert main([*command, "--overwrite"]) == 0
    assert snapshot(out) == original


SYNTH_SMALL = ["--train-ids", "3", "--test-ids", "2", "--quiet"]


def test_synth_leaves_a_folder_that_is_not_a_dataset_alone(tmp_path, capsys):
    """`synth --out` into the user's non-empty folder wrote the set among their files."""
    out = tmp_path / "mine"
    (out / "photos").mkdir(parents=True)
    (out / "notes.txt").write_text("keep")
    (out / "photos" / "a.jpg").write_bytes(b"jpeg")
    before = snapshot(out)
    assert main(["synth", "--out", str(out), *SYNTH_SMALL]) == 2
    line = error_line(capsys)
    assert "not empty" in line and "notes.txt" in line and "photos" in line
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["notes.txt",
                                                                                  "photos"]


@pytest.mark.parametrize("marker", ["complete", "unfinished"])
def test_synth_overwrite_keeps_files_it_did_not_write(marker, tmp_path, capsys):
    """`synth --overwrite` deleted files the user had added inside the split folders, without
    naming them. Now it refuses, listing them; nothing is deleted."""
    out = tmp_path / "set"
    assert main(["synth", "--out", str(out), *SYNTH_SMALL]) == 0
    if marker == "unfinished":
        path = out / data.SYNTHETIC_MARKER
        path.write_text(json.dumps({**json.loads(path.read_text()), "complete": False}))
    (out / "query" / "my-notes.txt").write_text("keep")
    (out / "bounding_box_test" / "0001_c1s1_999999_00.jpg").write_bytes(b"mine")
    before = snapshot(out)
    capsys.readouterr()
    command = ["synth", "--out", str(out), *SYNTH_SMALL, "--seed", "5", "--overwrite"]
    assert main(command) == 2
    line = error_line(capsys)
    assert "my-notes.txt" in line and "did not write" in line
    if marker == "complete":  # recorded in no manifest: not ours either
        assert "0001_c1s1_999999_00.jpg" in line
    assert snapshot(out) == before
    (out / "query" / "my-notes.txt").unlink()
    (out / "bounding_box_test" / "0001_c1s1_999999_00.jpg").unlink()
    assert main(command) == 0
    assert json.loads((out / data.SYNTHETIC_MARKER).read_text())["settings"]["seed"] == 5


def test_a_bad_set_value_fails_before_any_file_is_written(tiny_market_64x32, tmp_path, capsys):
    """`--set weights=foo` failed after config.json was written, so the corrected command was
    refused as "another config". Now nothing is written and the corrected command trains."""
    out = tmp_path / "run"
    command = [*TRAIN, *SMALL_ARGS, "--data", str(tiny_market_64x32), "--out", str(out)]
    assert main([*command, "--set", "weights=foo"]) == 2
    line = error_line(capsys)
    assert "weights" in line and "'foo'" in line
    assert not out.exists()
    assert main([*command, "--set", "weights=none"]) == 0
    assert (out / "metrics.json").is_file()


@pytest.mark.parametrize("existing", [False, True])
def test_a_run_that_fails_before_training_leaves_the_folder_as_found(existing, plain_market,
                                                                     tmp_path, capsys):
    """A one-image-per-identity offline run left config.json and checkpoints/ behind."""
    train = plain_market / "bounding_box_train"
    seen = set()
    for path in sorted(train.iterdir()):
        if path.name[:4] in seen:
            path.unlink()
        seen.add(path.name[:4])
    out = tmp_path / "run"
    if existing:
        out.mkdir()
    command = [*TRAIN, *SMALL_ARGS, "--data", str(plain_market), "--out", str(out)]
    assert main(command) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert (sorted(out.iterdir()) == []) if existing else not out.exists()
    assert not (tmp_path / ".cache").exists()  # the decoded images of a run that did not start


def test_evaluate_on_a_read_only_file_system_prints_first(trained_run, tiny_market_64x32, tmp_path,
                                                           capsys, monkeypatch):
    """`evaluate` wrote its image cache beside the model before computing anything: on a
    read-only or full file system it printed no metric. Now the cache beside the model is only
    read; the metrics are printed, then one line says they were not saved (exit 0)."""
    from tripletlib import images

    model = tmp_path / "ro" / "model"
    shutil.copytree(trained_run.out_dir, model)
    before = snapshot(tmp_path)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path))

    monkeypatch.setattr(images.files, "atomic_path", read_only)  # the image cache's one writer
    monkeypatch.setattr(runs, "write_json_atomic", read_only)
    assert main(["evaluate", "--model", str(model), "--data", str(tiny_market_64x32), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "mAP:" in captured.out and "queries evaluated" in captured.out
    assert captured.err.startswith("tripletlib evaluate: not saved (Read-only file system")
    assert snapshot(tmp_path) == before and not (tmp_path / "ro" / ".cache").exists()


@pytest.mark.parametrize("cache", ["none", "elsewhere"])
def test_evaluate_cache_dir(cache, trained_run, tiny_market_64x32, tmp_path, capsys):
    """--cache-dir none writes no cache; --cache-dir DIR writes it there, not beside the model."""
    model = tmp_path / "models" / "model"
    shutil.copytree(trained_run.out_dir, model)
    before = snapshot(model)
    elsewhere = tmp_path / "cache"
    option = "none" if cache == "none" else str(elsewhere)
    command = ["evaluate", "--model", str(model), "--data", str(tiny_market_64x32), "--quiet"]
    assert main([*command, "--cache-dir", option]) == 0
    assert "mAP:" in capsys.readouterr().out
    written = set(snapshot(model)) - set(before)
    assert len(written) == 1 and written.pop().startswith("evaluation_")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["model"]
    assert list(elsewhere.glob("images_*.npy")) if cache == "elsewhere" else not elsewhere.exists()


def children_of(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is `pid` (Linux: /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_killing_synth_ends_its_workers(kill, tmp_path):
    """SIGKILL of `synth --workers 2` left its drawing processes running."""
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "tripletlib", "synth", "--out", str(out), "--train-ids", "60",
         "--test-ids", "40", "--workers", "2", "--quiet"], stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started = time.monotonic()
    while len(list(out.glob("*/*.jpg"))) < 20 and process.poll() is None:
        assert time.monotonic() - started < 120
        time.sleep(0.01)
    workers = children_of(process.pid)
    assert len(workers) >= 2, "the workers had not started"
    process.send_signal(kill)
    process.wait()
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:  # do not leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"workers {left} outlived synth"
    assert json.loads((out / data.SYNTHETIC_MARKER).read_text())["complete"] is False


def test_book_checks_its_set_values_before_it_writes(tmp_path):
    """`book --set weights=foo` made its folder and ran notebooks until one built an embedder."""
    from tripletlib.book import run_book

    out = tmp_path / "book"
    with pytest.raises(ValueError, match="weights.*'foo'"):
        run_book(profile="ci", overrides={"weights": "foo"}, out_dir=out,
                 book_dir=Path(__file__).resolve().parents[1] / "book", only=["no-such-notebook"],
                 progress=False)  # fmt: skip
    assert not out.exists()
