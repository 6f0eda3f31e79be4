"""A label-free start in ImageNet's role: instance discrimination on unlabelled people.

The thesis fine-tunes ImageNet weights (Section 3.3.1): features learnt on another task, which
alone are a poor re-identification model (ImageNet ResNet-50 on Market-1501: Rank-1 6.7 / mAP 2.2)
and which fine-tuning turns into one. Offline there is no ImageNet, so the CPU profiles start from
an embedder trained without identity labels, as LUPerson does with MoCo on unlabelled person
images: SimCLR's instance discrimination (Chen et al. 2020). Each step draws `batch_size`
unlabelled images, augments each twice, and trains the L2-normalised embedding so that the two
views of one image are nearer to each other than to the other 2B - 2 views (NT-Xent loss at
`temperature`). No identity label is read: two images of one person are negatives of each other.
"""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from tripletlib import devices, sampling


def nt_xent_loss(embeddings, temperature: float = 0.1):
    """NT-Xent of `embeddings` (2B, D), unit rows: row i and row i + B are the two views of one
    image; the other 2B - 2 rows are its negatives. Mean over the 2B rows."""
    embeddings = keras.ops.cast(embeddings, "float32")
    count = keras.ops.shape(embeddings)[0]
    half = count // 2
    logits = keras.ops.matmul(embeddings, keras.ops.transpose(embeddings)) / temperature
    logits = logits - 1e9 * keras.ops.eye(count, dtype="float32")
    rows = keras.ops.arange(count)
    targets = keras.ops.where(rows < half, rows + half, rows - half)
    return keras.ops.mean(
        keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    )


class NTXentLoss(keras.losses.Loss):
    """`nt_xent_loss` as a Keras loss (its targets are ignored: no labels)."""

    def __init__(self, temperature: float = 0.1, name: str = "nt_xent", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}")
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        return nt_xent_loss(y_pred, self.temperature)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}


class TwoViews(keras.layers.Layer):
    """(B, H, W, 3) -> (2B, H, W, 3): two independent draws of `augmentation` of every image."""

    def __init__(self, augmentation: keras.Layer, **kwargs) -> None:
        super().__init__(**kwargs)
        self.augmentation = augmentation

    def call(self, images, training=False):
        first = self.augmentation(images, training=training)
        second = self.augmentation(images, training=training)
        return keras.ops.concatenate([first, second], axis=0)

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[1:])


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over `warmup_steps`, then a half cosine down to 0 at `steps`."""

    def __init__(self, learning_rate: float, steps: int, warmup_steps: int) -> None:
        self.learning_rate, self.steps, self.warmup_steps = learning_rate, steps, warmup_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = keras.ops.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))
        progress = keras.ops.minimum(step / self.steps, 1.0)
        return self.learning_rate * warmup * 0.5 * (1.0 + keras.ops.cos(np.pi * progress))

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "steps": self.steps,
                "warmup_steps": self.warmup_steps}  # fmt: skip


def train_instance_discrimination(
    embedder: keras.Model,
    images: np.ndarray,
    steps: int,
    augmentation: keras.Layer,
    batch_size: int = 64,
    temperature: float = 0.1,
    learning_rate: float = 1e-3,
    warmup_steps: int = 100,
    seed: int = 0,
    progress: bool = False,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> dict[str, Any]:
    """Train `embedder` in place by instance discrimination on unlabelled `images` (module doc).

    `augmentation` (a `augment.FusedAugmentation`) draws both views; Adam with a linear warm-up
    and a cosine decay to 0 at `steps`. Batches are `sampling.ImageBatches(images, batch_size,
    steps, seed)`. Returns the recipe, the last loss and the seconds it took.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    batches = sampling.ImageBatches(images, batch_size, steps, seed)
    inputs = keras.Input(embedder.inputs[0].shape[1:], dtype="float32", name="images")
    model = keras.Model(inputs, embedder(TwoViews(augmentation, name="two_views")(inputs)),
                        name="instance_discrimination")  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(WarmupCosine(learning_rate, steps, warmup_steps)),
        loss=NTXentLoss(temperature), jit_compile=devices.jit_compile(),
    )  # fmt: skip
    started = time.perf_counter()
    history = model.fit(batches, epochs=1, shuffle=False, callbacks=callbacks,
                        verbose=1 if progress else 0)  # fmt: skip
    return {
        "objective": "instance discrimination (NT-Xent), no identity labels",
        "steps": steps, "batch_size": batches.batch_size, "temperature": temperature,
        "learning_rate": learning_rate, "warmup_steps": warmup_steps, "seed": seed,
        "images": int(len(images)), "loss": round(float(history.history["loss"][-1]), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
