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

from tripletlib import augment, config, data, models, runs, sampling

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
