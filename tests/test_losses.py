"""Triplet losses against hand-derived values and brute-force NumPy loops (run on both backends)."""

from __future__ import annotations

import itertools
import math
import warnings

import keras
import numpy as np
import pytest

from tripletlib import losses


def as_numpy(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def triplets_with_distances(positive_distances, negative_distances):
    """Anchors at the origin, positives on the x axis, negatives on the y axis: the squared
    distances d(a, p) and d(a, n) are exactly the given values."""
    positive_distances = np.asarray(positive_distances, dtype=np.float64)
    negative_distances = np.asarray(negative_distances, dtype=np.float64)
    count = len(positive_distances)
    anchor = np.zeros((count, 2), dtype=np.float32)
    positive = np.zeros((count, 2), dtype=np.float32)
    negative = np.zeros((count, 2), dtype=np.float32)
    positive[:, 0] = np.sqrt(positive_distances)
    negative[:, 1] = np.sqrt(negative_distances)
    return anchor, positive, negative


def gradient(function, values: np.ndarray) -> np.ndarray:
    """d function(values) / d values with the active backend's automatic differentiation."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(values)
        with tf.GradientTape() as tape:
            result = function(variable)
        return tape.gradient(result, variable).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(function)(jax.numpy.asarray(values)))
    pytest.skip(f"no gradient helper for backend {backend}")


def compiled(function, y_pred_ndim: int):
    """`function(y_true, y_pred)` compiled the way `model.fit` runs it: a tf.function with every
    dimension unknown (TensorFlow) or jax.jit (JAX)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        signature = [
            tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([None] * y_pred_ndim, tf.float32),
        ]
        return tf.function(function, input_signature=signature)
    if backend == "jax":
        import jax

        return jax.jit(function)
    pytest.skip(f"no compile helper for backend {backend}")


# ---- Eq. 3.3, triplet loss -------------------------------------------------------------------


def test_thesis_easy_triplet_has_zero_loss():
    # Eq. 3.4: d(a, p) = 1.2, d(a, n) = 2.4, margin 0.2 -> max(1.2 - 2.4 + 0.2, 0) = 0.
    anchor, positive, negative = triplets_with_distances([1.2], [2.4])
    assert float(losses.triplet_loss(anchor, positive, negative, margin=0.2)) == 0.0


def test_semi_hard_and_hard_triplets():
    # semi-hard: 1.0 < 1.1 < 1.0 + 0.2 -> 0.1; hard: 0.5 < 1.0 -> 1.0 - 0.5 + 0.2 = 0.7.
    anchor, positive, negative = triplets_with_distances([1.0, 1.0], [1.1, 0.5])
    assert float(losses.triplet_loss(anchor[:1], positive[:1], negative[:1])) == pytest.approx(
        0.1, abs=1e-6
    )
    assert float(losses.triplet_loss(anchor[1:], positive[1:], negative[1:])) == pytest.approx(
        0.7, abs=1e-6
    )


def test_triplet_loss_is_the_batch_mean():
    anchor, positive, negative = triplets_with_distances([1.2, 1.0, 1.0], [2.4, 1.1, 0.5])
    value = losses.triplet_loss(anchor, positive, negative, margin=0.2)
    assert tuple(keras.ops.shape(value)) == ()
    assert float(value) == pytest.approx((0.0 + 0.1 + 0.7) / 3, abs=1e-6)


def test_triplet_loss_accepts_backend_tensors():
    anchor, positive, negative = triplets_with_distances([1.0], [0.5])
    tensors = [keras.ops.convert_to_tensor(x) for x in (anchor, positive, negative)]
    assert float(losses.triplet_loss(*tensors, margin=0.3)) == pytest.approx(0.8, abs=1e-6)


def test_triplet_loss_rejects_bad_input():
    anchor, positive, negative = triplets_with_distances([1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="same shape"):
        losses.triplet_loss(anchor, positive[:1], negative)
    with pytest.raises(ValueError, match="2-D"):
        losses.triplet_loss(anchor[0], positive[0], negative[0])
    with pytest.raises(ValueError, match="margin"):
        losses.triplet_loss(anchor, positive, negative, margin=-0.1)


# ---- Eq. 3.6, lossless triplet loss ----------------------------------------------------------


@pytest.mark.parametrize(
    ("positive_distance", "negative_distance", "expected"),
    [
        # -ln(1 - 1/4) - ln(1 - (4 - 3)/4) = -2 ln(0.75)
        (1.0, 3.0, -2.0 * math.log(0.75)),
        # -ln(1 - 2/4) - ln(1 - (4 - 2)/4) = -2 ln(0.5): no margin, yet a positive loss
        (2.0, 2.0, -2.0 * math.log(0.5)),
        # the perfect triplet: -ln(1) - ln(1) = 0
        (0.0, 4.0, 0.0),
        # an easy triplet for Eq. 3.3 (1.2 + 0.2 < 2.4) still costs -ln(0.7) - ln(0.6)
        (1.2, 2.4, -math.log(0.7) - math.log(0.6)),
    ],
)
def test_lossless_matches_eq_3_6_by_hand(positive_distance, negative_distance, expected):
    anchor, positive, negative = triplets_with_distances([positive_distance], [negative_distance])
    value = float(losses.lossless_triplet_loss(anchor, positive, negative, epsilon=1e-8))
    assert value == pytest.approx(expected, abs=1e-5)


def test_lossless_arsenault_original_setting():
    # Sigmoid outputs in [0, 1]^3, N = beta = 3: d(a, p) = 1, d(a, n) = 3
    # -> -ln(1 - 1/3) - ln(1 - (3 - 3)/3) = ln(1.5).
    anchor = np.array([[0.0, 0.0, 0.0]], dtype=np.float32)
    positive = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    negative = np.array([[1.0, 1.0, 1.0]], dtype=np.float32)
    value = float(
        losses.lossless_triplet_loss(anchor, positive, negative, beta=3.0, max_distance=3.0)
    )
    assert value == pytest.approx(math.log(1.5), abs=1e-6)


def test_lossless_clips_distances_above_beta():
    # d(a, p) = 9 > beta is clipped to 4 -> -ln(eps); D - d(a, n) = 4 - 9 < 0 is clipped to 0 -> 0.
    anchor, positive, negative = triplets_with_distances([9.0, 1.0], [9.0, 3.0])
    with pytest.warns(UserWarning, match="squared distance of 9 exceeds max_distance=4"):
        first = losses.lossless_triplet_loss(anchor[:1], positive[:1], negative[:1])
    second = losses.lossless_triplet_loss(anchor[1:], positive[1:], negative[1:])
    per_triplet = [float(first), float(second)]
    assert per_triplet[0] == pytest.approx(-math.log(1e-8), rel=1e-5)
    assert all(np.isfinite(per_triplet))
    with pytest.warns(UserWarning, match="L2-normalised"):
        batch = float(losses.lossless_triplet_loss(anchor, positive, negative))
    assert batch == pytest.approx(sum(per_triplet) / 2, rel=1e-5)


def test_lossless_off_the_unit_sphere_warns_and_saturates():
    """Norm-3 embeddings: every squared distance far above D = 4, both terms clipped. The loss is
    -ln(eps) for the clipped positive plus -ln(1) for the clipped negative = 18.42, its gradient
    exactly zero, and the call warns (the documented behaviour, not a silent one)."""
    rng = np.random.default_rng(0)
    stacked = rng.normal(size=(4, 3, 8)).astype(np.float32)
    stacked[:, 1] = -stacked[:, 0]  # positive opposite the anchor: d(a, p) = 4 |a|^2 = 36
    stacked[:, 2] = -stacked[:, 0]
    stacked *= 3 / np.linalg.norm(stacked, axis=-1, keepdims=True)
    with pytest.warns(UserWarning, match="exceeds max_distance=4"):
        value = float(losses.lossless_triplet_loss(stacked[:, 0], stacked[:, 1], stacked[:, 2]))
    assert value == pytest.approx(-math.log(1e-8), rel=1e-5)  # 18.42
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorFlow's tape sees the values, jax.grad does not
        grads = gradient(
            lambda v: losses.lossless_triplet_loss(v[:, 0], v[:, 1], v[:, 2]), stacked
        )
    assert np.all(grads == 0.0)
    # On the sphere (the same directions, norm 1): no warning, a real gradient.
    unit = stacked / 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses.lossless_triplet_loss(unit[:, 0], unit[:, 1], unit[:, 2])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_lossless_raises_on_nan_or_infinite_embeddings(bad):
    anchor, positive, negative = triplets_with_distances([1.0, 1.0], [3.0, 3.0])
    positive[1, 0] = bad
    with pytest.raises(ValueError, match="positive holds 1 NaN or infinite"):
        losses.lossless_triplet_loss(anchor, positive, negative)
    with pytest.raises(ValueError, match="NaN or infinite"):
        losses.LosslessTripletLoss()(
            np.zeros(2, np.float32), np.stack([anchor, positive, negative], axis=1)
        )


def test_lossless_nan_inside_a_compiled_step_gives_nan_not_a_number():
    """Traced, the values are unknown, so nothing can be raised: NaN in, NaN out (documented),
    never a finite number that hides the divergence."""
    anchor, positive, negative = triplets_with_distances([1.0, 1.0], [3.0, 3.0])
    positive[1, 0] = np.nan
    stacked = np.stack([anchor, positive, negative], axis=1)
    value = float(compiled(losses.LosslessTripletLoss(), y_pred_ndim=3)(np.zeros(2, np.float32),
                                                                        stacked))
    assert math.isnan(value)


def test_lossless_is_finite_when_compiled():
    # coincident anchor and negative: -ln(1 - (4 - 0)/4 + eps) = -ln(eps); clipped d(a, p) = 9 too.
    # (A graph optimiser that rewrites (1 - x) + eps as (1 + eps) - x would return inf here.)
    anchor, positive, negative = triplets_with_distances([0.0, 9.0, 1.0], [0.0, 9.0, 3.0])
    stacked = np.stack([anchor, positive, negative], axis=1)
    labels = np.zeros(len(stacked), dtype=np.float32)
    loss = losses.LosslessTripletLoss()
    value = float(compiled(loss, y_pred_ndim=3)(labels, stacked))
    expected = (-math.log(1e-8) - math.log(1e-8) - 2 * math.log(0.75)) / 3
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "function, loss", [(losses.lossless_triplet_loss, losses.LosslessTripletLoss),
                       (losses.triplet_loss, losses.TripletLoss)],
)  # fmt: skip
def test_empty_batch_gives_zero_loss_not_nan(function, loss):
    empty = np.zeros((0, 4), dtype=np.float32)
    assert float(function(empty, empty, empty)) == 0.0
    stacked = np.zeros((0, 3, 4), dtype=np.float32)
    labels = np.zeros(0, dtype=np.float32)
    assert float(loss()(labels, stacked)) == 0.0
    assert float(compiled(loss(), y_pred_ndim=3)(labels, stacked)) == 0.0


def test_lossless_rejects_bad_parameters():
    anchor, positive, negative = triplets_with_distances([1.0], [1.0])
    for keyword in ("beta", "max_distance", "epsilon"):
        with pytest.raises(ValueError, match=keyword):
            losses.lossless_triplet_loss(anchor, positive, negative, **{keyword: 0.0})


def test_lossless_gradients_are_finite_even_when_clipped_or_coincident():
    anchor, positive, negative = triplets_with_distances([9.0, 1.0, 0.0, 4.0], [9.0, 3.0, 0.0, 0.0])
    stacked = np.stack([anchor, positive, negative], axis=1)

    def loss_of(values):
        return losses.lossless_triplet_loss(values[:, 0], values[:, 1], values[:, 2])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # d = 9 is off the sphere on purpose
        grads = gradient(loss_of, stacked)
    assert grads.shape == stacked.shape
    assert np.all(np.isfinite(grads))
    # the middle-of-the-range triplet 1 is pulled: its positive moves towards the anchor
    assert np.any(grads[1] != 0.0)


# ---- online mining: batch all and batch hard ---------------------------------------------------


def random_batch(seed: int, size: int = 12, dim: int = 4, classes: int = 4):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(size, dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = rng.integers(0, classes, size=size).astype(np.int32)
    return labels, embeddings


def brute_force_distance(embeddings, i, j) -> float:
    return float(np.sum((embeddings[i].astype(np.float64) - embeddings[j]) ** 2))


def brute_force_batch_all(labels, embeddings, margin) -> float:
    positive_losses = []
    for a, p, n in itertools.product(range(len(labels)), repeat=3):
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]:
            value = (
                brute_force_distance(embeddings, a, p)
                - brute_force_distance(embeddings, a, n)
                + margin
            )
            if value > 0:
                positive_losses.append(value)
    return float(np.mean(positive_losses)) if positive_losses else 0.0


def brute_force_batch_hard(labels, embeddings, margin) -> float:
    """On Euclidean distances (Hermans et al. 2017), where batch-all is on squared ones."""
    anchor_losses = []
    for a in range(len(labels)):
        positives = [
            np.sqrt(brute_force_distance(embeddings, a, p))
            for p in range(len(labels))
            if p != a and labels[p] == labels[a]
        ]
        negatives = [
            np.sqrt(brute_force_distance(embeddings, a, n))
            for n in range(len(labels))
            if labels[n] != labels[a]
        ]
        if positives and negatives:
            anchor_losses.append(max(max(positives) - min(negatives) + margin, 0.0))
    return float(np.mean(anchor_losses)) if anchor_losses else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_batch_all_matches_brute_force(seed, margin):
    labels, embeddings = random_batch(seed)
    expected = brute_force_batch_all(labels, embeddings, margin)
    assert expected > 0
    value = float(losses.batch_all_triplet_loss(labels, embeddings, margin=margin))
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_batch_hard_matches_brute_force(seed, margin):
    labels, embeddings = random_batch(seed)
    expected = brute_force_batch_hard(labels, embeddings, margin)
    assert expected > 0
    value = float(losses.batch_hard_triplet_loss(labels, embeddings, margin=margin))
    assert value == pytest.approx(expected, rel=1e-5)


def test_batch_hard_ignores_anchors_without_a_positive():
    # Anchor 2 is the only one of its label: batch hard averages over anchors 0 and 1 only.
    # 1-D embeddings 0, 1, 3: Euclidean d(0,1) = 1, d(0,2) = 3, d(1,2) = 2; margin 0.5
    # anchor 0: max(1 - 3 + 0.5, 0) = 0; anchor 1: max(1 - 2 + 0.5, 0) = 0 -> 0.
    labels = np.array([7, 7, 8])
    embeddings = np.array([[0.0], [1.0], [3.0]], dtype=np.float32)
    assert float(losses.batch_hard_triplet_loss(labels, embeddings, margin=0.5)) == 0.0
    # margin 1.5: anchor 0: 1 - 3 + 1.5 = -0.5 -> 0; anchor 1: 1 - 2 + 1.5 = 0.5 -> mean 0.25
    assert float(losses.batch_hard_triplet_loss(labels, embeddings, margin=1.5)) == pytest.approx(
        0.25
    )
    # batch all on squared distances (1, 9, 4), margin 8.5: triplets (0,1,2) 0.5 and (1,0,2)
    # 5.5 -> mean 3.0
    assert float(losses.batch_all_triplet_loss(labels, embeddings, margin=8.5)) == pytest.approx(
        3.0
    )


@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 3]])
def test_online_losses_are_zero_without_valid_triplets(labels):
    _, embeddings = random_batch(0, size=4)
    assert float(losses.batch_all_triplet_loss(np.array(labels), embeddings)) == 0.0
    assert float(losses.batch_hard_triplet_loss(np.array(labels), embeddings)) == 0.0


def test_pairwise_distances_are_the_square_roots_with_a_zero_diagonal():
    embeddings = np.random.default_rng(4).normal(size=(5, 3)).astype(np.float32)
    expected = np.sqrt(((embeddings[:, None, :].astype(np.float64) - embeddings[None]) ** 2).sum(-1))
    distances = as_numpy(losses.pairwise_distances(embeddings))
    np.testing.assert_allclose(distances, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.diag(distances) == 0.0)


def test_pairwise_squared_distances_are_exact_and_never_negative():
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(5, 3)).astype(np.float32)
    expected = ((embeddings[:, None, :].astype(np.float64) - embeddings[None, :, :]) ** 2).sum(-1)
    distances = as_numpy(losses.pairwise_squared_distances(embeddings))
    np.testing.assert_allclose(distances, expected, rtol=1e-5, atol=1e-5)
    # duplicated rows: |x|^2 - 2 x.y + |y|^2 rounds to about -4e-6 for some seeds without the clip
    for seed in range(10):
        duplicated = np.random.default_rng(seed).normal(size=(4, 16)).astype(np.float32)
        duplicated[1] = duplicated[0]
        duplicated_distances = as_numpy(losses.pairwise_squared_distances(duplicated))
        assert np.all(duplicated_distances >= 0.0)
        assert duplicated_distances[0, 1] < 1e-5
        assert np.all(np.diag(duplicated_distances) == 0.0)


@pytest.mark.parametrize(
    "function", [losses.batch_all_triplet_loss, losses.batch_hard_triplet_loss]
)
def test_online_gradients_are_finite_with_duplicate_embeddings(function):
    labels, embeddings = random_batch(4, size=8, classes=2)
    embeddings[1] = embeddings[0]  # a zero distance: finite gradient (batch-hard's square root too)
    grads = gradient(lambda values: function(labels, values, margin=0.5), embeddings)
    assert np.all(np.isfinite(grads))
    assert np.any(grads != 0.0)


@pytest.mark.parametrize("loss_class", [losses.BatchAllTripletLoss, losses.BatchHardTripletLoss])
def test_online_losses_compile_with_an_unknown_batch_size(loss_class):
    labels, embeddings = random_batch(6, size=9, dim=6, classes=3)
    loss = loss_class(margin=0.3)
    eager = float(loss(labels.astype(np.float32), embeddings))
    value = compiled(loss, y_pred_ndim=2)(labels.astype(np.float32), embeddings)
    assert float(value) == pytest.approx(eager, rel=1e-5)


def test_online_losses_reject_mismatched_labels():
    labels, embeddings = random_batch(0, size=6)
    with pytest.raises(ValueError, match="one label per embedding"):
        losses.batch_all_triplet_loss(labels[:5], embeddings)
    with pytest.raises(ValueError, match="one label per embedding"):
        losses.batch_hard_triplet_loss(labels[:5], embeddings)


# ---- Keras Loss classes -------------------------------------------------------------------------


def test_loss_classes_wrap_the_functions():
    anchor, positive, negative = triplets_with_distances([1.2, 1.0, 1.0], [2.4, 1.1, 0.5])
    stacked = np.stack([anchor, positive, negative], axis=1)
    dummy = np.zeros(len(stacked), dtype=np.float32)
    assert float(losses.TripletLoss(margin=0.2)(dummy, stacked)) == pytest.approx(0.8 / 3, abs=1e-6)
    expected_lossless = float(losses.lossless_triplet_loss(anchor, positive, negative))
    assert float(losses.LosslessTripletLoss()(dummy, stacked)) == pytest.approx(expected_lossless)

    labels, embeddings = random_batch(5)
    assert float(losses.BatchAllTripletLoss(margin=0.3)(labels, embeddings)) == pytest.approx(
        brute_force_batch_all(labels, embeddings, 0.3), rel=1e-5
    )
    assert float(losses.BatchHardTripletLoss(margin=0.3)(labels, embeddings)) == pytest.approx(
        brute_force_batch_hard(labels, embeddings, 0.3), rel=1e-5
    )


def test_triplet_loss_classes_reject_unstacked_predictions():
    _, embeddings = random_batch(0)
    with pytest.raises(ValueError, match=r"\(B, 3, D\)"):
        losses.TripletLoss()(np.zeros(12), embeddings)
    with pytest.raises(ValueError, match=r"\(B, 3, D\)"):
        losses.LosslessTripletLoss()(np.zeros(4), embeddings.reshape(4, 3, 4)[:, :2])


@pytest.mark.parametrize(
    ("loss", "attribute", "value"),
    [
        (losses.TripletLoss(margin=0.3), "margin", 0.3),
        (losses.LosslessTripletLoss(beta=3.0, max_distance=3.0), "beta", 3.0),
        (losses.BatchAllTripletLoss(margin=0.4), "margin", 0.4),
        (losses.BatchHardTripletLoss(margin=0.5), "margin", 0.5),
    ],
)
def test_loss_classes_survive_keras_serialization(loss, attribute, value):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert getattr(restored, attribute) == value
    assert restored.name == loss.name


def test_losses_mapping_names_every_class():
    assert losses.LOSSES == {
        "triplet": losses.TripletLoss,
        "lossless": losses.LosslessTripletLoss,
        "batch-all": losses.BatchAllTripletLoss,
        "batch-hard": losses.BatchHardTripletLoss,
    }


@pytest.mark.parametrize("function", [losses.batch_hard_triplet_loss,
                                      losses.batch_all_triplet_loss])  # fmt: skip
def test_online_losses_of_an_empty_batch_are_zero(function):
    empty = np.zeros((0, 4), dtype=np.float32)
    assert float(function(np.zeros(0, dtype=np.int32), empty)) == 0.0
