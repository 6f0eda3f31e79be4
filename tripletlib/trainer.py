"""The trainer of one row (Section 3.3.1): model, optimizer, datasets, mining and checkpoints.

`training.train_row` is the recipe; this module is the machine it runs on. `TrainerOptions` is
the one object that configures a `Trainer`: the row, the profile, the seed, the run folder and the
parts a notebook or a probe may swap (`build_embedder`, `loss_function`, `augmentation`,
`build_triplet_model`). Every epoch ends with a checkpoint: weights, optimizer state and the
random-number state of the augmentation and dropout layers (Keras keeps the latter outside the
weights file), so that a resumed run repeats an uninterrupted one. `Trainer.phase_seconds` keeps
the wall seconds of the evaluations, triplet fits, mining and checkpoints.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import io
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tripletlib import augment, config, data, devices, files, losses, mining, models, runs, sampling
from tripletlib.config import AUGMENTATION_STREAM, ITERATION_STREAM, VALIDATION_STREAM, derived_seed
from tripletlib.runs import HISTORY_COLUMNS, read_json, write_json


@dataclass(frozen=True)
class TrainerOptions:
    """Everything a `Trainer` is configured by: the row, its profile and seed, the run folder,
    how many checkpoints to keep, and the recipe's parts to swap (None keeps the recipe's)."""

    backbone: str
    loss: str
    mining: str
    profile: config.Profile
    seed: int
    out_dir: Path
    progress: bool = True
    keep_checkpoints: int = 1  # epoch-* folders kept: the last one (latest.json) and more
    build_embedder: Callable[..., keras.Model] = models.build_embedder
    loss_function: keras.losses.Loss | None = None
    augmentation: keras.Layer | None = None
    build_triplet_model: Callable[..., keras.Model] | None = None


def total_epochs(profile: config.Profile) -> int:
    """Epochs of a row, offline or online: `offline_iterations * epochs`."""
    return profile.offline_iterations * profile.epochs


def learning_rate_at(profile: config.Profile, epoch: int, backbone: str = "resnet50") -> float:
    """Adam's learning rate in `epoch` (0-based, over the whole run), Section 3.3.1."""
    halvings = epoch // profile.lr_decay_every_epochs
    return float(profile.learning_rate_of(backbone) * profile.lr_decay_factor**halvings)


class Trainer:
    """Model, optimizer, datasets and checkpoints of one run (Section 3.3.1).

    `train_seconds` counts the epochs (training steps and validation) and mining;
    `images_seen` the images fed to the network in training steps (3 per triplet);
    `phase_seconds` the wall seconds of each phase (`clock`).
    """

    def __init__(self, options: TrainerOptions, train: data.Split, validation: data.Split | None):
        profile, seed, mining_name = options.profile, options.seed, options.mining
        backbone, augmentation = options.backbone, options.augmentation
        self.options = options
        self.profile, self.seed, self.mining, self.progress = profile, seed, mining_name, options.progress
        self.backbone = backbone
        self.out_dir, self.train, self.validation = options.out_dir, train, validation
        self.checkpoint_dir = options.out_dir / "checkpoints"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.epochs_completed, self.train_seconds, self.images_seen = 0, 0.0, 0
        self.keep_checkpoints = options.keep_checkpoints
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
            self.embedder = options.build_embedder(backbone, **profile.embedder_options())
            if augmentation is None and profile.augment:
                augmentation = augment.build_augmentation(
                    seed=derived_seed(seed, AUGMENTATION_STREAM), **profile.augmentation_options()
                )
            if mining_name == "offline":
                build_model = options.build_triplet_model or models.build_triplet_model
                self.model = build_model(self.embedder, augmentation)
            else:
                self.model = models.build_online_model(self.embedder, augmentation)
            loss_function = options.loss_function
            if loss_function is None:
                loss_class = losses.LOSSES[options.loss]
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
        if iteration > 1 and profile.hard_fraction > 0:  # hard_fraction 0: random triplets only
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
        path = runs.hard_negatives_path(self.out_dir, iteration)
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
        runs.record_mining(
            self.out_dir, iteration, {**stats.to_dict(), "usable_anchors": len(mined)}
        )
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


def _plain(value: Any) -> Any:
    """A NumPy or backend scalar as a Python number for the CSV file; None as an empty cell."""
    if value is None:
        return ""
    return value if isinstance(value, int | str) else float(value)
