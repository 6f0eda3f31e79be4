"""A warm start for from-scratch profiles: identity classification before triplet training.

The thesis never trains from random weights: both backbones start from ImageNet (Section 3.3.1),
and its learning rate of 1e-4 fine-tunes them. Offline, ImageNet weights are out of reach, and a
randomly initialised ResNet-50 trained with the triplet loss collapses onto the margin (every
distance equal, the loss stuck at `margin`; measured in docs/benchmarks.md). The `ci` and `cpu`
profiles therefore first train the embedder as a classifier of the training identities
(softmax cross-entropy on a Dense layer over the 128 values before L2 normalisation), the usual
re-identification warm start, and then fine-tune it with the thesis' triplet recipe. The
classifier layer is thrown away; only the embedder's weights are kept.

`pretrain_by_identity` does the training; `pretrained_weights` runs it for a row and caches the
backbone's weights, so that the rows of one backbone share one warm start. Its batches are
`sampling.IdentityBatches`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tripletlib import (
    augment,
    config,
    data,
    devices,
    losses,
    models,
    runs,
    sampling,
    selfsupervised,
)  # fmt: skip

CLASSIFIER_FEATURES_LAYER = "embedding"  # the embedder's Dense layer before L2 normalisation


def pretrain_by_identity(
    embedder: keras.Model,
    images: np.ndarray,
    person_ids: np.ndarray,
    steps: int,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    augmentation: keras.Layer | None = None,
    progress: bool = False,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> dict[str, Any]:
    """Train `embedder` in place as an identity classifier for `steps` Adam steps.

    The classifier is `embedder`'s layer "embedding" (before L2 normalisation) -> Dense(number of
    identities), behind the optional `augmentation`. Returns the steps, batch size, learning rate,
    identities, the mean loss and accuracy over the steps, and the seconds it took.
    """
    batches = sampling.IdentityBatches(images, person_ids, batch_size, steps, seed)
    features = keras.Model(embedder.inputs, embedder.get_layer(CLASSIFIER_FEATURES_LAYER).output)
    inputs = keras.Input(embedder.inputs[0].shape[1:], dtype="float32", name="images")
    x = augmentation(inputs) if augmentation is not None else inputs
    logits = keras.layers.Dense(len(batches.identities), name="identity_logits")(features(x))
    classifier = keras.Model(inputs, logits, name="identity_classifier")
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    history = classifier.fit(batches, epochs=1, shuffle=False, verbose=1 if progress else 0)
    return {
        "steps": steps,
        "batch_size": batches.batch_size,
        "learning_rate": learning_rate,
        "identities": len(batches.identities),
        "loss": round(float(history.history["loss"][-1]), 4),
        "accuracy": round(float(history.history["accuracy"][-1]), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def pretrained_weights(
    backbone: str,
    profile: config.Profile,
    train: data.Split,
    seed: int,
    cache_dir: Path,
    progress: bool = False,
    build_embedder: Callable[..., keras.Model] = models.build_embedder,
) -> tuple[Path, dict[str, Any]]:
    """The backbone's weights after `profile.pretrain_steps` of identity classification on `train`.

    Cached in `cache_dir` under a key of everything that shapes them (backbone, profile, seed,
    training images and identities): the offline and online rows of one backbone, which hold out
    the same validation identities, train it once. Returns the weights file and a record of the
    pretraining (steps, loss, accuracy, seconds, whether it came from the cache).
    `build_embedder(backbone, **profile.embedder_options())` builds the network to train.
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
    cache_dir = Path(cache_dir)
    weights_path, record_path = cache_dir / f"{stem}.weights.h5", cache_dir / f"{stem}.json"
    record = runs.read_json(record_path)
    if record is not None and weights_path.is_file():
        return weights_path, {**record, "cached": True}

    stream_seed = config.derived_seed(seed, config.PRETRAINING_STREAM)
    keras.utils.set_random_seed(stream_seed)
    # Nothing frozen: the row freezes its first `freeze_layers` once they hold learnt weights,
    # as the thesis freezes ImageNet layers (frozen random layers are only noise).
    embedder = build_embedder(backbone, **profile.embedder_options(freeze_layers=0))
    augmentation = augment.build_augmentation(seed=stream_seed) if profile.augment else None
    record = pretrain_by_identity(
        embedder,
        train.images,
        train.person_ids,
        steps=profile.pretrain_steps,
        batch_size=profile.pretrain_batch_size,
        learning_rate=profile.pretrain_learning_rate_of(backbone),
        seed=stream_seed,
        augmentation=augmentation,
        progress=progress,
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = weights_path.with_name(stem + ".tmp.weights.h5")
    models.get_backbone(embedder).save_weights(temporary)
    os.replace(temporary, weights_path)
    runs.write_json(record_path, record)
    return weights_path, {**record, "cached": False}


class _LabelledPK(sampling.Batches):
    """P x K batches with targets (person ids for the triplet loss, class indices for softmax)."""

    def __init__(self, batches: sampling.PKDataset) -> None:
        super().__init__()
        self.batches = batches
        self.classes = {int(pid): i for i, pid in enumerate(batches.identities)}

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        images, person_ids = self.batches[index]
        classes = np.array([self.classes[int(pid)] for pid in person_ids], dtype=np.int32)
        return images, (person_ids, classes)


def train_warm_start(
    embedder: keras.Model,
    images: np.ndarray,
    person_ids: np.ndarray,
    steps: int,
    p: int = 16,
    k: int = 4,
    learning_rate: float = 1e-3,
    warmup_steps: int = 50,
    margin: float = 0.2,
    seed: int = 0,
    augmentation: keras.Layer | None = None,
    progress: bool = False,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> dict[str, Any]:
    """Train `embedder` in place on a pool of people that no book split holds: ImageNet's role.

    The loss is the batch-all triplet loss (Section 3.2.3) on the L2-normalised embedding plus
    softmax cross-entropy over the pool's identities on the layer "embedding" (a classifier that
    is thrown away), on P x K batches behind `augmentation`; Adam with a linear warm-up and a
    cosine decay. `callbacks` go to `fit` (e.g. a monitor of the test splits). Returns the recipe,
    the last losses and the seconds it took.
    """
    batches = sampling.PKDataset(images, person_ids, p=p, k=k, steps_per_epoch=steps, seed=seed)
    inputs = keras.Input(embedder.inputs[0].shape[1:], dtype="float32", name="images")
    augmented = augmentation(inputs) if augmentation is not None else inputs
    features = keras.Model(embedder.inputs, [embedder.output,
                                             embedder.get_layer(CLASSIFIER_FEATURES_LAYER).output])
    embeddings, before_normalisation = features(augmented)
    logits = keras.layers.Dense(len(batches.identities), name="identity_logits")(
        before_normalisation
    )
    model = keras.Model(inputs, [embeddings, logits], name="warm_start")
    model.compile(
        optimizer=keras.optimizers.Adam(
            selfsupervised.WarmupCosine(learning_rate, steps, warmup_steps)
        ),
        loss=[
            losses.BatchAllTripletLoss(margin=margin),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ],
        jit_compile=devices.jit_compile(),
    )
    started = time.perf_counter()
    history = model.fit(_LabelledPK(batches), epochs=1, shuffle=False, callbacks=callbacks,
                        verbose=1 if progress else 0)  # fmt: skip
    last = {key: round(float(values[-1]), 4) for key, values in history.history.items()}
    return {
        "steps": steps, "p": p, "k": k, "learning_rate": learning_rate,
        "warmup_steps": warmup_steps, "margin": margin, "identities": len(batches.identities),
        "images": int(len(person_ids)), "losses": last,
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


# The shipped warm starts of the CPU profiles (`ci`, `cpu`): synthetic pools of people drawn with
# their own seeds, so that none of them is in a book split (the book's sets use seeds 0-2), trained
# by `train_warm_start` in stages: the first on WARM_START_POOL; each later stage continues on a
# larger pool of other people (`warm_start_later_pools`) with a new warm-up and cosine cycle at half
# the peak rate (more people: the first stage's embedding scored mAP 84.5 on its own pool's people
# and 70.5 on the book's, and had stopped improving; so had each later stage; docs/benchmarks.md).
# `scripts/make_warm_starts.py` reproduces the files in WARM_START_DIR.
WARM_START_DIR = Path(__file__).resolve().parent / "warm_starts"
WARM_START_POOL = {"train_ids": 600, "test_ids": 4, "seed": 1000}
# The later stages' pools, in order: more people each time, each drawn with its own seed.
WARM_START_LATER_POOLS = (
    {"train_ids": 1500, "test_ids": 4, "seed": 1001},
    {"train_ids": 3000, "test_ids": 4, "seed": 1002},
    {"train_ids": 6000, "test_ids": 4, "seed": 1003},
    {"train_ids": 9995, "test_ids": 4, "seed": 1004},  # the most four-digit ids allow
)
WARM_START_RECIPE = {
    "input_shape": (64, 32, 3), "width": 0.25, "input_normalization": "per-image",
    "batchnorm_momentum": 0.9, "steps": {"resnet50": 10000, "mildnet": 8000},
    "p": 16, "k": 4, "warmup_steps": 50,
    "margin": 0.2, "colour_gain": 0.2, "brightness": 0.2, "seed": 0,
    "learning_rate": {"resnet50": 1e-3, "mildnet": 3e-4},
    # Every later stage (one per pool of `warm_start_later_pools`) trains with these settings.
    "later_stages": {"steps": {"resnet50": 5000, "mildnet": 4000}, "warmup_steps": 200,
                     "learning_rate": {"resnet50": 5e-4, "mildnet": 1.5e-4}, "seed": 1},
}  # fmt: skip


def warm_start_later_pools() -> list[dict[str, int]]:
    """The pools of the stages after the first, in order (WARM_START_LATER_POOLS)."""
    return list(WARM_START_LATER_POOLS)


def warm_start_pools() -> list[dict[str, int]]:
    """Every stage's pool, in order: what a shipped warm start's record lists under "pools"."""
    return [WARM_START_POOL, *warm_start_later_pools()]


def warm_start_stages(backbone: str) -> list[dict[str, Any]]:
    """The stages of `backbone`'s shipped warm start: pool, steps, peak learning rate, warm-up
    steps and seed of each (WARM_START_RECIPE)."""
    later = WARM_START_RECIPE["later_stages"]
    settings = [(WARM_START_POOL, WARM_START_RECIPE)]
    settings += [(pool, later) for pool in warm_start_later_pools()]
    return [
        {"pool": pool, "steps": stage["steps"][backbone],
         "learning_rate": stage["learning_rate"][backbone],
         "warmup_steps": stage["warmup_steps"], "seed": stage["seed"]}
        for pool, stage in settings
    ]  # fmt: skip


def warm_start_steps(backbone: str) -> int:
    """The training steps of `backbone`'s shipped warm start, all stages (WARM_START_RECIPE)."""
    return sum(stage["steps"] for stage in warm_start_stages(backbone))


def warm_start_path(backbone: str, kind: str = "shipped") -> Path:
    """The shipped weights of `backbone`'s whole embedder (backbone and head) for the CPU profiles
    (see WARM_START_RECIPE)."""
    if kind == LABEL_FREE:
        return start_path(backbone)
    recipe = WARM_START_RECIPE
    height, width, _ = recipe["input_shape"]
    return WARM_START_DIR / f"{backbone}-w{recipe['width']:g}-{height}x{width}.weights.h5"


def warm_start_record_path(weights_path: Path) -> Path:
    """The JSON record written beside a warm start's ``.weights.h5`` file."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.name.replace(".weights.h5", ".json"))


def warm_start_record(backbone: str, kind: str = "shipped") -> dict[str, Any]:
    """The JSON record beside `warm_start_path(backbone)` (recipe, losses, seconds), or a clear
    error when the package lacks the file (`scripts/make_warm_starts.py` writes both)."""
    path = warm_start_path(backbone, kind)
    record_path = warm_start_record_path(path)
    if not path.is_file() or not record_path.is_file():
        script = "make_starts.py" if kind == LABEL_FREE else "make_warm_starts.py"
        raise FileNotFoundError(
            f"the shipped warm start {path} (or its .json record) is missing; recreate it with "
            f"`python scripts/{script} --work /tmp/warm-start`"
        )
    return {**json.loads(record_path.read_text()), "shipped": path.name}


def load_warm_start(embedder: keras.Model, backbone: str, kind: str = "shipped") -> keras.Model:
    """Load the shipped warm start into `embedder`, backbone and head (FC 1024-BN-ReLU-FC 128,
    Section 3.1.5; MILDNet's 1,472 -> 2,048 -> 2,048): the head learned on the pool's people too,
    so every row of a backbone starts from the same embedding (a random head threw away 10 points
    of the ResNet-50 warm start's mAP, docs/benchmarks.md)."""
    path = warm_start_path(backbone, kind)
    try:
        embedder.load_weights(path)
    except ValueError as error:
        name, recipe = ("START_RECIPE", START_RECIPE) if kind == LABEL_FREE else (
            "WARM_START_RECIPE", WARM_START_RECIPE
        )  # fmt: skip
        raise ValueError(
            f"the shipped warm start {path} does not fit the {backbone} embedder {embedder.name} "
            f"(it needs {name}'s input {recipe['input_shape']} and width {recipe['width']}): "
            f"{error}"
        ) from None
    return embedder


# ---------------------------------------------------------------------- the label-free start
# `Profile.warm_start` value of the label-free start (`selfsupervised`, scripts/make_starts.py).
LABEL_FREE = "label-free"
START_DIR = Path(__file__).resolve().parent / "starts"
# Unlabelled people drawn with their own seed: no book split (seeds 0-2) and no validation set.
START_POOL = {"train_ids": 600, "test_ids": 4, "seed": 1000}
# People outside every book split, where the start's and the rows' settings are chosen.
VALIDATION_SET = {"train_ids": 751, "test_ids": 80, "seed": 2000}
START_RECIPE = {
    "input_shape": (64, 32, 3), "width": 0.25, "input_normalization": "per-image",
    "batchnorm_momentum": 0.9, "steps": {"resnet50": 1500, "mildnet": 1500},
    "batch_size": 64, "temperature": 0.1, "warmup_steps": 100,
    "learning_rate": {"resnet50": 1e-3, "mildnet": 3e-4},
    "colour_gain": 0.4, "brightness": 0.4, "erasing": 0.5, "seed": 0,
}  # fmt: skip


def start_path(backbone: str) -> Path:
    """The shipped label-free start of `backbone`'s whole embedder (START_RECIPE)."""
    recipe = START_RECIPE
    height, width, _ = recipe["input_shape"]
    return START_DIR / f"{backbone}-w{recipe['width']:g}-{height}x{width}.weights.h5"
