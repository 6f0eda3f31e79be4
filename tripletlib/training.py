"""Train one row of thesis tables 4.1-4.3 and record what it learned (Sections 3.3.1 and 4.2).

`train_row(backbone, loss, mining, profile, data_root, out_dir)` runs the whole recipe:

- Data: the training split minus a seeded `profile.validation_identity_fraction` of its
  identities, held out for the validation loss. The thesis validated on its test set (Section
  3.3.1), which lets the test set steer model selection; here query and gallery are touched only
  by the two evaluations ("untrained" before training, "trained" after it).
- Model: `models.build_embedder` behind the augmentation of Section 3.1.3, in the three-branch
  shared-weight network of Fig. 3.7 (offline mining) or a single branch (online mining); Adam.
- Warm start: the thesis fine-tunes ImageNet weights. With `profile.pretrain_steps > 0` (the
  from-scratch `ci` and `cpu` profiles) the embedder is first trained as a classifier of the
  training identities (`tripletlib.pretraining`), cached per backbone under the image cache so
  that the rows of one backbone share it, and the triplet training fine-tunes that.
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

Artefacts in `out_dir`: `config.json`, `history.csv` (columns `HISTORY_COLUMNS`),
`checkpoints/`, `mining.json` (offline rows), `embedder.weights.h5` and `metrics.json` (schema in
docs/design.md). `metrics.json` holds three evaluations: "untrained" (the random initial
weights), "pretrained" (after the warm start; only with `pretrain_steps > 0`) and "trained".
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from tripletlib import (
    augment,
    config,
    data,
    evaluation,
    files,
    images,
    losses,
    mining,
    models,
    pretraining,
    retrieval,
    runs,
    sampling,
)

HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "learning_rate", "iteration")
METRIC_KEYS = ("rank1", "rank5", "mAP", "cmc", "num_valid_queries")
# Independent random streams derived from the run's seed; iteration i uses ITERATION_STREAM + i.
VALIDATION_STREAM, AUGMENTATION_STREAM, PRETRAINING_STREAM, ITERATION_STREAM = 1, 2, 3, 10


@dataclass(frozen=True)
class RunResult:
    """What `train_row` produced; `metrics` is None when it stopped before the last epoch."""

    row: str
    out_dir: Path
    metrics: dict[str, Any] | None
    reused: bool  # an earlier finished run with the same config.json, returned as it was
    epochs_completed: int
    total_epochs: int

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    def history(self) -> pd.DataFrame:
        """The learning curve: one row per epoch, columns `HISTORY_COLUMNS`."""
        return pd.read_csv(self.out_dir / "history.csv")


@dataclass
class Split:
    """Images `(N, H, W, 3)` uint8 with their person and camera ids."""

    images: np.ndarray
    person_ids: np.ndarray
    camera_ids: np.ndarray

    def subset(self, rows: np.ndarray) -> Split:
        return Split(self.images[rows], self.person_ids[rows], self.camera_ids[rows])


def derived_seed(seed: int, stream: int) -> int:
    """The seed of one random stream of a run (validation split, augmentation, a sampler)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0] % (2**31 - 1))


def total_epochs(profile: config.Profile) -> int:
    """Epochs of a row, offline or online: `offline_iterations * epochs`."""
    return profile.offline_iterations * profile.epochs


def learning_rate_at(profile: config.Profile, epoch: int) -> float:
    """Adam's learning rate in `epoch` (0-based, over the whole run), Section 3.3.1."""
    halvings = epoch // profile.lr_decay_every_epochs
    return float(profile.learning_rate * profile.lr_decay_factor**halvings)


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


def build_row_embedder(
    backbone: str, profile: config.Profile, weights: str | None = "profile"
) -> keras.Model:
    """The embedder of a row: the profile's input shape, weights, frozen layers and BatchNorm
    momentum (the latter for ResNet-50 only; MILDNet has no BatchNorm). `weights="profile"`
    takes `profile.weights`; None starts from random weights (e.g. before loading a run's)."""
    options = {
        "input_shape": profile.input_shape,
        "weights": profile.weights if weights == "profile" else weights,
        "freeze_layers": profile.freeze_layers,
        "batchnorm_momentum": profile.batchnorm_momentum,
    }
    accepted = inspect.signature(models.BUILDERS[backbone]).parameters
    return models.build_embedder(backbone, **{k: v for k, v in options.items() if k in accepted})


def evaluate_embedder(
    embedder: keras.Model, query: Split, gallery: Split, batch_size: int = 128
) -> dict[str, Any]:
    """Rank-1, Rank-5, mAP, CMC and valid queries, exact search, Market protocol (Section 4.1)."""
    return evaluate_embeddings(
        models.embed_images(embedder, query.images, batch_size),
        models.embed_images(embedder, gallery.images, batch_size),
        query,
        gallery,
    )


def evaluate_embeddings(
    query_embeddings: np.ndarray, gallery_embeddings: np.ndarray, query: Split, gallery: Split
) -> dict[str, Any]:
    """`evaluate_embedder` from embeddings already computed."""
    distances = retrieval.squared_distances(query_embeddings, gallery_embeddings)
    result = evaluation.evaluate(
        distances, query.person_ids, gallery.person_ids, query.camera_ids, gallery.camera_ids
    )
    values = result.to_dict()
    return {key: values[key] for key in METRIC_KEYS}


def evaluation_key(embedder: keras.Model, query: Split, gallery: Split) -> str:
    """SHA-256 of the backend, the embedder's weights and the query and gallery (images, ids)."""
    digest = hashlib.sha256(keras.backend.backend().encode())
    runs.update_digest(
        digest, ((w.path, keras.ops.convert_to_numpy(w)) for w in embedder.weights)
    )
    for name, split in (("query", query), ("gallery", gallery)):
        runs.update_digest(digest, (
            (f"{name}_{field}", getattr(split, field))
            for field in ("images", "person_ids", "camera_ids")
        ))  # fmt: skip
    return digest.hexdigest()


def cached_evaluation(
    embedder: keras.Model, query: Split, gallery: Split, cache_dir: Path, batch_size: int = 128
) -> dict[str, Any]:
    """`evaluate_embedder`, kept in `cache_dir/<evaluation_key>.json`.

    The rows of one backbone build the same random embedder from the same seed and load the same
    warm start, so their "untrained" and "pretrained" evaluations are the same numbers: the
    first row computes them, the others read them. Other weights or images: another key.
    """
    path = Path(cache_dir) / f"{evaluation_key(embedder, query, gallery)}.json"
    stored = _read_json(path)
    if stored is not None:
        return stored
    result = evaluate_embedder(embedder, query, gallery, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, result)
    return result


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
) -> RunResult:
    """Train and evaluate one row (backbone, loss, mining) under `profile` (see the module doc).

    A finished run in `out_dir` with the same config.json (profile, row, seed, backend,
    data_root) is returned without training. `resume` continues from the last checkpoint in
    `out_dir/checkpoints`; `resume=False` discards it. `stop_after_epochs` stops after that many
    epochs of the whole run, as an interruption would. Decoded images are cached in `cache_dir`
    (default: `out_dir/../.cache`). Seeds Python, NumPy and Keras globally (`set_random_seed`).

    `out_dir` must be new, empty, or a run folder: a non-empty folder without config.json is
    refused, and so is a run of another config unless `overwrite` (which removes that run's
    files, `RUN_FILES`). The data is read and checked before `out_dir` is touched. Every file is
    written atomically; `checkpoints/` keeps the last `keep_checkpoints` epochs.
    """
    config.validate_row(backbone, loss, mining)
    _check_arguments(profile, seed, stop_after_epochs)
    if isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int) or (
        keep_checkpoints < 1
    ):
        raise ValueError(f"keep_checkpoints must be an int >= 1; got {keep_checkpoints!r}")
    data_root = _check_data_root(data_root)
    out_dir = Path(out_dir)
    row = config.row_name(backbone, loss, mining)
    run_config = {
        "row": row,
        "backbone": backbone,
        "loss": loss,
        "mining": mining,
        "profile": profile.to_dict(),
        "seed": seed,
        "backend": keras.backend.backend(),
        "data_root": str(data_root),
    }
    epochs = total_epochs(profile)
    _check_out_dir(out_dir, run_config, overwrite)
    if _read_json(out_dir / "config.json") == run_config and (out_dir / "metrics.json").is_file():
        return RunResult(row, out_dir, _read_json(out_dir / "metrics.json"), True, epochs, epochs)

    keras.utils.set_random_seed(seed)
    cache = Path(cache_dir) if cache_dir is not None else out_dir.resolve().parent / ".cache"
    splits = load_splits(data_root, profile, cache, progress)
    held_out = split_validation_identities(
        splits["train"].person_ids,
        profile.validation_identity_fraction,
        seed,
        keep_for_training=profile.pk_identities if mining == "online" else 2,
    )
    is_held_out = np.isin(splits["train"].person_ids, held_out)
    train = splits["train"].subset(np.flatnonzero(~is_held_out))
    validation = splits["train"].subset(np.flatnonzero(is_held_out)) if len(held_out) else None
    _prepare_out_dir(out_dir, run_config, resume)  # the inputs are fine: now touch out_dir
    trainer = _Trainer(backbone, loss, mining, profile, seed, out_dir, train, validation, progress)
    trainer.keep_checkpoints = keep_checkpoints

    untrained_path = trainer.checkpoint_dir / "untrained.json"
    pretrained_path = trainer.checkpoint_dir / "pretrained.json"
    evaluations = cache / "evaluations"  # the rows of one backbone start from the same weights
    if not (resume and trainer.restore()):
        untrained = trainer.evaluate(splits["query"], splits["gallery"], evaluations)
        _write_json(untrained_path, untrained)
        if profile.pretrain_steps > 0:
            weights, record = pretrained_weights(
                backbone, profile, train, seed, cache / "pretrained", progress
            )
            # The backbone only: the head starts random, as on top of ImageNet weights.
            models.get_backbone(trainer.embedder).load_weights(weights)
            keras.utils.set_random_seed(seed)  # the same state after a cache hit as after a miss
            evaluation_after = trainer.evaluate(splits["query"], splits["gallery"], evaluations)
            _write_json(pretrained_path, {"evaluation": evaluation_after, "pretraining": record})
    last_epoch = epochs if stop_after_epochs is None else min(epochs, stop_after_epochs)
    trainer.run(until_epoch=last_epoch)
    if trainer.epochs_completed < epochs:
        return RunResult(row, out_dir, None, False, trainer.epochs_completed, epochs)

    test = {name: splits[name].images for name in ("query", "gallery")}
    embeddings = {
        name: models.embed_images(trainer.embedder, values, profile.embed_batch_size)
        for name, values in test.items()
    }
    trained = evaluate_embeddings(
        embeddings["query"], embeddings["gallery"], splits["query"], splits["gallery"]
    )
    with files.atomic_path(out_dir / "embedder.weights.h5") as temporary:
        trainer.embedder.save_weights(temporary)
    runs.store_embeddings(out_dir, test, embeddings)  # what the notebooks ask for next
    metrics = {
        "row": row,
        "backbone": backbone,
        "loss": loss,
        "mining": mining,
        "profile": profile.name,
        "dataset": config.dataset_kind(data_root),
        "data_root": str(data_root),
        "protocol": "market",
        "seed": seed,
        "trained": trained,
        "untrained": _read_json(untrained_path),
        **_pretrained_metrics(pretrained_path),
        "train_seconds": round(trainer.train_seconds, 3),
        "images_per_second": round(trainer.images_seen / max(trainer.train_seconds, 1e-9), 3),
    }
    _write_json(out_dir / "metrics.json", metrics)
    return RunResult(row, out_dir, metrics, False, epochs, epochs)


def pretrained_weights(
    backbone: str,
    profile: config.Profile,
    train: Split,
    seed: int,
    cache_dir: Path,
    progress: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """The backbone's weights after `profile.pretrain_steps` of identity classification on `train`.

    Cached in `cache_dir` under a key of everything that shapes them (backbone, profile, seed,
    training images and identities): the offline and online rows of one backbone, which hold out
    the same validation identities, train it once. Returns the weights file and a record of the
    pretraining (steps, loss, accuracy, seconds, whether it came from the cache).
    """
    fields = (
        "image_height", "image_width", "weights", "freeze_layers", "batchnorm_momentum",
        "augment", "pretrain_steps", "pretrain_batch_size", "pretrain_learning_rate",
        "mildnet_pretrain_learning_rate",
    )  # fmt: skip
    digest = hashlib.sha256(
        json.dumps(
            {"backbone": backbone, "seed": seed, "backend": keras.backend.backend(),
             **{name: getattr(profile, name) for name in fields}},
            sort_keys=True,
        ).encode()
    )  # fmt: skip
    digest.update(np.ascontiguousarray(train.images).tobytes())
    digest.update(np.ascontiguousarray(train.person_ids).tobytes())
    stem = f"{backbone}-{digest.hexdigest()[:16]}"
    weights_path, record_path = cache_dir / f"{stem}.weights.h5", cache_dir / f"{stem}.json"
    record = _read_json(record_path)
    if record is not None and weights_path.is_file():
        return weights_path, {**record, "cached": True}

    keras.utils.set_random_seed(derived_seed(seed, PRETRAINING_STREAM))
    # Nothing frozen: the row freezes its first `freeze_layers` once they hold learnt weights,
    # as the thesis freezes ImageNet layers (frozen random layers are only noise).
    embedder = build_row_embedder(backbone, profile.replace(freeze_layers=0))
    augmentation = None
    if profile.augment:
        augmentation = augment.build_augmentation(seed=derived_seed(seed, PRETRAINING_STREAM))
    record = pretraining.pretrain_by_identity(
        embedder,
        train.images,
        train.person_ids,
        steps=profile.pretrain_steps,
        batch_size=profile.pretrain_batch_size,
        learning_rate=profile.pretrain_learning_rate_of(backbone),
        seed=derived_seed(seed, PRETRAINING_STREAM),
        augmentation=augmentation,
        progress=progress,
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = weights_path.with_name(stem + ".tmp.weights.h5")
    models.get_backbone(embedder).save_weights(temporary)
    os.replace(temporary, weights_path)
    _write_json(record_path, record)
    return weights_path, {**record, "cached": False}


def _pretrained_metrics(path: Path) -> dict[str, Any]:
    stored = _read_json(path)
    if stored is None:
        return {}
    return {"pretrained": stored["evaluation"], "pretraining": stored["pretraining"]}


class _Trainer:
    """Model, optimizer, datasets and checkpoints of one run.

    `train_seconds` counts the epochs (training steps and validation) and mining;
    `images_seen` the images fed to the network in training steps (3 per triplet).
    """

    def __init__(
        self, backbone, loss, mining_name, profile, seed, out_dir, train, validation, progress
    ):
        self.profile, self.seed, self.mining, self.progress = profile, seed, mining_name, progress
        self.out_dir, self.train, self.validation = out_dir, train, validation
        self.checkpoint_dir = out_dir / "checkpoints"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.epochs_completed, self.train_seconds, self.images_seen = 0, 0.0, 0
        self.keep_checkpoints = 1  # epoch-* folders kept: the last one (latest.json) and more

        self.embedder = build_row_embedder(backbone, profile)
        augmentation = None
        if profile.augment:
            augmentation = augment.build_augmentation(seed=derived_seed(seed, AUGMENTATION_STREAM))
        if mining_name == "offline":
            self.model = models.build_triplet_model(self.embedder, augmentation)
        else:
            self.model = models.build_online_model(self.embedder, augmentation)
        loss_class = losses.LOSSES[loss]
        takes_margin = "margin" in inspect.signature(loss_class).parameters
        optimizer = keras.optimizers.Adam(learning_rate=profile.learning_rate)
        self.model.compile(
            optimizer=optimizer,
            loss=loss_class(margin=profile.margin) if takes_margin else loss_class(),
        )
        optimizer.build(self.model.trainable_variables)
        # Random-number state (augmentation, dropout) is in `variables` but not in `weights`.
        weight_ids = {id(weight) for weight in self.model.weights}
        self.seed_states = [v for v in self.model.variables if id(v) not in weight_ids]

    def evaluate(self, query: Split, gallery: Split, cache_dir: Path) -> dict[str, Any]:
        return cached_evaluation(
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
            return dataset, _FixedEpoch(validation)
        hard_negatives = self._hard_negatives(iteration, first_epoch) if iteration > 1 else {}
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
        if held_out is None:
            return dataset, None
        validation = sampling.TripletDataset(
            held_out.images,
            held_out.person_ids,
            held_out.camera_ids,
            batch_size=profile.triplet_batch_size,
            seed=validation_seed,
        )
        return dataset, _FixedEpoch(validation)

    def _hard_negatives(self, iteration: int, first_epoch: int) -> dict[int, np.ndarray]:
        """Mined with the weights that ended the previous iteration (or reloaded: resume)."""
        path = self.checkpoint_dir / f"hard_negatives_iteration{iteration}.npz"
        if path.is_file():
            return _load_hard_negatives(path)
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
        _save_hard_negatives(path, mined)
        records = _read_json(self.out_dir / "mining.json") or []
        records = [record for record in records if record["iteration"] != iteration]
        records.append({"iteration": iteration, **stats.to_dict(), "usable_anchors": len(mined)})
        _write_json(self.out_dir / "mining.json", records)
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
                lambda epoch: learning_rate_at(self.profile, epoch)
            ),
            _EpochClock(self, images_per_epoch=per_step * len(dataset)),
            _HistoryWriter(self.out_dir / "history.csv", iteration),
            _Checkpoint(self),
        ]
        # shuffle=False: every batch is already random (a function of seed, epoch and index);
        # Keras would shuffle the batch order with Python's global `random`, which no
        # checkpoint can restore, so a resumed run would see the batches in another order.
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
        _write_json(
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
        pointer = _read_json(self.checkpoint_dir / "latest.json")
        if pointer is None:
            return False
        folder = self.checkpoint_dir / pointer["folder"]
        self.model.load_weights(folder / "model.weights.h5")
        variables = {f"optimizer_{i}": v for i, v in enumerate(self.model.optimizer.variables)}
        variables.update({f"seed_{i}": v for i, v in enumerate(self.seed_states)})
        with np.load(folder / "state.npz") as state:
            if sorted(state.files) != sorted(variables):
                raise ValueError(
                    f"checkpoint {folder} holds {len(state.files)} optimizer and random-state "
                    f"arrays, this model has {len(variables)}; start again with resume=False"
                )
            for key, variable in variables.items():
                variable.assign(state[key])
        self.epochs_completed = int(pointer["epochs_completed"])
        self.train_seconds = float(pointer["train_seconds"])
        self.images_seen = int(pointer["images_seen"])
        _truncate_history(self.out_dir / "history.csv", self.epochs_completed)
        return True


class _FixedEpoch(sampling.Batches):
    """Always the batches of epoch 0, so that validation losses of all epochs compare."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.dataset = dataset
        dataset.set_epoch(0)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]


class _SetEpoch(keras.callbacks.Callback):
    """Epoch e trains on `dataset.set_epoch(e)`'s batches, resumed or not."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)


class _EpochClock(keras.callbacks.Callback):
    def __init__(self, trainer: _Trainer, images_per_epoch: int) -> None:
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
        earlier = self.path.read_text() if self.path.is_file() else ""
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        if not earlier:
            writer.writeheader()
        writer.writerow(row)
        files.write_text_atomic(self.path, earlier + buffer.getvalue())  # whole rows only


class _Checkpoint(keras.callbacks.Callback):
    def __init__(self, trainer: _Trainer) -> None:
        super().__init__()
        self.trainer = trainer

    def on_epoch_end(self, epoch, logs=None):
        self.trainer.save()


# --- data ---------------------------------------------------------------------------------------
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


def _check_data_root(data_root) -> Path:
    root = Path(data_root).expanduser()
    folders = [data.SPLIT_FOLDERS[split] for split in data.DEFAULT_SPLITS]
    if not root.is_dir():
        raise ValueError(
            f"dataset folder {str(root)!r} does not exist: expected a Market-1501 folder holding "
            f"{', '.join(folders)} (`tripletlib synth --out DIR` writes a synthetic one)"
        )
    missing = [folder for folder in folders if not (root / folder).is_dir()]
    if missing:
        raise ValueError(f"dataset folder {str(root)!r} lacks the split folder(s) {missing}")
    return root.resolve()


def load_splits(
    data_root: Path, profile: config.Profile, cache_dir: Path | None, progress: bool = False
) -> dict[str, Split]:
    """ "train" (junk and distractors dropped), "gallery" and "query" at the profile's size."""
    metadata = data.load_market1501(data_root, progress=progress)
    splits = {}
    for name in data.DEFAULT_SPLITS:
        rows = metadata[metadata["split"] == name]
        if name == "train":
            rows = rows[rows["person_id"] > 0]
        rows = rows.reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"{data_root}: {data.SPLIT_FOLDERS[name]}/ has no usable images")
        pixels = images.load_image_array(
            rows, profile.image_height, profile.image_width, cache_dir, progress=progress
        )
        person_ids, camera_ids = (rows[c].to_numpy(np.int64) for c in ("person_id", "camera_id"))
        splits[name] = Split(pixels, person_ids, camera_ids)
    return splits


# --- files --------------------------------------------------------------------------------------
RUN_FILES = (
    "checkpoints", "history.csv", "metrics.json", "mining.json", "embedder.weights.h5",
    "embeddings.npz",
)  # fmt: skip


def _check_out_dir(out_dir: Path, run_config: dict[str, Any], overwrite: bool) -> None:
    """Refuse, before anything is read or written, an `out_dir` that is not ours to write: a
    file, a non-empty folder that is not a run, a run of another config (unless `overwrite`)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; expected a run folder (new, empty, or a run)")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    existing = _read_json(out_dir / "config.json")
    if existing is None:
        raise ValueError(
            f"--out {out_dir} is not empty and holds no config.json of a tripletlib run, so it is "
            "left alone; choose another folder (new or empty)"
        )
    if existing != run_config and not overwrite:
        changed = sorted(key for key in run_config if existing.get(key) != run_config[key])
        raise ValueError(
            f"--out {out_dir} holds a run of another config ({', '.join(changed)} differ); pass "
            "--overwrite (overwrite=True) to replace it, or choose another folder (the same "
            "config would be resumed)"
        )


def _prepare_out_dir(out_dir: Path, run_config: dict[str, Any], resume: bool) -> None:
    """Write config.json; discard what an earlier run left there unless it is resumed (same
    config and a checkpoint to resume from). `_check_out_dir` has allowed it."""
    existing = _read_json(out_dir / "config.json")
    for leftover in files.leftover_temporary_files(out_dir) if out_dir.is_dir() else []:
        leftover.unlink()  # half-written by a killed run; the file it was meant to replace holds
    has_checkpoint = (out_dir / "checkpoints" / "latest.json").is_file()
    if existing != run_config or not resume or not has_checkpoint:
        for name in RUN_FILES + tuple(p.name for p in out_dir.glob("evaluation_*.json")):
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "config.json", run_config)


def _truncate_history(path: Path, epochs_completed: int) -> None:
    """Drop rows of epochs after the checkpoint (written just before an interruption)."""
    if path.is_file():
        lines = path.read_text().splitlines()
        kept = lines[:1] + [
            line for line in lines[1:] if int(line.split(",")[0]) < epochs_completed
        ]
        files.write_text_atomic(path, "".join(line + "\n" for line in kept))


def _save_hard_negatives(path: Path, hard_negatives: dict[int, np.ndarray]) -> None:
    anchors = np.array(sorted(hard_negatives), dtype=np.int64)
    counts = np.array([len(hard_negatives[a]) for a in anchors], dtype=np.int64)
    rows = np.concatenate([hard_negatives[a] for a in anchors] + [np.empty(0, np.int64)])
    files.save_npz_atomic(path, anchors=anchors, counts=counts, rows=rows)


def _load_hard_negatives(path: Path) -> dict[int, np.ndarray]:
    with np.load(path) as stored:
        anchors, counts, rows = stored["anchors"], stored["counts"], stored["rows"]
    ends = np.cumsum(counts)
    return {int(a): rows[e - n : e] for a, n, e in zip(anchors, counts, ends, strict=True)}


def _plain(value: Any) -> Any:
    """A NumPy or backend scalar as a Python number for the CSV file; None as an empty cell."""
    if value is None:
        return ""
    return value if isinstance(value, int | str) else float(value)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _write_json(path: Path, value: Any) -> None:
    """Write through a temporary file, so that an interruption never leaves half a file."""
    files.write_json_atomic(path, value)
