"""Train one row of thesis tables 4.1-4.3 and record what it learned (Sections 3.3.1 and 4.2).

`train_row(backbone, loss, mining, profile, data_root, out_dir)` runs the whole recipe:

- Data: the training split minus a seeded `profile.validation_identity_fraction` of its
  identities, held out for the validation loss. The thesis validated on its test set (Section
  3.3.1), which lets the test set steer model selection; here query and gallery are touched only
  by the two evaluations ("untrained" before training, "trained" after it).
- Model: `models.build_embedder` behind the augmentation of Section 3.1.3, in the three-branch
  shared-weight network of Fig. 3.7 (offline mining) or a single branch (online mining); Adam.
- Start: the thesis fine-tunes ImageNet weights (`profile.weights`). With `profile.warm_start`
  ("label-free": the `ci` and `cpu` profiles; a folder of starts: the `gpu` run) the embedder,
  backbone and head, starts from a label-free start instead (`pretraining.load_start`),
  ImageNet's stand-in, and the triplet training fine-tunes that.
- Learning rate: times `profile.lr_decay_factor` (0.5) every `profile.lr_decay_every_epochs`
  epochs, counted over the whole run and never restarted. The thesis halves it "after every 50
  epochs" of its 2 x 100 offline epochs, so iteration 2 goes on at the rate iteration 1 ended
  with and keeps halving.
- Offline mining (Section 4.2.3): iteration 1 on random triplets; then every training image is
  embedded, the wrong identities among its `profile.mining_neighbours` nearest neighbours become
  its hard negatives (`mining.mine_hard_negatives`), and iteration 2 draws
  `profile.hard_fraction` of each batch from them. Each iteration lasts `profile.epochs` epochs.
- Online mining (Section 3.2.3): P x K batches, batch-all or batch-hard loss, for
  `profile.offline_iterations * profile.epochs` epochs: as many as an offline row's iterations
  together, so that both mining techniques train equally long.

`train_row` reads as the recipe's four steps: prepare the data, build the network and its start,
train (`trainer.Trainer`: the optimizer, the batches, mining and a checkpoint every epoch, from
which a stopped run resumes to the same weights), and record what it learned. Bit-identical
results also need deterministic kernels; TensorFlow's oneDNN CPU kernels may differ in the last
bits from run to run (`TF_ENABLE_ONEDNN_OPTS=0`, `TF_DETERMINISTIC_OPS=1` and one thread rule
that out).

Artefacts in `out_dir` (the run folder, `tripletlib.runs`): `config.json`, `history.csv`,
`checkpoints/`, `mining.json` (offline rows), `embedder.weights.h5`, `embeddings.npz` and
`metrics.json` (`runs.RunMetrics`). `metrics.json` holds three evaluations: "untrained" (the
random initial weights), "pretrained" (the start alone; only with `profile.warm_start`) and
"trained", all through `runs.embed_and_evaluate`.

A notebook or a probe swaps parts of the recipe by passing objects to `train_row`:
`build_embedder` (same signature as `models.build_embedder`), `loss_function` (a Keras loss),
`augmentation` (a Keras layer) or `build_triplet_model` (as `models.build_triplet_model`);
`RunResult.phase_seconds` holds the wall seconds of the evaluations, triplet fits, mining and
checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from tripletlib import (
    checks,
    config,
    data,
    devices,
    files,
    models,
    pretraining,
    runs,
)
from tripletlib.config import (
    VALIDATION_STREAM,
    derived_seed,
)
from tripletlib.runs import read_json, write_json
from tripletlib.trainer import Trainer, TrainerOptions, total_epochs

# The two evaluations before training, kept in the run's checkpoints folder until metrics.json.
UNTRAINED_FILE, START_FILE = "untrained.json", "pretrained.json"


@dataclass(frozen=True)
class RunResult:
    """What `train_row` produced; `metrics` is None when it stopped before the last epoch."""

    row: str
    out_dir: Path
    metrics: dict[str, Any] | None
    reused: bool  # an earlier finished run with the same config.json, returned as it was
    epochs_completed: int
    total_epochs: int
    # Wall seconds per phase of this call (`Trainer.phase_seconds`); empty when reused.
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    def history(self) -> pd.DataFrame:
        """The learning curve: one row per epoch, columns `runs.HISTORY_COLUMNS`."""
        return pd.read_csv(self.out_dir / "history.csv")


def split_validation_identities(
    person_ids: np.ndarray, fraction: float, seed: int, keep_for_training: int = 2
) -> np.ndarray:
    """The training identities held out for validation: a seeded `fraction` of them, at least 2."""
    identities = np.unique(person_ids)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_identity_fraction must be in [0, 1); got {fraction!r}")
    if fraction == 0.0:
        return identities[:0]
    count = max(2, round(fraction * len(identities)))
    if len(identities) - count < keep_for_training:
        raise ValueError(
            f"the training split has {len(identities)} identities: too few to hold out {count} "
            f"for validation and keep {keep_for_training} for training"
        )
    rng = np.random.default_rng(derived_seed(seed, VALIDATION_STREAM))
    return np.sort(rng.choice(identities, size=count, replace=False))


def train_row(
    backbone: str,
    loss: str,
    mining: str,
    profile: config.Profile,
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    keep_checkpoints: int = 1,
    *,
    build_embedder: Callable[..., keras.Model] | None = None,
    loss_function: keras.losses.Loss | None = None,
    augmentation: keras.Layer | None = None,
    build_triplet_model: Callable[..., keras.Model] | None = None,
) -> RunResult:
    """Train and evaluate one row (backbone, loss, mining) under `profile` (see the module doc).

    A finished run in `out_dir` with the same config.json (profile, row, seed, backend,
    data_root) is returned without training. `resume` continues from the last checkpoint in
    `out_dir/checkpoints`; `resume=False` discards it. `stop_after_epochs` stops after that many
    epochs of the whole run, as an interruption would. Decoded images and the
    untrained evaluations are cached in `cache_dir` (default: `out_dir/../.cache`). Seeds Python,
    NumPy and Keras globally (`set_random_seed`).

    `build_embedder`, `loss_function`, `augmentation` and `build_triplet_model` replace the
    recipe's own (None keeps it); their names go into config.json under "swapped", and a
    finished run with swapped parts is never returned as it was (objects cannot be compared).

    `out_dir` must be new, empty, or a run folder: a non-empty folder without config.json is
    refused, and so is a run of another config unless `overwrite` (which removes that run's
    files, `runs.RUN_FILES`). The data is read and checked before `out_dir` is touched. Every
    file is written atomically; `checkpoints/` keeps the last `keep_checkpoints` epochs.
    """
    config.validate_row(backbone, loss, mining)
    _check_arguments(profile, seed, stop_after_epochs, keep_checkpoints)
    devices.check_data_parallel_backend(profile.data_parallel)  # before any file is touched
    data_root, out_dir = _check_folders(data_root, out_dir)
    row = config.row_name(backbone, loss, mining)
    swaps = {
        "build_embedder": build_embedder,
        "loss_function": loss_function,
        "augmentation": augmentation,
        "build_triplet_model": build_triplet_model,
    }
    swapped = sorted(name for name, value in swaps.items() if value is not None)
    run_config = run_config_of(backbone, loss, mining, profile, seed, data_root, swapped)
    epochs = total_epochs(profile)
    if build_embedder is None:  # a bad --set value (weights=foo) fails before any file is written
        models.check_embedder_options(backbone, **profile.embedder_options())
    runs.check_run_folder(out_dir, run_config, overwrite)

    def finished() -> RunResult | None:
        """The finished run of this config in out_dir, returned as it is (read only)."""
        if swapped or read_json(out_dir / "config.json") != run_config:
            return None
        try:
            metrics = read_json(out_dir / "metrics.json")
        except files.DamagedFileError:
            if not resume:
                return None  # --restart trains it again
            raise
        return None if metrics is None else RunResult(row, out_dir, metrics, True, epochs, epochs)

    if (found := finished()) is not None:  # many readers at once (two notebooks) need no lock
        return found
    keras.utils.set_random_seed(seed)
    cache = Path(cache_dir) if cache_dir is not None else out_dir.resolve().parent / ".cache"
    # A failure before the first checkpoint leaves out_dir (new or empty) and the cache folder
    # as it found them.
    with _cache_left_as_found(cache, out_dir):
        # 1. The data, read and checked before out_dir is touched.
        splits, train, validation = _prepare_data(profile, mining, data_root, cache, seed, progress)
        # The inputs are fine: now touch out_dir, one command at a time (files.folder_lock).
        with _left_as_found(out_dir), files.folder_lock(out_dir, f"train {row}"), _undone(out_dir):
            if (found := finished()) is not None:  # finished while this one read the data
                return found
            runs.check_run_folder(out_dir, run_config, overwrite)  # again: another may have written
            runs.prepare_run_folder(out_dir, run_config, resume)
            # 2. The network and its start.
            options = TrainerOptions(
                backbone, loss, mining, profile, seed, out_dir, progress, keep_checkpoints,
                build_embedder=build_embedder or models.build_embedder, loss_function=loss_function,
                augmentation=augmentation, build_triplet_model=build_triplet_model,
            )  # fmt: skip
            trainer = Trainer(options, train, validation)
            if not (resume and trainer.restore()):
                _build_start(trainer, splits, cache / "evaluations")
            # 3. The triplet training.
            last_epoch = epochs if stop_after_epochs is None else min(epochs, stop_after_epochs)
            trainer.run(until_epoch=last_epoch)
            if trainer.epochs_completed < epochs:
                done = trainer.epochs_completed
                return RunResult(row, out_dir, None, False, done, epochs, trainer.phase_seconds)
            # 4. The record.
            metrics = _record(trainer, row, data_root, splits)
            return RunResult(row, out_dir, metrics, False, epochs, epochs, trainer.phase_seconds)


def _prepare_data(profile, mining, data_root, cache, seed, progress):
    """The splits of `data_root`, and the training split without its held-out identities
    (`split_validation_identities`), which become the validation split (or None)."""
    splits = data.load_splits(
        data_root, profile.image_height, profile.image_width, cache, progress=progress
    )
    held_out = split_validation_identities(
        splits["train"].person_ids,
        profile.validation_identity_fraction,
        seed,
        keep_for_training=profile.pk_identities if mining == "online" else 2,
    )
    is_held_out = np.isin(splits["train"].person_ids, held_out)
    train = splits["train"].subset(np.flatnonzero(~is_held_out))
    validation = splits["train"].subset(np.flatnonzero(is_held_out)) if len(held_out) else None
    mines = mining == "offline" and profile.offline_iterations > 1 and profile.hard_fraction > 0
    if mines and profile.mining_neighbours >= len(train.person_ids):
        # Checked here, not when the first iteration has trained and the mining would refuse it.
        raise ValueError(
            f"mining_neighbours={profile.mining_neighbours} must be below the "
            f"{len(train.person_ids)} training images of {data_root}"
        )
    return splits, train, validation


def _build_start(trainer: Trainer, splits: dict[str, data.Split], evaluations: Path) -> None:
    """Evaluate the random initial network, then load the profile's start (ImageNet's stand-in,
    Section 3.3.1; backbone and head, the same for every row of a backbone) and evaluate it
    alone. Both evaluations are kept in the run's checkpoints folder for `_record`."""
    profile, backbone = trainer.profile, trainer.backbone
    untrained = trainer.evaluate(splits["query"], splits["gallery"], evaluations)
    write_json(trainer.checkpoint_dir / UNTRAINED_FILE, untrained)
    if profile.warm_start is not None:
        start = pretraining.profile_start_path(profile, backbone)
        pretraining.load_start(trainer.embedder, backbone, start)
        keras.utils.set_random_seed(trainer.seed)
        alone = trainer.evaluate(splits["query"], splits["gallery"], evaluations)
        record = pretraining.start_record(backbone, start)
        write_json(trainer.checkpoint_dir / START_FILE, {"evaluation": alone, "pretraining": record})


def _record(trainer: Trainer, row: str, data_root: Path, splits: dict[str, data.Split]):
    """Evaluate the trained network, keep its weights and test embeddings, write metrics.json."""
    profile = trainer.profile
    with trainer.clock("evaluations"):
        evaluated = runs.embed_and_evaluate(
            trainer.embedder, splits["query"], splits["gallery"],
            batch_size=profile.embed_batch_size,
        )  # fmt: skip
    with files.atomic_path(trainer.out_dir / runs.WEIGHTS_FILE) as temporary:
        trainer.embedder.save_weights(temporary)
    test = {name: splits[name].images for name in ("query", "gallery")}
    runs.store_embeddings(trainer.out_dir, test, evaluated.embeddings)  # what notebooks ask next
    start = read_json(trainer.checkpoint_dir / START_FILE) or {}
    metrics = runs.RunMetrics(
        row=row,
        backbone=trainer.backbone,
        loss=trainer.options.loss,
        mining=trainer.mining,
        profile=profile.name,
        dataset=data.dataset_kind(data_root),
        data_root=str(data_root),
        protocol="market",
        seed=trainer.seed,
        trained=runs.evaluation_record(evaluated.result),
        untrained=read_json(trainer.checkpoint_dir / UNTRAINED_FILE),
        pretrained=start.get("evaluation"),
        pretraining=start.get("pretraining"),
        train_seconds=round(trainer.train_seconds, 3),
        images_per_second=round(trainer.images_seen / max(trainer.train_seconds, 1e-9), 3),
        setup=trainer.setup,
    )
    metrics.write(trainer.out_dir)
    return metrics.to_dict()


@contextlib.contextmanager
def _left_as_found(out_dir: Path) -> Iterator[None]:
    """A folder that did not exist and is empty after a failed block is removed again."""
    created = not out_dir.exists()
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise


@contextlib.contextmanager
def _cache_left_as_found(cache: Path, out_dir: Path) -> Iterator[None]:
    """A cache folder that did not exist is removed again when the block fails before the
    run's first checkpoint."""
    created = not cache.exists()
    try:
        yield
    except BaseException:
        if created and not (out_dir / "checkpoints" / "latest.json").is_file():
            shutil.rmtree(cache, ignore_errors=True)
        raise


@contextlib.contextmanager
def _undone(out_dir: Path) -> Iterator[None]:
    """When the block fails before a checkpoint exists, empty a folder that was empty (but for
    the lock of `files.folder_lock`, held around it) when the block began."""
    fresh = not any(path.name != files.LOCK_FILE for path in out_dir.iterdir())
    try:
        yield
    except BaseException:
        if fresh and not (out_dir / "checkpoints" / "latest.json").is_file():
            for path in out_dir.iterdir():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.name != files.LOCK_FILE:
                    path.unlink(missing_ok=True)
        raise


# --- arguments ----------------------------------------------------------------------------------
def _check_arguments(profile, seed, stop_after_epochs, keep_checkpoints) -> None:
    if not isinstance(profile, config.Profile):
        raise ValueError(
            f"profile must be a config.Profile (resolve_profile(name)); got {profile!r}"
        )
    checks.integer(seed, "seed", 0)
    if stop_after_epochs is not None and (
        isinstance(stop_after_epochs, bool)
        or not isinstance(stop_after_epochs, int)
        or stop_after_epochs < 1
    ):
        raise ValueError(
            f"stop_after_epochs must be None or an int >= 1; got {stop_after_epochs!r}"
        )
    checks.integer(keep_checkpoints, "keep_checkpoints")


def _check_folders(data_root, out_dir) -> tuple[Path, Path]:
    """The dataset folder (resolved) and the run folder, which must lie outside the dataset."""
    data_root = _check_data_root(data_root)
    out_dir = Path(out_dir)
    if out_dir.resolve().is_relative_to(data_root):
        raise ValueError(
            f"run folder {str(out_dir)!r} is inside the dataset {str(data_root)!r}: its files "
            "would become part of the dataset; choose an --out outside it"
        )
    return data_root, out_dir


def run_config_of(backbone: str, loss: str, mining: str, profile: config.Profile, seed: int,
                  data_root: Path, swapped: list[str] | None = None) -> dict[str, Any]:
    """What config.json records of a run, and what makes two runs the same run: the row, the
    profile, the seed, the backend, the dataset, the swapped parts, and the shipped start's
    SHA-256 where the profile starts from it (another start is another run)."""
    run_config = {
        "row": config.row_name(backbone, loss, mining),
        "backbone": backbone,
        "loss": loss,
        "mining": mining,
        "profile": profile.to_dict(),
        "seed": seed,
        "backend": keras.backend.backend(),
        "data_root": str(data_root),
        **({"swapped": swapped} if swapped else {}),
    }
    if profile.warm_start is not None:
        start = pretraining.profile_start_path(profile, backbone)
        run_config["warm_start"] = pretraining.start_record(backbone, start)["sha256"]
    return run_config


def _check_data_root(data_root) -> Path:
    root = Path(data_root).expanduser()
    folders = [data.SPLIT_FOLDERS[split] for split in data.DEFAULT_SPLITS]
    if not root.is_dir():
        raise ValueError(
            f"dataset folder {str(root)!r} does not exist: expected a Market-1501 folder holding "
            f"{', '.join(folders)} (`tripletlib synth --out DIR` writes a synthetic one)"
        )
    missing = [folder for folder in folders if not (root / folder).is_dir()]
    if missing and data.dataset_layout(root) != data.PERSON_FOLDERS:
        raise ValueError(f"dataset folder {str(root)!r} lacks the split folder(s) {missing}")
    return root.resolve()
