"""The identity-classification warm start of the from-scratch profiles (tripletlib.pretraining)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tripletlib import pretraining
from tripletlib.pretraining import pretrain_by_identity
from tripletlib.sampling import IdentityBatches


def coloured_people(identities: int = 4, per_identity: int = 6, seed: int = 0):
    """Images whose identity is their colour (plus noise): trivially separable."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(identities, 3))
    person_ids = np.repeat(np.arange(1, identities + 1) * 7, per_identity)
    images = colours[person_ids // 7 - 1][:, None, None, :] + rng.normal(
        0, 8, (len(person_ids), 8, 4, 3)
    )
    return np.clip(images, 0, 255).astype(np.uint8), person_ids


def tiny_embedder() -> keras.Model:
    images = keras.Input((8, 4, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
    x = keras.layers.Dense(8, activation="relu")(x)
    x = keras.layers.Dense(4, name=pretraining.CLASSIFIER_FEATURES_LAYER)(x)
    return keras.Model(images, keras.layers.UnitNormalization()(x))


def test_identity_batches_are_seeded_distinct_rows_and_dense_labels():
    images, person_ids = coloured_people()
    batches = IdentityBatches(images, person_ids, batch_size=10, steps=3, seed=5)
    assert len(batches) == 3 and list(batches.identities) == [7, 14, 21, 28]
    pixels, labels = batches[1]
    assert pixels.shape == (10, 8, 4, 3) and pixels.dtype == np.float32
    assert labels.dtype == np.int32 and set(labels) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(pixels, IdentityBatches(images, person_ids, 10, 3, 5)[1][0])
    assert not np.array_equal(pixels, batches[2][0])
    # distinct images within a batch: each image's label matches its colour's identity
    rows = [
        int(np.flatnonzero((images == p.astype(np.uint8)).all(axis=(1, 2, 3)))[0]) for p in pixels
    ]
    assert len(set(rows)) == 10
    np.testing.assert_array_equal(np.searchsorted(batches.identities, person_ids[rows]), labels)


def test_batch_size_is_capped_by_the_number_of_images():
    images, person_ids = coloured_people(identities=2, per_identity=3)
    assert IdentityBatches(images, person_ids, batch_size=64, steps=1, seed=0)[0][0].shape[0] == 6


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"steps": 1.5}, "steps"),
        ({"person_ids": np.ones(24, np.int64)}, "at least 2 identities"),
        ({"person_ids": np.arange(5)}, "one person id per image"),
    ],
)
def test_bad_arguments_name_the_problem(changes, message):
    images, person_ids = coloured_people()
    arguments = {"images": images, "person_ids": person_ids, "batch_size": 8, "steps": 2, "seed": 0}
    with pytest.raises(ValueError, match=message):
        IdentityBatches(**{**arguments, **changes})


def test_pretraining_learns_to_tell_identities_apart():
    images, person_ids = coloured_people(identities=4, per_identity=8)
    keras.utils.set_random_seed(0)
    embedder = tiny_embedder()
    before = [w.copy() for w in embedder.get_weights()]
    record = pretrain_by_identity(
        embedder, images, person_ids, steps=150, batch_size=16, learning_rate=1e-2, seed=0
    )
    assert record["steps"] == 150 and record["batch_size"] == 16 and record["identities"] == 4
    # Means over all steps; chance is a loss of ln 4 = 1.39 and an accuracy of 0.25.
    assert record["loss"] < 1.0 and record["accuracy"] > 0.5
    assert any(not np.allclose(a, b) for a, b in zip(before, embedder.get_weights(), strict=True))
    # The embedder itself, not a copy, was trained: its embeddings now separate the identities.
    embeddings = np.asarray(embedder.predict_on_batch(images.astype(np.float32)))
    distances = ((embeddings[:, None] - embeddings[None]) ** 2).sum(-1)
    same = person_ids[:, None] == person_ids[None]
    assert distances[same].mean() < distances[~same].mean()


def test_the_embedder_needs_the_named_features_layer():
    images, person_ids = coloured_people()
    inputs = keras.Input((8, 4, 3))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match=pretraining.CLASSIFIER_FEATURES_LAYER):
        pretrain_by_identity(model, images, person_ids, steps=1)
