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

Every epoch ends with a checkpoint: weights, optimizer state and the random-number state of the
augmentation and dropout layers (Keras keeps the latter outside the weights file). Batches are a
function of (seed, epoch, index) and are fed in order, so a resumed run repeats the batches and
random transformations of an uninterrupted one. Bit-identical results also need deterministic
kernels; TensorFlow's oneDNN CPU kernels may differ in the last bits from run to run
(`TF_ENABLE_ONEDNN_OPTS=0`, `TF_DETERMINISTIC_OPS=1` and one thread rule that out).

Artefacts in `out_dir` (the run folder, `tripletlib.runs`): `config.json`, `history.csv`,
`checkpoints/`, `mining.json` (offline rows), `embedder.weights.h5`, `embeddings.npz` and
`metrics.json` (`runs.RunMetrics`). `metrics.json` holds three evaluations: "untrained" (the
random initial weights), "pretrained" (the start alone; only with `profile.warm_start`) and
"trained", all through `runs.cached_evaluation` / `evaluation.evaluate_embeddings`.

A notebook or a probe swaps parts of the recipe by passing objects to `train_row`:
`build_embedder` (same signature as `models.build_embedder`), `loss_function` (a Keras loss),
`augmentation` (a Keras layer) or `build_triplet_model` (as `models.build_triplet_model`). The
`Trainer` keeps `phase_seconds`: the wall seconds of the evaluations, triplet fits,
mining and checkpoints.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import io
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from tripletlib import (
    augment,
    config,
    data,
    devices,
    files,
    losses,
    mining,
    models,
    pretraining,
    runs,
    sampling,
)
from tripletlib.config import (
    AUGMENTATION_STREAM,
    ITERATION_STREAM,
    VALIDATION_STREAM,
    derived_seed,
)
from tripletlib.runs import HISTORY_COLUMNS, read_json, write_json


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


def total_epochs(profile: config.Profile) -> int:
    """Epochs of a row, offline or online: `offline_iterations * epochs`."""
    return profile.offline_iterations * profile.epochs


def learning_rate_at(profile: config.Profile, epoch: int, backbone: str = "resnet50") -> float:
    """Adam's learning rate in `epoch` (0-based, over the whole run), Section 3.3.1."""
    halvings = epoch // profile.lr_decay_every_epochs
    return float(profile.learning_rate_of(backbone) * profile.lr_decay_factor**halvings)


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
    _check_arguments(profile, seed, stop_after_epochs)
    devices.check_data_parallel_backend(profile.data_parallel)  # before any file is touched
    if isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int) or (
        keep_checkpoints < 1
    ):
        raise ValueError(f"keep_checkpoints must be an int >= 1; got {keep_checkpoints!r}")
    data_root = _check_data_root(data_root)
    out_dir = Path(out_dir)
    if out_dir.resolve().is_relative_to(data_root):
        raise ValueError(
            f"run folder {str(out_dir)!r} is inside the dataset {str(data_root)!r}: its files "
            "would become part of the dataset; choose an --out outside it"
        )
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
    # The inputs are fine: now touch out_dir, one command at a time (files.folder_lock).
    # A failure before the first checkpoint leaves a new or empty out_dir new or empty again.
    with _left_as_found(out_dir), files.folder_lock(out_dir, f"train {row}"), _undone(out_dir):
        if (found := finished()) is not None:  # finished while this one read the data
            return found
        runs.check_run_folder(out_dir, run_config, overwrite)  # again: another may have written
        runs.prepare_run_folder(out_dir, run_config, resume)
        embedder_builder = build_embedder or models.build_embedder
        trainer = Trainer(
            backbone, loss, mining, profile, seed, out_dir, train, validation, progress,
            build_embedder=embedder_builder, loss_function=loss_function,
            augmentation=augmentation, build_triplet_model=build_triplet_model,
        )  # fmt: skip
        trainer.keep_checkpoints = keep_checkpoints

        untrained_path = trainer.checkpoint_dir / "untrained.json"
        pretrained_path = trainer.checkpoint_dir / "pretrained.json"
        evaluations = cache / "evaluations"  # the rows of one backbone start from the same weights
        if not (resume and trainer.restore()):
            untrained = trainer.evaluate(splits["query"], splits["gallery"], evaluations)
            write_json(untrained_path, untrained)
            if profile.warm_start is not None:
                # ImageNet's stand-in (Section 3.3.1), backbone and head: every row of a backbone
                # starts from the same embedding (pretraining.load_start).
                start = pretraining.profile_start_path(profile, backbone)
                pretraining.load_start(trainer.embedder, backbone, start)
                keras.utils.set_random_seed(seed)
                evaluation_after = trainer.evaluate(splits["query"], splits["gallery"], evaluations)
                record = pretraining.start_record(backbone, start)
                write_json(pretrained_path, {"evaluation": evaluation_after, "pretraining": record})
        last_epoch = epochs if stop_after_epochs is None else min(epochs, stop_after_epochs)
        trainer.run(until_epoch=last_epoch)
        if trainer.epochs_completed < epochs:
            return RunResult(
                row, out_dir, None, False, trainer.epochs_completed, epochs, trainer.phase_seconds
            )

        with trainer.clock("evaluations"):
            evaluated = runs.embed_and_evaluate(
                trainer.embedder, splits["query"], splits["gallery"],
                batch_size=profile.embed_batch_size,
            )  # fmt: skip
            trained = runs.evaluation_record(evaluated.result)
        with files.atomic_path(out_dir / runs.WEIGHTS_FILE) as temporary:
            trainer.embedder.save_weights(temporary)
        test = {name: splits[name].images for name in ("query", "gallery")}
        runs.store_embeddings(out_dir, test, evaluated.embeddings)  # what the notebooks ask next
        pretrained = read_json(pretrained_path) or {}
        metrics = runs.RunMetrics(
            row=row,
            backbone=backbone,
            loss=loss,
            mining=mining,
            profile=profile.name,
            dataset=config.dataset_kind(data_root),
            data_root=str(data_root),
            protocol="market",
            seed=seed,
            trained=trained,
            untrained=read_json(untrained_path),
            pretrained=pretrained.get("evaluation"),
            pretraining=pretrained.get("pretraining"),
            train_seconds=round(trainer.train_seconds, 3),
            images_per_second=round(trainer.images_seen / max(trainer.train_seconds, 1e-9), 3),
            setup=trainer.setup,
        )
        metrics.write(out_dir)
        return RunResult(
            row, out_dir, metrics.to_dict(), False, epochs, epochs, trainer.phase_seconds
        )


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


class Trainer:
    """Model, optimizer, datasets and checkpoints of one run (Section 3.3.1).

    `train_seconds` counts the epochs (training steps and validation) and mining;
    `images_seen` the images fed to the network in training steps (3 per triplet);
    `phase_seconds` the wall seconds of each phase (`clock`).
    """

    def __init__(
        self,
        backbone: str,
        loss: str,
        mining_name: str,
        profile: config.Profile,
        seed: int,
        out_dir: Path,
        train: data.Split,
        validation: data.Split | None,
        progress: bool,
        build_embedder: Callable[..., keras.Model] = models.build_embedder,
        loss_function: keras.losses.Loss | None = None,
        augmentation: keras.Layer | None = None,
        build_triplet_model: Callable[..., keras.Model] | None = None,
    ):
        self.profile, self.seed, self.mining, self.progress = profile, seed, mining_name, progress
        self.backbone = backbone
        self.out_dir, self.train, self.validation = out_dir, train, validation
        self.checkpoint_dir = out_dir / "checkpoints"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.epochs_completed, self.train_seconds, self.images_seen = 0, 0.0, 0
        self.keep_checkpoints = 1  # epoch-* folders kept: the last one (latest.json) and more
        self.phase_seconds: dict[str, float] = {}

        # How the row uses the hardware (profile.precision, data_parallel, device_resident).
        self.distribution = devices.training_distribution(profile.data_parallel)
        if self.distribution is not None:
            count = int(self.distribution.device_mesh.devices.size)
            batch = (
                profile.pk_identities * profile.pk_images
                if mining_name == "online"
                else profile.triplet_batch_size
            )
            if batch % count:
                raise ValueError(
                    f"data_parallel splits each batch over {count} devices; the batch of "
                    f"{batch} {'images' if mining_name == 'online' else 'triplets'} is not a "
                    "multiple of it: change triplet_batch_size or pk_identities x pk_images"
                )
        self._device_images = None  # the training images on the device, uploaded once
        with self.distribution_scope(), devices.precision(profile.precision):
            self.embedder = build_embedder(backbone, **profile.embedder_options())
            if augmentation is None and profile.augment:
                augmentation = augment.build_augmentation(
                    seed=derived_seed(seed, AUGMENTATION_STREAM), **profile.augmentation_options()
                )
            if mining_name == "offline":
                build_model = build_triplet_model or models.build_triplet_model
                self.model = build_model(self.embedder, augmentation)
            else:
                self.model = models.build_online_model(self.embedder, augmentation)
            if loss_function is None:
                loss_class = losses.LOSSES[loss]
                takes_margin = "margin" in inspect.signature(loss_class).parameters
                loss_function = loss_class(margin=profile.margin) if takes_margin else loss_class()
            optimizer = keras.optimizers.Adam(learning_rate=profile.learning_rate_of(backbone))
            self.model.compile(
                optimizer=optimizer, loss=loss_function, jit_compile=devices.jit_compile()
            )
            optimizer.build(self.model.trainable_variables)
        devices.check_float32_embeddings(self.embedder)  # Eq. 3.5 in float32 under any policy
        self.setup = devices.describe(profile.precision, profile.device_resident, self.distribution)
        # Random-number state (augmentation, dropout) is in `variables` but not in `weights`.
        weight_ids = {id(weight) for weight in self.model.weights}
        self.seed_states = [v for v in self.model.variables if id(v) not in weight_ids]

    def distribution_scope(self) -> contextlib.AbstractContextManager:
        """The data-parallel distribution's scope (building and `fit`), or a no-op without one."""
        if self.distribution is None:
            return contextlib.nullcontext()
        return self.distribution.scope()

    def _on_device(self, dataset):
        """`dataset` gathered from the training images on the device (`profile.device_resident`)."""
        if not self.profile.device_resident:
            return dataset
        if self._device_images is None:
            self._device_images = keras.ops.convert_to_tensor(self.train.images)
        if isinstance(dataset, sampling.PKDataset):
            return sampling.DevicePKDataset(dataset, self._device_images)
        return sampling.DeviceTripletDataset(dataset, self._device_images)

    @contextlib.contextmanager
    def clock(self, phase: str) -> Iterator[None]:
        """Add the wall seconds of the `with` block to `phase_seconds[phase]`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + elapsed

    def evaluate(self, query: data.Split, gallery: data.Split, cache_dir: Path) -> dict[str, Any]:
        with self.clock("evaluations"):
            return runs.cached_evaluation(
                self.embedder, query, gallery, cache_dir, self.profile.embed_batch_size
            )

    # --- training -----------------------------------------------------------------------------
    def iterations(self) -> list[tuple[int, int, int]]:
        """(iteration, first epoch, end epoch) of each training iteration."""
        if self.mining == "online":
            return [(1, 0, total_epochs(self.profile))]
        epochs = self.profile.epochs
        return [
            (i, (i - 1) * epochs, i * epochs) for i in range(1, self.profile.offline_iterations + 1)
        ]

    def run(self, until_epoch: int) -> None:
        for iteration, first_epoch, end_epoch in self.iterations():
            end_epoch = min(end_epoch, until_epoch)
            if self.epochs_completed < end_epoch:
                dataset, validation = self._datasets(iteration, first_epoch)
                with self.clock("triplet fits"):
                    self._fit(dataset, validation, iteration, end_epoch)

    def _datasets(self, iteration: int, first_epoch: int):
        profile, train, held_out = self.profile, self.train, self.validation
        seed = derived_seed(self.seed, ITERATION_STREAM + iteration)
        validation_seed = derived_seed(self.seed, VALIDATION_STREAM)
        if self.mining == "online":
            dataset = sampling.PKDataset(
                train.images,
                train.person_ids,
                p=profile.pk_identities,
                k=profile.pk_images,
                steps_per_epoch=profile.steps_per_epoch,
                seed=seed,
            )
            dataset = self._on_device(dataset)
            if held_out is None:
                return dataset, None
            identities = len(np.unique(held_out.person_ids))
            validation = sampling.PKDataset(
                held_out.images,
                held_out.person_ids,
                p=min(profile.pk_identities, identities),
                k=profile.pk_images,
                seed=validation_seed,
            )
            return dataset, sampling.FixedEpoch(validation)
        hard_negatives = {}
        if iteration > 1:
            with self.clock("mining"):
                hard_negatives = self._hard_negatives(iteration, first_epoch)
        dataset = sampling.TripletDataset(
            train.images,
            train.person_ids,
            train.camera_ids,
            batch_size=profile.triplet_batch_size,
            steps_per_epoch=profile.steps_per_epoch,
            seed=seed,
            hard_negatives=hard_negatives or None,
            hard_fraction=profile.hard_fraction if hard_negatives else 0.0,
        )
        dataset = self._on_device(dataset)
        if held_out is None:
            return dataset, None
        validation = sampling.TripletDataset(
            held_out.images,
            held_out.person_ids,
            held_out.camera_ids,
            batch_size=profile.triplet_batch_size,
            seed=validation_seed,
        )
        return dataset, sampling.FixedEpoch(validation)

    def _hard_negatives(self, iteration: int, first_epoch: int) -> dict[int, np.ndarray]:
        """Mined with the weights that ended the previous iteration (or reloaded: resume)."""
        path = self.checkpoint_dir / f"hard_negatives_iteration{iteration}.npz"
        if path.is_file():
            return runs.load_hard_negatives(path)
        if self.epochs_completed != first_epoch:
            raise ValueError(
                f"{self.checkpoint_dir} holds a checkpoint inside iteration {iteration} but not "
                f"{path.name}; start again with resume=False"
            )
        started = time.perf_counter()
        neighbours = self.profile.mining_neighbours
        embeddings = models.embed_images(
            self.embedder, self.train.images, self.profile.embed_batch_size, self.progress
        )
        mined = mining.mine_hard_negatives(embeddings, self.train.person_ids, neighbours)
        stats = mining.mining_stats(mined, len(embeddings), neighbours)
        # An image whose identity has no other image cannot be an anchor (no positive).
        _, identity, images_of = np.unique(
            self.train.person_ids, return_inverse=True, return_counts=True
        )
        mined = {anchor: rows for anchor, rows in mined.items() if images_of[identity[anchor]] > 1}
        self.train_seconds += time.perf_counter() - started
        if not mined:
            warnings.warn(
                f"mining found no hard negatives before iteration {iteration}: every image's "
                f"{neighbours} nearest neighbours share its identity; it trains on random triplets",
                stacklevel=2,
            )
        runs.save_hard_negatives(path, mined)
        records = read_json(self.out_dir / "mining.json") or []
        records = [record for record in records if record["iteration"] != iteration]
        records.append({"iteration": iteration, **stats.to_dict(), "usable_anchors": len(mined)})
        write_json(self.out_dir / "mining.json", records)
        return mined

    def _fit(self, dataset, validation, iteration: int, end_epoch: int) -> None:
        per_step = (
            self.profile.pk_identities * self.profile.pk_images
            if self.mining == "online"
            else 3 * self.profile.triplet_batch_size
        )
        callbacks = [
            _SetEpoch(dataset),
            keras.callbacks.LearningRateScheduler(
                lambda epoch: learning_rate_at(self.profile, epoch, self.backbone)
            ),
            _EpochClock(self, images_per_epoch=per_step * len(dataset)),
            _HistoryWriter(self.out_dir / "history.csv", iteration),
            _Checkpoint(self),
        ]
        # shuffle=False: every batch is already random (a function of seed, epoch and index);
        # Keras would shuffle the batch order with Python's global `random`, which no
        # checkpoint can restore, so a resumed run would see the batches in another order.
        with self.distribution_scope():
            self.model.fit(
                dataset,
                shuffle=False,
                validation_data=validation,
                initial_epoch=self.epochs_completed,
                epochs=end_epoch,
                callbacks=callbacks,
                verbose=1 if self.progress else 0,
            )

    # --- checkpoints --------------------------------------------------------------------------
    def save(self) -> None:
        """Write `checkpoints/epoch-NNNN/`, then point `latest.json` at it (an atomic switch)."""
        name = f"epoch-{self.epochs_completed:04d}"
        folder = self.checkpoint_dir / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.model.save_weights(folder / "model.weights.h5")
        state = {f"optimizer_{i}": v for i, v in enumerate(self.model.optimizer.variables)}
        state.update({f"seed_{i}": v for i, v in enumerate(self.seed_states)})
        files.save_npz_atomic(
            folder / "state.npz", **{k: keras.ops.convert_to_numpy(v) for k, v in state.items()}
        )
        write_json(
            self.checkpoint_dir / "latest.json",
            {
                "folder": name,
                "epochs_completed": self.epochs_completed,
                "train_seconds": self.train_seconds,
                "images_seen": self.images_seen,
            },
        )
        kept = sorted(self.checkpoint_dir.glob("epoch-*"))[-self.keep_checkpoints :]
        for old in self.checkpoint_dir.glob("epoch-*"):
            if old not in kept and old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def restore(self) -> bool:
        """Load the last checkpoint, if there is one: weights, optimizer, random state, counters."""
        pointer = read_json(self.checkpoint_dir / "latest.json")
        if pointer is None:
            return False
        with files.reading(self.checkpoint_dir / "latest.json", runs.RESTART):
            folder = self.checkpoint_dir / str(pointer["folder"])
        files.load_weights(self.model, folder / "model.weights.h5", runs.RESTART)
        variables = {f"optimizer_{i}": v for i, v in enumerate(self.model.optimizer.variables)}
        variables.update({f"seed_{i}": v for i, v in enumerate(self.seed_states)})
        state = files.load_npz(folder / "state.npz", runs.RESTART)
        if sorted(state) != sorted(variables):
            raise ValueError(
                f"checkpoint {folder} holds {len(state)} optimizer and random-state arrays, this "
                f"model has {len(variables)}; {runs.RESTART}"
            )
        with files.reading(folder / "state.npz", runs.RESTART):
            for key, variable in variables.items():
                variable.assign(state[key])
        with files.reading(self.checkpoint_dir / "latest.json", runs.RESTART):
            self.epochs_completed = int(pointer["epochs_completed"])
            self.train_seconds = float(pointer["train_seconds"])
            self.images_seen = int(pointer["images_seen"])
        runs.truncate_history(self.out_dir / "history.csv", self.epochs_completed)
        return True


class _SetEpoch(keras.callbacks.Callback):
    """Epoch e trains on `dataset.set_epoch(e)`'s batches, resumed or not."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)


class _EpochClock(keras.callbacks.Callback):
    def __init__(self, trainer: Trainer, images_per_epoch: int) -> None:
        super().__init__()
        self.trainer, self.images_per_epoch, self.started = trainer, images_per_epoch, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.trainer.train_seconds += time.perf_counter() - self.started
        self.trainer.images_seen += self.images_per_epoch
        self.trainer.epochs_completed = epoch + 1


class _HistoryWriter(keras.callbacks.Callback):
    """Append one row per epoch to `history.csv` (columns `HISTORY_COLUMNS`)."""

    def __init__(self, path: Path, iteration: int) -> None:
        super().__init__()
        self.path, self.iteration = path, iteration

    def on_epoch_end(self, epoch, logs=None):
        logs = {**(logs or {}), "epoch": epoch, "iteration": self.iteration}
        row = {key: _plain(logs.get(key)) for key in HISTORY_COLUMNS}
        with files.reading(self.path, runs.RESTART):
            earlier = self.path.read_text() if self.path.is_file() else ""
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        if not earlier:
            writer.writeheader()
        writer.writerow(row)
        files.write_text_atomic(self.path, earlier + buffer.getvalue())  # whole rows only


class _Checkpoint(keras.callbacks.Callback):
    def __init__(self, trainer: Trainer) -> None:
        super().__init__()
        self.trainer = trainer

    def on_epoch_end(self, epoch, logs=None):
        with self.trainer.clock("checkpoints"):
            self.trainer.save()


# --- arguments ----------------------------------------------------------------------------------
def _check_arguments(profile, seed, stop_after_epochs) -> None:
    if not isinstance(profile, config.Profile):
        raise ValueError(
            f"profile must be a config.Profile (resolve_profile(name)); got {profile!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    if stop_after_epochs is not None and (
        isinstance(stop_after_epochs, bool)
        or not isinstance(stop_after_epochs, int)
        or stop_after_epochs < 1
    ):
        raise ValueError(
            f"stop_after_epochs must be None or an int >= 1; got {stop_after_epochs!r}"
        )


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


def _plain(value: Any) -> Any:
    """A NumPy or backend scalar as a Python number for the CSV file; None as an empty cell."""
    if value is None:
        return ""
    return value if isinstance(value, int | str) else float(value)
