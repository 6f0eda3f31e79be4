"""Triplet losses (Sections 3.2.1, 3.2.3, 3.2.4): on squared Euclidean distances, as Eq. 3.3 and
Eq. 3.6 write them, except batch-hard, on Euclidean distances as Hermans et al. define it.

Each loss is a plain function (NumPy arrays or backend tensors in, a scalar tensor out, averaged
over the batch, 0 for an empty batch) with a thin serializable Keras `Loss` class around it. Only
`keras.ops` is used, so they run on every Keras backend.

- `triplet_loss`: Eq. 3.3, `max(d(a, p) - d(a, n) + margin, 0)` per triplet. The thesis writes a
  sum; here it is the mean over the batch, so the scale does not depend on the batch size.
- `lossless_triplet_loss`: Eq. 3.6,
  `-ln(1 + eps - d(a, p) / beta) - ln(1 + eps - (D - d(a, n)) / beta)`.
  For unit-norm embeddings a squared distance lies in [0, 4], so D = beta = 4 (thesis).
  Arsenault's original ("Lossless triplet loss", 2018) feeds sigmoid outputs in [0, 1]^N, whose
  squared distances lie in [0, N], and sets D = beta = N, the embedding size.
  A distance above beta would make the first logarithm's argument negative (NaN), so d(a, p) and
  D - d(a, n) are clipped to [0, beta] (with D = beta this is clipping d(a, n) to [0, beta]); a
  clipped term has zero gradient, and for finite inputs the loss is finite (at most 2 * -ln(eps)).
  Off the sphere (embeddings not L2-normalised, so squared distances above D) the clip saturates
  and the gradient is zero: the function warns when it can see the values (see below).
  NaN or infinite embeddings raise a ValueError.

Inputs whose values are known when the loss is called (NumPy arrays, eager tensors, e.g. a
notebook checking a value) are checked. Inside a compiled training step (`model.fit` traces the
loss: tf.function, jax.jit) the values are unknown at trace time, so nothing can be raised there:
NaN embeddings give a NaN loss (which `keras.callbacks.TerminateOnNaN` stops) and off-sphere
embeddings the documented clip.
- `batch_all_triplet_loss`, `batch_hard_triplet_loss`: online mining in a batch of labelled
  embeddings (Section 3.2.3, Hermans et al. 2017): "batch all" averages Eq. 3.3 over the valid
  triplets whose loss is positive; "batch hard" takes the hardest positive and the hardest negative
  per anchor and averages over the anchors that have both. Batch-hard works on Euclidean, not
  squared, distances (`pairwise_distances`), as in Hermans et al. ("In Defense of the Triplet
  Loss", 2017), who introduced it and found squared distances more prone to collapse: near a
  collapse the gradient of a squared distance vanishes with the distance itself, that of a
  Euclidean one does not. On squared distances, batch-hard from the CPU profiles' label-free start
  collapses (docs/benchmarks.md, "Batch-hard").
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops


def _as_float_tensor(values, name: str):
    tensor = ops.cast(ops.convert_to_tensor(values), "float32")
    if len(tensor.shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D array (batch, embedding_dim); got shape {tensor.shape}"
        )
    return tensor


def _check_same_shape(**tensors) -> None:
    shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    reference = next(iter(shapes.values()))
    for shape in shapes.values():
        if len(shape) != len(reference) or any(
            a is not None and b is not None and a != b
            for a, b in zip(shape, reference, strict=True)
        ):
            raise ValueError(f"the embeddings must have the same shape; got {shapes}")


def _check_non_negative(value: float, name: str) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")


def _check_lossless_parameters(beta: float, max_distance: float, epsilon: float) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0; got {beta!r}")
    if not max_distance > 0:
        raise ValueError(f"max_distance must be > 0; got {max_distance!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0 (it keeps the logarithm finite); got {epsilon!r}")


def _known_values(tensor):
    """The NumPy values of a tensor known now (NumPy, eager), None while tracing (no values yet)."""
    try:
        return keras.ops.convert_to_numpy(tensor)
    except Exception:  # a symbolic tf.Tensor, a JAX tracer: values unknown until run
        return None


def _check_finite(**tensors) -> None:
    for name, tensor in tensors.items():
        values = _known_values(tensor)
        if values is not None and not np.all(np.isfinite(values)):
            count = int(np.sum(~np.isfinite(values)))
            raise ValueError(
                f"{name} holds {count} NaN or infinite value(s); the lossless triplet loss needs "
                "finite embeddings (a NaN here usually means training diverged)"
            )


# Squared distances of unit vectors exceed 4 by rounding only; more than this is off the sphere.
_SPHERE_TOLERANCE = 1e-3


def _warn_off_sphere(positive_distance, negative_distance, max_distance: float) -> None:
    largest = [_known_values(d) for d in (positive_distance, negative_distance)]
    if any(values is None or values.size == 0 for values in largest):
        return
    largest = float(max(values.max() for values in largest))
    if largest > max_distance * (1 + _SPHERE_TOLERANCE):
        warnings.warn(
            f"lossless triplet loss: a squared distance of {largest:.4g} exceeds max_distance="
            f"{max_distance:g}; it is clipped, and its term has zero gradient (are the embeddings "
            "L2-normalised? for sigmoid outputs in [0, 1]^N use beta = max_distance = N)",
            stacklevel=3,
        )


def _triplet_distances(anchor, positive, negative):
    """Squared distances d(a, p) and d(a, n), each `(B,)`."""
    anchor = _as_float_tensor(anchor, "anchor")
    positive = _as_float_tensor(positive, "positive")
    negative = _as_float_tensor(negative, "negative")
    _check_same_shape(anchor=anchor, positive=positive, negative=negative)
    positive_distance = ops.sum(ops.square(anchor - positive), axis=-1)
    negative_distance = ops.sum(ops.square(anchor - negative), axis=-1)
    return positive_distance, negative_distance


def _batch_mean(values):
    """Mean of a `(B,)` tensor, 0 when B = 0 (as `batch_all_triplet_loss`), never NaN."""
    return ops.sum(values) / ops.maximum(ops.sum(ops.ones_like(values)), 1.0)


def triplet_costs(positive_distance, negative_distance, margin: float = 0.2):
    """Eq. 3.3 for each triplet from its squared distances: `max(d(a, p) - d(a, n) + margin, 0)`."""
    _check_non_negative(margin, "margin")
    return ops.relu(positive_distance - negative_distance + margin)


def triplet_loss(anchor, positive, negative, margin: float = 0.2):
    """Triplet loss, Eq. 3.3 (Section 3.2.1): mean of `max(d(a, p) - d(a, n) + margin, 0)`, 0 for
    an empty batch."""
    _check_non_negative(margin, "margin")
    positive_distance, negative_distance = _triplet_distances(anchor, positive, negative)
    return _batch_mean(triplet_costs(positive_distance, negative_distance, margin))


def lossless_triplet_costs(
    positive_distance,
    negative_distance,
    beta: float = 4.0,
    max_distance: float = 4.0,
    epsilon: float = 1e-8,
):
    """The two terms of Eq. 3.6 for each triplet from its squared distances (Fig. 3.13):
    associative `-ln(1 + eps - d(a, p) / beta)` and contrastive `-ln(1 + eps - (D - d(a, n)) /
    beta)`, with d(a, p) and D - d(a, n) clipped to [0, beta] so that neither is ever NaN."""
    _check_lossless_parameters(beta, max_distance, epsilon)
    # 1 - x / beta written as (beta - x) / beta: exactly 0 at the clip, whatever the compiler
    # reorders (TF's graph optimiser turns (1 - x) + eps into (1 + eps) - x, which rounds to 0).
    positive_room = beta - ops.clip(positive_distance, 0.0, beta)
    negative_room = beta - ops.clip(max_distance - negative_distance, 0.0, beta)
    return -ops.log(positive_room / beta + epsilon), -ops.log(negative_room / beta + epsilon)


def lossless_triplet_loss(
    anchor,
    positive,
    negative,
    beta: float = 4.0,
    max_distance: float = 4.0,
    epsilon: float = 1e-8,
):
    """Lossless triplet loss, Eq. 3.6 (Section 3.2.4), averaged over the batch (0 when empty).

    `max_distance` is D, the largest squared distance (4 for unit-norm embeddings); `beta` scales
    the distances. d(a, p) and D - d(a, n) are clipped to [0, beta], so finite inputs give a
    finite loss. Raises ValueError on NaN or infinite embeddings and warns (UserWarning) when a
    squared distance exceeds `max_distance` (embeddings off the unit sphere: the clipped term has
    zero gradient), whenever the values are known at call time; in a compiled step NaN gives NaN
    and off-sphere distances are clipped silently (module docstring).
    """
    _check_lossless_parameters(beta, max_distance, epsilon)
    positive_distance, negative_distance = _triplet_distances(anchor, positive, negative)
    _check_finite(anchor=anchor, positive=positive, negative=negative)
    _warn_off_sphere(positive_distance, negative_distance, max_distance)
    associative, contrastive = lossless_triplet_costs(
        positive_distance, negative_distance, beta, max_distance, epsilon
    )
    return _batch_mean(associative + contrastive)


def pairwise_squared_distances(embeddings):
    """`(B, B)` squared Euclidean distances, clipped at 0 against rounding (diagonal exactly 0)."""
    embeddings = _as_float_tensor(embeddings, "embeddings")
    squared_norms = ops.sum(ops.square(embeddings), axis=-1)
    dot = ops.matmul(embeddings, ops.transpose(embeddings))
    distances = squared_norms[:, None] - 2.0 * dot + squared_norms[None, :]
    off_diagonal = 1.0 - ops.eye(ops.shape(embeddings)[0], dtype="float32")
    return ops.maximum(distances, 0.0) * off_diagonal


def pairwise_distances(embeddings):
    """`(B, B)` Euclidean distances: the square root of `pairwise_squared_distances`, exactly 0
    where those are 0 (the diagonal), with a finite gradient there (the root of a value kept
    above 1e-12, discarded by the `where`)."""
    squared = pairwise_squared_distances(embeddings)
    return ops.where(squared > 0.0, ops.sqrt(ops.maximum(squared, 1e-12)), 0.0)


def _label_masks(labels, embeddings):
    """Float masks `(B, B)`: same label and different index (positives), different label."""
    labels = ops.reshape(ops.convert_to_tensor(labels), (-1,))
    if labels.shape[0] is not None and embeddings.shape[0] is not None:
        if labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"labels must hold one label per embedding; got {labels.shape[0]} labels for "
                f"{embeddings.shape[0]} embeddings"
            )
    same = ops.cast(ops.equal(labels[:, None], labels[None, :]), "float32")
    not_self = 1.0 - ops.eye(ops.shape(labels)[0], dtype="float32")
    return same * not_self, 1.0 - same


def batch_all_triplet_loss(labels, embeddings, margin: float = 0.2):
    """Batch-all online mining (Section 3.2.3): Eq. 3.3 averaged over valid triplets with loss > 0.

    Valid triplet (a, p, n): labels[a] == labels[p], a != p, labels[n] != labels[a]. Returns 0 when
    no valid triplet has a positive loss.
    """
    _check_non_negative(margin, "margin")
    embeddings = _as_float_tensor(embeddings, "embeddings")
    distances = pairwise_squared_distances(embeddings)
    positive_mask, negative_mask = _label_masks(labels, embeddings)
    # losses[a, p, n] = d(a, p) - d(a, n) + margin
    losses = distances[:, :, None] - distances[:, None, :] + margin
    valid = positive_mask[:, :, None] * negative_mask[:, None, :]
    losses = ops.relu(losses) * valid
    positive_count = ops.sum(ops.cast(losses > 0.0, "float32"))
    return ops.sum(losses) / ops.maximum(positive_count, 1.0)


def batch_hard_triplet_loss(labels, embeddings, margin: float = 0.2):
    """Batch-hard online mining (Section 3.2.3): per anchor the farthest positive and the nearest
    negative; Eq. 3.3's hinge on their Euclidean distances (Hermans et al. 2017; module docstring),
    averaged over the anchors that have at least one of each (0 when none)."""
    _check_non_negative(margin, "margin")
    embeddings = _as_float_tensor(embeddings, "embeddings")
    distances = pairwise_distances(embeddings)
    positive_mask, negative_mask = _label_masks(labels, embeddings)
    hardest_positive = ops.max(distances * positive_mask, axis=1, initial=0.0)
    # Push non-negatives beyond every real distance before taking the minimum.
    ceiling = ops.max(distances, initial=0.0) + 1.0  # initial: an empty batch gives 0
    hardest_negative = ops.min(
        distances + ceiling * (1.0 - negative_mask), axis=1, initial=float("inf")
    )
    has_both = ops.cast(
        ops.logical_and(ops.sum(positive_mask, axis=1) > 0, ops.sum(negative_mask, axis=1) > 0),
        "float32",
    )
    losses = ops.relu(hardest_positive - hardest_negative + margin) * has_both
    return ops.sum(losses) / ops.maximum(ops.sum(has_both), 1.0)


def _split_triplets(y_pred):
    if len(y_pred.shape) != 3 or y_pred.shape[1] not in (3, None):
        raise ValueError(
            f"y_pred must be stacked (anchor, positive, negative) embeddings of shape (B, 3, D); "
            f"got {y_pred.shape}"
        )
    return y_pred[:, 0], y_pred[:, 1], y_pred[:, 2]


@keras.saving.register_keras_serializable(package="tripletlib")
class TripletLoss(keras.losses.Loss):
    """Eq. 3.3 as a Keras loss: `y_pred` `(B, 3, D)` stacked embeddings, `y_true` ignored."""

    def __init__(self, margin: float = 0.2, name: str = "triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        _check_non_negative(margin, "margin")
        self.margin = margin

    def call(self, y_true, y_pred):
        return triplet_loss(*_split_triplets(y_pred), margin=self.margin)

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="tripletlib")
class LosslessTripletLoss(keras.losses.Loss):
    """Eq. 3.6 as a Keras loss: `y_pred` `(B, 3, D)` stacked embeddings, `y_true` ignored."""

    def __init__(
        self,
        beta: float = 4.0,
        max_distance: float = 4.0,
        epsilon: float = 1e-8,
        name: str = "lossless_triplet_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        _check_lossless_parameters(beta, max_distance, epsilon)
        self.beta = beta
        self.max_distance = max_distance
        self.epsilon = epsilon

    def call(self, y_true, y_pred):
        anchor, positive, negative = _split_triplets(y_pred)
        return lossless_triplet_loss(
            anchor, positive, negative, self.beta, self.max_distance, self.epsilon
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "beta": self.beta,
            "max_distance": self.max_distance,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="tripletlib")
class BatchAllTripletLoss(keras.losses.Loss):
    """Batch-all online loss: `y_true` integer labels `(B,)`, `y_pred` embeddings `(B, D)`."""

    def __init__(self, margin: float = 0.2, name: str = "batch_all_triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        _check_non_negative(margin, "margin")
        self.margin = margin

    def call(self, y_true, y_pred):
        return batch_all_triplet_loss(y_true, y_pred, margin=self.margin)

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="tripletlib")
class BatchHardTripletLoss(keras.losses.Loss):
    """Batch-hard online loss: `y_true` integer labels `(B,)`, `y_pred` embeddings `(B, D)`."""

    def __init__(self, margin: float = 0.2, name: str = "batch_hard_triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        _check_non_negative(margin, "margin")
        self.margin = margin

    def call(self, y_true, y_pred):
        return batch_hard_triplet_loss(y_true, y_pred, margin=self.margin)

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin}


LOSSES: dict[str, type[keras.losses.Loss]] = {
    "triplet": TripletLoss,
    "lossless": LosslessTripletLoss,
    "batch-all": BatchAllTripletLoss,
    "batch-hard": BatchHardTripletLoss,
}
