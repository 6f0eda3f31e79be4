"""A warm start for from-scratch profiles: identity classification before triplet training.

The thesis never trains from random weights: both backbones start from ImageNet (Section 3.3.1),
and its learning rate of 1e-4 fine-tunes them. Offline, ImageNet weights are out of reach, and a
randomly initialised ResNet-50 trained with the triplet loss collapses onto the margin (every
distance equal, the loss stuck at `margin`; measured in docs/benchmarks.md). The `ci` and `cpu`
profiles therefore first train the embedder as a classifier of the training identities
(softmax cross-entropy on a Dense layer over the 128 values before L2 normalisation), the usual
re-identification warm start, and then fine-tune it with the thesis' triplet recipe. The
classifier layer is thrown away; only the embedder's weights are kept.

`pretrain_by_identity` does the training; `training.train_row` caches its result so that the rows
of one backbone share it.
"""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from tripletlib import sampling

CLASSIFIER_FEATURES_LAYER = "embedding"  # the embedder's Dense layer before L2 normalisation


class IdentityBatches(sampling.Batches):
    """`steps` batches of `(images float32 (B, H, W, 3), identity index int32 (B,))`.

    Batch i holds `batch_size` distinct images drawn with `np.random.default_rng([seed, i])`:
    a pure function of (seed, i). Identity indices number `np.unique(person_ids)` from 0.
    """

    def __init__(self, images, person_ids, batch_size: int, steps: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.images = np.asarray(images) if not hasattr(images, "shape") else images
        person_ids = np.asarray(person_ids)
        if self.images.ndim != 4 or len(self.images) != len(person_ids):
            raise ValueError(
                f"images must be (N, H, W, 3) with one person id per image; got images "
                f"{tuple(self.images.shape)} and {len(person_ids)} person ids"
            )
        for value, name in ((batch_size, "batch_size"), (steps, "steps")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        self.identities, self.labels = np.unique(person_ids, return_inverse=True)
        if len(self.identities) < 2:
            raise ValueError(
                f"identity classification needs at least 2 identities; got {len(self.identities)}"
            )
        self.batch_size = min(batch_size, len(person_ids))
        self.steps, self.seed = steps, seed

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        rows = np.sort(rng.choice(len(self.labels), size=self.batch_size, replace=False))
        return self.images[rows].astype(np.float32), self.labels[rows].astype(np.int32)


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
    batches = IdentityBatches(images, person_ids, batch_size, steps, seed)
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
