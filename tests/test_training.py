"""train_row: artefacts, reuse, bad input, and interrupt-and-resume (Sections 3.3.1, 4.2.3).

Tiny runs: 8 + 6 synthetic identities, 64x32 images, 1 epoch per iteration of 2 steps.
MILDNet traces in seconds; ResNet-50 (online row) takes about half a minute to trace on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from support import DETERMINISTIC, h5_arrays

from tripletlib import config, data, models, pretraining, runs, training
from tripletlib.runs import HISTORY_COLUMNS, METRIC_KEYS
from tripletlib.trainer import learning_rate_at, total_epochs
from tripletlib.training import split_validation_identities, train_row

# The ci profile (quarter-width networks from the shipped label-free start) at a few steps, at
# the thesis' single learning rate, so that these tests pin the records and the schedule.
PROFILE = config.resolve_profile(
    "ci", epochs=1, steps_per_epoch=2, triplet_batch_size=4, pk_identities=4, pk_images=2,
    learning_rate=1e-4, mildnet_learning_rate=None,
)  # fmt: skip
METRICS_KEYS = {
    "row", "backbone", "loss", "mining", "profile", "dataset", "data_root", "protocol", "seed",
    "trained", "untrained", "pretrained", "pretraining", "train_seconds", "images_per_second",
    "setup",
}  # fmt: skip


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def offline_run(tiny_market, runs_dir) -> training.RunResult:
    return train_row(
        "mildnet", "triplet", "offline", PROFILE, tiny_market, runs_dir / "offline", progress=False
    )


@pytest.fixture(scope="module")
def online_run(tiny_market, runs_dir) -> training.RunResult:
    return train_row(
        "resnet50", "batch-all", "online", PROFILE, tiny_market, runs_dir / "online", progress=False
    )


def load_splits(data_root: Path, cache_dir: Path) -> dict[str, data.Split]:
    return data.load_splits(data_root, PROFILE.image_height, PROFILE.image_width, cache_dir)


def check_metrics_schema(metrics: dict, row: str, data_root: Path) -> None:
    assert set(metrics) == METRICS_KEYS
    backbone, loss, mining = config.THESIS_ROWS[row]
    assert (metrics["row"], metrics["backbone"], metrics["loss"], metrics["mining"]) == (
        row, backbone, loss, mining,
    )  # fmt: skip
    assert metrics["profile"] == "ci" and metrics["dataset"] == "synthetic"
    assert metrics["data_root"] == str(data_root.resolve())
    assert metrics["protocol"] == "market" and metrics["seed"] == 0
    query_images = len(list((data_root / "query").glob("*.jpg")))
    for state in ("trained", "untrained", "pretrained"):
        values = metrics[state]
        assert set(values) == set(METRIC_KEYS)
        cmc = np.array(values["cmc"])
        assert len(cmc) == 50 and np.all(np.diff(cmc) >= 0) and 0 <= cmc[0] and cmc[-1] <= 1
        assert values["rank1"] == cmc[0] and values["rank5"] == cmc[4]
        assert 0 <= values["mAP"] <= 1
        assert 0 < values["num_valid_queries"] <= query_images


def read_history(run: training.RunResult) -> pd.DataFrame:
    history = run.history()
    assert tuple(history.columns) == HISTORY_COLUMNS
    return history


def test_offline_run_writes_every_artefact(offline_run, tiny_market):
    out = offline_run.out_dir
    assert offline_run.finished and not offline_run.reused
    assert (offline_run.epochs_completed, offline_run.total_epochs) == (2, 2)
    for name in ("config.json", "embedder.weights.h5", "history.csv", "metrics.json",
                 "embeddings.npz"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == offline_run.metrics
    check_metrics_schema(metrics, "mildnet-triplet-offline", tiny_market)
    # 2 iterations x 1 epoch x 2 steps x 4 triplets x 3 images = 48 images.
    assert metrics["train_seconds"] > 0
    # Both are rounded to 3 decimals: the product is 48 up to that rounding of train_seconds.
    rounding = 0.0005 * metrics["images_per_second"] + 0.0005 * metrics["train_seconds"]
    assert metrics["images_per_second"] * metrics["train_seconds"] == pytest.approx(48, abs=rounding)

    run_config = json.loads((out / "config.json").read_text())
    assert run_config["profile"] == PROFILE.to_dict()
    assert run_config["backend"] == keras.backend.backend() and run_config["seed"] == 0

    history = read_history(offline_run)
    assert history["epoch"].tolist() == [0, 1] and history["iteration"].tolist() == [1, 2]
    # lr_decay_every_epochs = max(1, round(1 * 0.5)) = 1: halved after every epoch.
    assert history["learning_rate"].tolist() == pytest.approx([1e-4, 5e-5])
    assert np.all(np.isfinite(history[["loss", "val_loss"]].to_numpy()))


def test_offline_run_mines_the_training_identities_only(offline_run, tiny_market):
    train = data.load_market1501(tiny_market, splits=("train",), progress=False)
    held_out = split_validation_identities(train["person_id"].to_numpy(), 0.1, seed=0)
    assert len(held_out) == 2  # max(2, round(0.1 * 8))
    [record] = json.loads((offline_run.out_dir / "mining.json").read_text())
    assert record["iteration"] == 2 and record["neighbours"] == 10
    assert record["anchors"] == int((~train["person_id"].isin(held_out)).sum())
    assert 0 < record["usable_anchors"] <= record["anchors_with_hard_negatives"]


def test_checkpoint_keeps_the_random_state_of_augmentation_and_dropout(offline_run):
    checkpoints = offline_run.out_dir / "checkpoints"
    pointer = json.loads((checkpoints / "latest.json").read_text())
    assert pointer["epochs_completed"] == 2 and pointer["folder"] == "epoch-0002"
    assert [p.name for p in checkpoints.glob("epoch-*")] == ["epoch-0002"]
    with np.load(checkpoints / "epoch-0002" / "state.npz") as state:
        seeds = [state[name] for name in state.files if name.startswith("seed_")]
    # The one-warp augmentation (augment.FusedAugmentation) and MILDNet's dropout; each has drawn.
    assert len(seeds) == 2
    assert all(seed.shape == (2,) and seed[1] > 0 for seed in seeds)


def test_online_run_writes_every_artefact(online_run, tiny_market):
    assert online_run.finished and online_run.total_epochs == 2
    metrics = json.loads((online_run.out_dir / "metrics.json").read_text())
    check_metrics_schema(metrics, "resnet50-batch-all-online", tiny_market)
    # 2 epochs x 2 steps x P * K = 4 * 2 images.
    # Both are rounded to 3 decimals: the product is 32 up to that rounding of train_seconds.
    rounding = 0.0005 * metrics["images_per_second"] + 0.0005 * metrics["train_seconds"]
    assert metrics["images_per_second"] * metrics["train_seconds"] == pytest.approx(32, abs=rounding)
    history = read_history(online_run)
    assert history["epoch"].tolist() == [0, 1] and history["iteration"].tolist() == [1, 1]
    assert history["learning_rate"].tolist() == pytest.approx([1e-4, 5e-5])
    assert not (online_run.out_dir / "mining.json").exists()


def test_finished_run_is_returned_without_training(offline_run, tiny_market, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("train_row rebuilt a model for a finished run")

    monkeypatch.setattr(training, "Trainer", no_training)
    metrics_file = offline_run.out_dir / "metrics.json"
    modified = metrics_file.stat().st_mtime_ns
    again = train_row(
        "mildnet", "triplet", "offline", PROFILE, tiny_market, offline_run.out_dir, progress=False
    )
    assert again.reused and again.finished and again.metrics == offline_run.metrics
    assert metrics_file.stat().st_mtime_ns == modified


def test_a_different_config_is_refused_unless_overwritten(offline_run, tiny_market, tmp_path,
                                                          monkeypatch):
    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(training, "Trainer", stop)
    out = tmp_path / "copy"
    shutil.copytree(offline_run.out_dir, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(ValueError, match=r"another config \(seed differ\).*--overwrite"):
        train_row("mildnet", "triplet", "offline", PROFILE, tiny_market, out, seed=1)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert json.loads((out / "config.json").read_text())["seed"] == 0
    with pytest.raises(Stop):
        train_row("mildnet", "triplet", "offline", PROFILE, tiny_market, out, seed=1,
                  overwrite=True)
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert not (out / "metrics.json").exists() and not (out / "checkpoints").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("resnet50", "batch-all", "offline"), "needs --mining online"),
        (("resnet50", "triplet", "online"), "needs --mining offline"),
        (("vgg", "triplet", "offline"), "unknown backbone"),
    ],
)
def test_bad_row_raises(arguments, message, tiny_market, tmp_path):
    with pytest.raises(ValueError, match=message):
        train_row(*arguments, PROFILE, tiny_market, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_or_incomplete_data_folder_raises(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(ValueError, match="no-such-folder.*does not exist"):
        train_row("resnet50", "triplet", "offline", PROFILE, missing, tmp_path / "out")
    (tmp_path / "partial" / "query").mkdir(parents=True)
    with pytest.raises(ValueError, match="bounding_box_train"):
        train_row("resnet50", "triplet", "offline", PROFILE, tmp_path / "partial", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"profile": "ci"}, "config.Profile"),
        ({"seed": -1}, "seed"),
        ({"stop_after_epochs": 0}, "stop_after_epochs"),
    ],
)
def test_bad_arguments_raise(changes, message, tiny_market, tmp_path):
    arguments = {"profile": PROFILE, "data_root": tiny_market, "out_dir": tmp_path / "out"}
    with pytest.raises(ValueError, match=message):
        train_row("resnet50", "triplet", "offline", **{**arguments, **changes})


def test_learning_rate_schedule_of_the_thesis():
    thesis = config.resolve_profile("thesis")
    # 1e-4, halved after every 50 epochs, counted over both 100-epoch iterations.
    assert total_epochs(thesis) == 200
    rates = [learning_rate_at(thesis, epoch) for epoch in (0, 49, 50, 99, 100, 150, 199)]
    assert rates == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 1.25e-5, 1.25e-5])


def test_validation_identities_are_seeded():
    person_ids = np.repeat(np.arange(1, 21), 3)
    first = split_validation_identities(person_ids, 0.25, seed=3)
    assert len(first) == 5 and np.array_equal(first, np.unique(first))
    assert set(first) <= set(range(1, 21))
    assert np.array_equal(first, split_validation_identities(person_ids, 0.25, seed=3))
    others = [tuple(split_validation_identities(person_ids, 0.25, seed=s)) for s in range(4, 9)]
    assert any(other != tuple(first) for other in others)
    assert len(split_validation_identities(person_ids, 0.0, seed=3)) == 0
    with pytest.raises(ValueError, match="too few"):
        split_validation_identities(np.array([1, 2, 3]), 0.5, seed=0)


# Interrupt and resume in a fresh interpreter with deterministic kernels: TensorFlow's oneDNN CPU
# kernels (seen with ResNet-50) can differ in the last bits from run to run, and Adam turns such
# noise in near-zero gradients into differences of the order of the learning rate. MILDNet has
# dropout besides the augmentation, so both kinds of random state must survive the checkpoint.
RESUME_SCRIPT = """
import json, sys
from pathlib import Path
from tripletlib import config
from tripletlib.training import train_row
data_root, out = Path(sys.argv[1]), Path(sys.argv[2])
profile = config.resolve_profile(
    "ci", epochs=2, steps_per_epoch=2, triplet_batch_size=4
)
row = ("mildnet", "triplet", "offline", profile, data_root)
reference = train_row(*row, out / "reference", progress=False)
parts = [train_row(*row, out / "resumed", progress=False, stop_after_epochs=stop)
         for stop in (1, 3, None)]
summary = [(p.epochs_completed, p.finished, p.reused) for p in [reference, *parts]]
(out / "summary.json").write_text(json.dumps(summary))
"""
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tiny_market, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, str(tiny_market), str(tmp_path)],
        env={**os.environ, **DETERMINISTIC},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    # 4 epochs: stopped after 1 (in iteration 1), after 3 (in iteration 2), then finished.
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == [[4, True, False], [1, False, False], [3, False, False], [4, True, False]]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    weights = h5_arrays(reference / "embedder.weights.h5")
    resumed_weights = h5_arrays(resumed / "embedder.weights.h5")
    assert weights.keys() == resumed_weights.keys() and len(weights) > 10
    for name, values in weights.items():
        np.testing.assert_allclose(resumed_weights[name], values, rtol=0, atol=1e-6, err_msg=name)
    history = pd.read_csv(reference / "history.csv")
    resumed_history = pd.read_csv(resumed / "history.csv")
    assert resumed_history["epoch"].tolist() == [0, 1, 2, 3]
    assert resumed_history["iteration"].tolist() == [1, 1, 2, 2]
    np.testing.assert_allclose(resumed_history.to_numpy(), history.to_numpy(), rtol=1e-6)
    trained = json.loads((reference / "metrics.json").read_text())["trained"]
    resumed_trained = json.loads((resumed / "metrics.json").read_text())["trained"]
    assert resumed_trained["mAP"] == pytest.approx(trained["mAP"], abs=1e-6)
    assert (resumed / "checkpoints" / "hard_negatives_iteration2.npz").is_file()


def test_evaluate_command_reproduces_the_run_metrics(online_run, tiny_market, capsys):
    """`tripletlib evaluate` rebuilds the embedder from the run folder and gets the same numbers."""
    import json

    from tripletlib.cli import main

    assert main(["evaluate", "--model", str(online_run.out_dir), "--data", str(tiny_market),
                 "--quiet"]) == 0
    assert "mAP" in capsys.readouterr().out
    from tripletlib.runs import evaluation_path

    exact_path = evaluation_path(online_run.out_dir, tiny_market, "exact", "market")
    exact = json.loads(exact_path.read_text())
    trained = online_run.metrics["trained"]
    assert exact["dataset"] == "synthetic"
    for key in ("rank1", "rank5", "mAP"):
        assert exact[key] == pytest.approx(trained[key], abs=1e-6)

    assert main(["evaluate", "--model", str(online_run.out_dir), "--data", str(tiny_market),
                 "--search", "annoy", "--quiet"]) == 0
    annoy_path = evaluation_path(online_run.out_dir, tiny_market, "annoy", "market")
    annoy = json.loads(annoy_path.read_text())
    assert annoy["search"] == "annoy" and 0.0 <= annoy["mAP"] <= 1.0
    assert annoy["num_valid_queries"] == exact["num_valid_queries"]
    # Another dataset gets its own file: the first one's is kept.
    other = tiny_market.parent / "copy-of-the-market"
    shutil.copytree(tiny_market, other)
    assert main(["evaluate", "--model", str(online_run.out_dir), "--data", str(other),
                 "--quiet"]) == 0
    assert evaluation_path(online_run.out_dir, other, "exact", "market").is_file()
    assert json.loads(exact_path.read_text()) == exact


def test_evaluate_re_rank_adds_re_ranked_metrics_beside_the_plain_ones(
    online_run, tiny_market, tmp_path, capsys
):
    """`--re-rank` keeps one file per dataset: the plain metrics at the top, the re-ranked ones
    under "re_ranked"; a later plain evaluation keeps them."""
    from tripletlib import evaluation
    from tripletlib.cli import main
    from tripletlib.runs import evaluation_path, stored_re_ranked

    model = tmp_path / "model"
    shutil.copytree(online_run.out_dir, model)
    assert main(["evaluate", "--model", str(model), "--data", str(tiny_market), "--re-rank",
                 "--quiet"]) == 0  # fmt: skip
    assert "+ re-ranking (k-reciprocal, k1=20, k2=6, lambda=0.3): rank1" in capsys.readouterr().out
    path = evaluation_path(model, tiny_market, "exact", "market")
    stored = json.loads(path.read_text())
    for key in ("rank1", "rank5", "mAP"):
        assert stored[key] == pytest.approx(online_run.metrics["trained"][key], abs=1e-6)
    re_ranked = stored["re_ranked"]
    assert {"k1": 20, "k2": 6, "lambda_value": 0.3}.items() <= re_ranked.items()
    splits = load_splits(tiny_market, tmp_path / "cache")
    query, gallery = splits["query"], splits["gallery"]
    embedder = runs.load_embedder(model)
    expected = evaluation.evaluate_embeddings(
        models.embed_images(embedder, query.images), models.embed_images(embedder, gallery.images),
        query, gallery, re_rank=True,
    )  # fmt: skip
    assert re_ranked["mAP"] == pytest.approx(expected.mAP, abs=1e-6)
    assert re_ranked["num_valid_queries"] == stored["num_valid_queries"]
    assert main(["evaluate", "--model", str(model), "--data", str(tiny_market), "--quiet"]) == 0
    assert json.loads(path.read_text())["re_ranked"] == re_ranked
    assert stored_re_ranked(model, tiny_market) == re_ranked
    assert stored_re_ranked(model, tmp_path) is None


def test_evaluate_command_rejects_a_folder_without_a_run(tmp_path, tiny_market, capsys):
    from tripletlib.cli import main

    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tiny_market)]) == 2
    assert "not a trained model folder" in capsys.readouterr().err


def test_cached_embeddings_are_computed_once_per_weights_and_images(offline_run, tmp_path,
                                                                     monkeypatch):
    """The notebooks' embedding cache: same weights and images -> read back, anything else ->
    recomputed, never a stale file."""
    run_dir = tmp_path / "run"
    shutil.copytree(offline_run.out_dir, run_dir)
    rng = np.random.default_rng(0)
    arrays = {name: rng.integers(0, 256, (n, 64, 32, 3), dtype=np.uint8)
              for name, n in (("query", 5), ("gallery", 7))}
    embedder = runs.load_embedder(run_dir)
    first = runs.cached_embeddings(run_dir, arrays, batch_size=4)
    for name, values in arrays.items():
        np.testing.assert_allclose(first[name], models.embed_images(embedder, values), atol=1e-5)
    assert (run_dir / runs.EMBEDDINGS_FILE).is_file()

    calls = []
    original = runs.load_embedder
    monkeypatch.setattr(runs, "load_embedder", lambda path: calls.append(path) or original(path))
    again = runs.cached_embeddings(run_dir, arrays, batch_size=4)
    assert calls == [] and all(np.array_equal(again[n], first[n]) for n in arrays)

    changed = {**arrays, "query": arrays["query"][::-1].copy()}
    reordered = runs.cached_embeddings(run_dir, changed, batch_size=4)
    assert len(calls) == 1
    np.testing.assert_allclose(reordered["query"], first["query"][::-1], atol=1e-5)

    other = original(run_dir)
    other.set_weights([w + 0.01 for w in embedder.get_weights()])
    other.save_weights(run_dir / "embedder.weights.h5")
    retrained = runs.cached_embeddings(run_dir, changed, batch_size=4)
    assert len(calls) == 2
    assert not np.allclose(retrained["gallery"], first["gallery"], atol=1e-5)

    (run_dir / "embedder.weights.h5").unlink()
    with pytest.raises(FileNotFoundError, match="embedder.weights.h5"):
        runs.cached_embeddings(run_dir, arrays)


def test_the_run_stores_its_test_embeddings_for_the_notebooks(offline_run, tiny_market,
                                                               monkeypatch):
    """train_row leaves the query/gallery embeddings under the key the notebooks compute, so
    that `cached_embeddings` finds them without rebuilding the embedder."""
    splits = load_splits(tiny_market, offline_run.out_dir.parent / ".cache")
    test = {name: splits[name].images for name in ("query", "gallery")}
    monkeypatch.setattr(runs, "load_embedder", lambda path: pytest.fail("recomputed"))
    stored = runs.cached_embeddings(offline_run.out_dir, test)
    monkeypatch.undo()
    embedder = runs.load_embedder(offline_run.out_dir)
    for name, values in test.items():
        np.testing.assert_allclose(stored[name], models.embed_images(embedder, values), atol=1e-5)
    with pytest.raises(ValueError, match="3 embeddings for"):
        runs.store_embeddings(offline_run.out_dir, {"query": test["query"][:4]},
                              {"query": stored["query"][:3]})


def test_the_start_is_recorded_and_evaluated_alone(offline_run):
    """A row of a profile with a start records the shipped start it loaded and scores it alone
    ("pretrained") beside random weights ("untrained") and the trained network."""
    record_of_run = offline_run.metrics["pretraining"]
    assert record_of_run["sha256"] == pretraining.start_record("mildnet")["sha256"]
    assert record_of_run["labels"].startswith("none")
    metrics = offline_run.metrics
    assert metrics["pretrained"] != metrics["untrained"]
    assert runs.start_state(metrics) == "pretrained"
    assert runs.gain_over_start(metrics) == pytest.approx(
        metrics["trained"]["mAP"] - metrics["pretrained"]["mAP"]
    )


def test_no_start_leaves_no_pretrained_metrics(tiny_market, tmp_path):
    profile = PROFILE.replace(warm_start=None, offline_iterations=1)
    run = train_row("mildnet", "triplet", "offline", profile, tiny_market, tmp_path / "run",
                    progress=False)  # fmt: skip
    assert "pretrained" not in run.metrics and "pretraining" not in run.metrics
    assert runs.start_state(run.metrics) == "untrained"  # the gain is over random weights


def test_hard_fraction_zero_trains_every_iteration_on_random_triplets(tiny_market, tmp_path):
    """hard_fraction=0 is a valid profile: no mining between iterations (the second iteration
    once failed after the first had trained, refusing hard negatives with a fraction of 0)."""
    profile = PROFILE.replace(warm_start=None, hard_fraction=0.0)
    run = train_row("mildnet", "triplet", "offline", profile, tiny_market, tmp_path / "run",
                    progress=False)  # fmt: skip
    assert run.epochs_completed == 2 and run.metrics is not None
    assert not (tmp_path / "run" / "mining.json").exists()
    assert not list((tmp_path / "run" / "checkpoints").glob("hard_negatives_*"))


def test_too_many_mining_neighbours_fail_before_the_first_iteration(tiny_market, tmp_path):
    """The mining between iterations refused them only after the first iteration had trained."""
    profile = PROFILE.replace(warm_start=None, mining_neighbours=100_000)
    with pytest.raises(ValueError, match="mining_neighbours=100000 must be below the"):
        train_row("mildnet", "triplet", "offline", profile, tiny_market, tmp_path / "run",
                  progress=False)  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_rows_of_a_backbone_share_their_untrained_and_pretrained_evaluations(
    offline_run, tiny_market, runs_dir, monkeypatch
):
    """Same seed, same random embedder, same start: the second row reads both evaluations
    from the cache instead of embedding the test images again; other weights are recomputed."""
    calls = []
    original = runs.evaluate_embedder
    monkeypatch.setattr(
        runs, "evaluate_embedder", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    lossless = train_row("mildnet", "lossless", "offline", PROFILE, tiny_market,
                         runs_dir / "lossless", progress=False)  # fmt: skip
    assert calls == []
    for state in ("untrained", "pretrained"):
        assert lossless.metrics[state] == offline_run.metrics[state]
    assert lossless.metrics["trained"] != offline_run.metrics["trained"]

    cache = runs_dir / ".cache" / "evaluations"
    splits = load_splits(tiny_market, runs_dir / ".cache")
    query, gallery = splits["query"], splits["gallery"]
    keras.utils.set_random_seed(123)  # not the rows' seed: weights no row had
    embedder = models.build_embedder("mildnet", **PROFILE.embedder_options(weights=None))
    first = runs.cached_evaluation(embedder, query, gallery, cache)
    assert len(calls) == 1 and set(first) == set(METRIC_KEYS)
    assert runs.cached_evaluation(embedder, query, gallery, cache) == first
    assert len(calls) == 1
    reordered = query.subset(np.arange(len(query.person_ids))[::-1])  # other images: another key
    runs.cached_evaluation(embedder, reordered, gallery, cache)
    assert len(calls) == 2
    embedder.set_weights([w + 0.01 for w in embedder.get_weights()])
    runs.cached_evaluation(embedder, query, gallery, cache)
    assert len(calls) == 3


def test_metrics_json_is_the_run_metrics_dataclass(offline_run):
    metrics = runs.RunMetrics.read(offline_run.out_dir)
    assert metrics.to_dict() == offline_run.metrics
    assert metrics.gain_over_start() == runs.gain_over_start(offline_run.metrics)
    assert "pretrained" not in runs.RunMetrics(**{
        **offline_run.metrics, "pretrained": None, "pretraining": None
    }).to_dict()  # fmt: skip


def test_a_notebook_swaps_the_embedder_loss_and_augmentation(tiny_market, tmp_path):
    """The objects a notebook or probe passes are the ones trained: no private method patched."""
    built, losses_called = [], []

    def build_embedder(backbone, **options):
        built.append(options)
        return models.build_embedder(backbone, **options)

    class CountingLoss(keras.losses.Loss):
        def call(self, y_true, y_pred):
            losses_called.append(1)
            return keras.ops.mean(keras.ops.square(y_pred[:, 0] - y_pred[:, 1]), axis=-1)

    augmentation = keras.layers.Identity(name="no_augmentation")
    profile = PROFILE.replace(offline_iterations=1)
    run = train_row(
        "mildnet", "triplet", "offline", profile, tiny_market, tmp_path / "run", progress=False,
        build_embedder=build_embedder, loss_function=CountingLoss(), augmentation=augmentation,
    )  # fmt: skip
    assert run.finished and built == [profile.embedder_options()] and losses_called
    run_config = json.loads((run.out_dir / "config.json").read_text())
    assert run_config["swapped"] == ["augmentation", "build_embedder", "loss_function"]
    assert {"evaluations", "triplet fits", "checkpoints"} <= set(run.phase_seconds)
    assert all(seconds >= 0 for seconds in run.phase_seconds.values())


def test_a_run_records_the_shipped_start_it_started_from(monkeypatch, tmp_path):
    ci = config.PROFILES["ci"]
    first = training.run_config_of("resnet50", "triplet", "offline", ci, 0, tmp_path)
    assert first["warm_start"] == pretraining.start_record("resnet50")["sha256"]
    monkeypatch.setattr(pretraining, "start_record", lambda backbone, path=None: {"sha256": "another"})
    second = training.run_config_of("resnet50", "triplet", "offline", ci, 0, tmp_path)
    assert second["warm_start"] == "another" and second != first
    thesis = training.run_config_of("resnet50", "triplet", "offline", config.PROFILES["thesis"], 0,
                                    tmp_path)  # fmt: skip
    assert "warm_start" not in thesis


def test_a_finished_run_of_another_start_is_not_returned(offline_run, tiny_market, tmp_path,
                                                              capsys):  # fmt: skip
    copy = tmp_path / "run"
    shutil.copytree(offline_run.out_dir, copy)
    recorded = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**recorded, "warm_start": "an older one"}))
    with pytest.raises(ValueError, match=r"another config \(warm_start differ\)"):
        train_row("mildnet", "triplet", "offline", PROFILE, tiny_market, copy, progress=False)
    runs.check_run_folder(copy, recorded, overwrite=True)
    assert "replacing a run of another config (warm_start differ)" in capsys.readouterr().out


def test_a_run_folder_inside_the_dataset_is_refused(tiny_market):
    inside = tiny_market / "query" / "run"
    with pytest.raises(ValueError, match="is inside the dataset"):
        train_row("resnet50", "triplet", "offline", PROFILE, tiny_market, inside, progress=False)
    assert not inside.exists()


def test_a_second_command_in_a_run_folder_is_refused_and_names_the_holder(tiny_market, tmp_path,
                                                                          capsys):  # fmt: skip
    from tripletlib.cli import main
    from tripletlib.files import folder_lock

    out = tmp_path / "run"
    with folder_lock(out, "train"):  # another command training there
        assert main(["train", "--backbone", "resnet50", "--loss", "triplet", "--mining",
                     "offline", "--profile", "ci", "--data", str(tiny_market), "--out", str(out),
                     "--quiet"]) == 2  # fmt: skip
    error = capsys.readouterr().err
    assert f"{out} is in use by another tripletlib command (process {os.getpid()}" in error
    assert not (out / "config.json").exists()
