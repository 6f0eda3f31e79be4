"""The label-free start (tripletlib.selfsupervised): the NT-Xent loss against hand-derived values,
two views per image, and a few steps of instance discrimination that move the loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tripletlib import augment, models, sampling, selfsupervised


def _reference_nt_xent(z: np.ndarray, temperature: float) -> float:
    count = len(z)
    half = count // 2
    similarity = z @ z.T / temperature
    total = 0.0
    for i in range(count):
        positive = (i + half) % count
        others = [j for j in range(count) if j != i]
        total += -similarity[i, positive] + np.log(np.sum(np.exp(similarity[i, others])))
    return total / count


def test_nt_xent_matches_the_formula():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 5))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    loss = float(selfsupervised.nt_xent_loss(z.astype("float32"), temperature=0.5))
    assert loss == pytest.approx(_reference_nt_xent(z, 0.5), rel=1e-5)


def test_nt_xent_is_low_when_views_agree_and_high_when_they_do_not():
    eye = np.eye(4, dtype="float32")
    agree = np.concatenate([eye, eye])  # each image's two views identical, images orthogonal
    disagree = np.concatenate([eye, np.roll(eye, 1, axis=0)])
    low = float(selfsupervised.nt_xent_loss(agree, 0.1))
    high = float(selfsupervised.nt_xent_loss(disagree, 0.1))
    assert low < 0.01 < 5.0 < high


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature"):
        selfsupervised.NTXentLoss(temperature=0)


def test_two_views_are_two_different_draws_of_each_image():
    images = np.random.default_rng(1).uniform(0, 255, size=(3, 16, 8, 3)).astype("float32")
    views = selfsupervised.TwoViews(augment.build_augmentation(seed=3))(images, training=True)
    views = keras.ops.convert_to_numpy(views)
    assert views.shape == (6, 16, 8, 3)
    assert not np.allclose(views[:3], views[3:])
    inference = keras.ops.convert_to_numpy(
        selfsupervised.TwoViews(augment.build_augmentation(seed=3))(images)
    )
    np.testing.assert_allclose(inference, np.concatenate([images, images]))


def test_image_batches_are_a_function_of_seed_and_index():
    images = np.arange(10 * 4 * 2 * 3, dtype=np.uint8).reshape(10, 4, 2, 3)
    first = sampling.ImageBatches(images, batch_size=4, steps=3, seed=5)
    again = sampling.ImageBatches(images, batch_size=4, steps=3, seed=5)
    other = sampling.ImageBatches(images, batch_size=4, steps=3, seed=6)
    assert len(first) == 3
    batch, targets = first[1]
    assert batch.shape == (4, 4, 2, 3) and batch.dtype == np.float32 and not targets.any()
    np.testing.assert_array_equal(batch, again[1][0])
    assert not np.array_equal(batch, other[1][0])
    assert len({tuple(row.ravel()[:1]) for row in batch}) == 4  # distinct images


@pytest.mark.parametrize(
    ("arguments", "named"),
    [({"batch_size": 0}, "batch_size"), ({"steps": 0}, "steps"), ({"seed": -1}, "seed")],
)
def test_image_batches_name_a_bad_value(arguments, named):
    values = {"batch_size": 2, "steps": 1, "seed": 0, **arguments}
    with pytest.raises(ValueError, match=named):
        sampling.ImageBatches(np.zeros((4, 4, 2, 3), np.uint8), **values)


def test_instance_discrimination_trains_without_labels():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(32, 64, 32, 3)).astype("float32")
    embedder = models.build_embedder(
        "resnet50", input_shape=(64, 32, 3), width=0.125, input_normalization="per-image",
        freeze_layers=0, batchnorm_momentum=0.9,
    )  # fmt: skip
    before = embedder.get_weights()
    record = selfsupervised.train_instance_discrimination(
        embedder, images, steps=3, augmentation=augment.build_augmentation(seed=0),
        batch_size=8, learning_rate=1e-3, warmup_steps=1, seed=0,
    )  # fmt: skip
    assert record["steps"] == 3 and record["images"] == 32 and record["batch_size"] == 8
    assert np.isfinite(record["loss"]) and record["loss"] > 0
    assert any(not np.allclose(a, b) for a, b in zip(before, embedder.get_weights(), strict=True))
