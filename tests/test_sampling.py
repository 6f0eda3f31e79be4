"""Tests for tripletlib.sampling: triplet and PK batch samplers, triplet categories."""

import math

import keras
import numpy as np
import pytest

from tripletlib.sampling import (
    LOADER_WORKERS,
    DeviceTripletDataset,
    FixedEpoch,
    ImageBatches,
    PKDataset,
    TripletDataset,
    classify_triplets,
    loader_workers,
)

# Identities 1-5: 6 images each over cameras 1, 2, 3 (two per camera).
# Identity 6: 3 images, all from camera 4 (single-camera rule).
# Identity 7: a single image (never an anchor, can be a negative).
PERSON_IDS = np.array([pid for pid in range(1, 6) for _ in range(6)] + [6, 6, 6, 7])
CAMERA_IDS = np.array([cam for _ in range(1, 6) for cam in (1, 1, 2, 2, 3, 3)] + [4, 4, 4, 2])
SINGLE_CAMERA_ID = 6
SINGLE_IMAGE_ROW = len(PERSON_IDS) - 1


def row_images(count: int, height: int = 4, width: int = 2) -> np.ndarray:
    """Tiny uint8 images whose every pixel holds the row number, so batches can be traced."""
    return np.broadcast_to(
        np.arange(count, dtype=np.uint8)[:, None, None, None], (count, height, width, 3)
    ).copy()


def make_triplets(**kwargs) -> TripletDataset:
    return TripletDataset(row_images(len(PERSON_IDS)), PERSON_IDS, CAMERA_IDS, **kwargs)


def all_triplets(dataset: TripletDataset) -> np.ndarray:
    return np.concatenate([dataset.triplet_indices(i) for i in range(len(dataset))])


def test_triplet_rules_hold_for_every_triplet():
    dataset = make_triplets(batch_size=8, steps_per_epoch=40, seed=3)
    for epoch in range(2):
        dataset.set_epoch(epoch)
        triplets = all_triplets(dataset)
        anchor, positive, negative = triplets.T
        assert np.all(PERSON_IDS[positive] == PERSON_IDS[anchor])
        assert np.all(positive != anchor)
        assert np.all(PERSON_IDS[negative] != PERSON_IDS[anchor])
        multi_camera = PERSON_IDS[anchor] != SINGLE_CAMERA_ID
        assert multi_camera.sum() > 0
        assert np.all(CAMERA_IDS[positive][multi_camera] != CAMERA_IDS[anchor][multi_camera])


def test_single_camera_and_single_image_rules():
    triplets = all_triplets(make_triplets(batch_size=8, steps_per_epoch=100, seed=0))
    anchor, positive, negative = triplets.T
    single_camera = PERSON_IDS[anchor] == SINGLE_CAMERA_ID
    assert single_camera.sum() > 0
    # Another image of the same identity from the same (only) camera.
    assert np.all(CAMERA_IDS[positive][single_camera] == CAMERA_IDS[anchor][single_camera])
    assert np.all(positive[single_camera] != anchor[single_camera])
    assert SINGLE_IMAGE_ROW not in anchor
    assert SINGLE_IMAGE_ROW not in positive
    assert SINGLE_IMAGE_ROW in negative


def test_every_candidate_can_be_drawn():
    triplets = all_triplets(make_triplets(batch_size=8, steps_per_epoch=200, seed=1))
    anchor, positive, negative = triplets.T
    # Row 0 (identity 1, camera 1): positives are the 4 rows of identity 1 on cameras 2 and 3.
    assert set(positive[anchor == 0].tolist()) == {2, 3, 4, 5}
    # Negatives of identity-1 anchors: every image of another identity (rows 6..33).
    assert set(negative[PERSON_IDS[anchor] == 1].tolist()) == set(range(6, len(PERSON_IDS)))
    # Anchors: every image of an identity with two or more images.
    assert set(anchor.tolist()) == set(range(len(PERSON_IDS) - 1))


def test_getitem_returns_float_pixels_of_the_triplet_rows():
    dataset = make_triplets(batch_size=5, seed=0)
    (anchor, positive, negative), target = dataset[1]
    rows = dataset.triplet_indices(1)
    for pixels, column in ((anchor, 0), (positive, 1), (negative, 2)):
        assert pixels.shape == (5, 4, 2, 3)
        assert pixels.dtype == np.float32
        np.testing.assert_array_equal(pixels[:, 0, 0, 0], rows[:, column].astype(np.float32))
    assert target.dtype == np.float32
    np.testing.assert_array_equal(target, np.zeros(5))


def test_length_defaults_to_images_over_batch_size():
    assert len(make_triplets(batch_size=8)) == math.ceil(34 / 8) == 5
    assert len(make_triplets(batch_size=8, steps_per_epoch=3)) == 3
    with pytest.raises(IndexError):
        make_triplets(batch_size=8).triplet_indices(5)


def test_batches_depend_only_on_seed_epoch_and_index():
    first = make_triplets(batch_size=8, seed=7)
    second = make_triplets(batch_size=8, seed=7)
    np.testing.assert_array_equal(first.triplet_indices(2), second.triplet_indices(2))
    np.testing.assert_array_equal(first.triplet_indices(2), first.triplet_indices(2))
    other_seed = make_triplets(batch_size=8, seed=8)
    assert not np.array_equal(first.triplet_indices(2), other_seed.triplet_indices(2))
    epoch_zero = first.triplet_indices(2)
    first.on_epoch_end()
    assert first.epoch == 1
    epoch_one = first.triplet_indices(2)
    assert not np.array_equal(epoch_zero, epoch_one)
    second.set_epoch(1)  # resuming at epoch 1 reproduces its batches
    np.testing.assert_array_equal(second.triplet_indices(2), epoch_one)


def test_hard_fraction_sets_the_number_of_hard_triplets():
    # Hard negatives of anchors 0 and 6 (identities 1 and 2): rows of identity 5 only.
    hard_negatives = {0: np.array([24, 25]), 6: np.array([26])}
    dataset = make_triplets(
        batch_size=10, steps_per_epoch=30, seed=0, hard_negatives=hard_negatives, hard_fraction=0.3
    )
    assert dataset.hard_per_batch == 3  # floor(0.3 * 10 + 0.5)
    for index in range(len(dataset)):
        anchor, positive, negative = dataset.triplet_indices(index).T
        assert set(anchor[:3].tolist()) <= {0, 6}
        for a, n in zip(anchor[:3], negative[:3], strict=True):
            assert n in hard_negatives[int(a)]
        assert np.all(PERSON_IDS[positive] == PERSON_IDS[anchor])
        multi_camera = PERSON_IDS[anchor] != SINGLE_CAMERA_ID
        assert np.all(CAMERA_IDS[positive][multi_camera] != CAMERA_IDS[anchor][multi_camera])
    # The random 70 % still reaches every anchor, not only the hard ones.
    triplets = all_triplets(dataset)
    assert len(set(triplets[:, 0].tolist())) == len(PERSON_IDS) - 1
    from_lists = [int(n) in hard_negatives.get(int(a), []) for a, _, n in triplets]
    # 90 hard triplets by construction; a random one rarely hits a hard list by chance.
    assert 90 <= sum(from_lists) <= 95


def test_hard_fraction_one_gives_only_hard_triplets():
    dataset = make_triplets(
        batch_size=4, seed=0, hard_negatives={12: np.array([0, 1])}, hard_fraction=1.0
    )
    anchor, _, negative = all_triplets(dataset).T
    assert set(anchor.tolist()) == {12}
    assert set(negative.tolist()) <= {0, 1}


def test_hard_anchor_without_positive_is_skipped_with_a_warning():
    hard_negatives = {SINGLE_IMAGE_ROW: np.array([0]), 12: np.array([0, 1])}
    with pytest.warns(UserWarning, match="skipped 1 anchor rows"):
        dataset = make_triplets(batch_size=4, hard_negatives=hard_negatives, hard_fraction=1.0)
    assert dataset.skipped_hard_anchor_rows.tolist() == [SINGLE_IMAGE_ROW]
    assert set(all_triplets(dataset)[:, 0].tolist()) == {12}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hard_fraction": 0.3}, "no hard_negatives"),
        ({"hard_negatives": {0: np.array([10])}}, "hard_fraction is 0.0"),
        ({"hard_negatives": {0: np.array([1])}, "hard_fraction": 0.5}, "own identity"),
        ({"hard_negatives": {0: np.array([], dtype=int)}, "hard_fraction": 0.5}, "non-empty"),
        ({"hard_negatives": {0: np.array([99])}, "hard_fraction": 0.5}, "outside"),
        ({"hard_negatives": {SINGLE_IMAGE_ROW: np.array([0])}, "hard_fraction": 0.5}, "usable"),
        ({"hard_negatives": {-1: np.array([0])}, "hard_fraction": 0.5}, "not a row"),
        ({"hard_negatives": {0: np.array([10])}, "hard_fraction": 0.01}, "rounds to 0"),
        ({"hard_fraction": 1.5}, r"\[0, 1\]"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -1}, "seed"),
    ],
)
@pytest.mark.filterwarnings("ignore:hard_negatives. skipped")
def test_triplet_dataset_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_triplets(**kwargs)


def test_triplet_dataset_rejects_bad_arrays():
    images = row_images(len(PERSON_IDS))
    with pytest.raises(ValueError, match="camera_ids has 33 entries"):
        TripletDataset(images, PERSON_IDS, CAMERA_IDS[:-1])
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        TripletDataset(images[..., 0], PERSON_IDS, CAMERA_IDS)
    for junk in (-1, 0):
        person_ids = PERSON_IDS.copy()
        person_ids[3] = junk
        with pytest.raises(ValueError, match=f"row 3: {junk}"):
            TripletDataset(images, person_ids, CAMERA_IDS)
    with pytest.raises(ValueError, match="integers"):
        TripletDataset(images, PERSON_IDS.astype(float), CAMERA_IDS)


def test_no_valid_triplet_raises():
    with pytest.raises(ValueError, match="single image"):
        TripletDataset(row_images(3), [1, 2, 3], [1, 1, 1])
    with pytest.raises(ValueError, match="one identity"):
        TripletDataset(row_images(3), [4, 4, 4], [1, 2, 3])


def test_fit_reads_the_same_epochs_when_resumed():
    """Keras calls on_epoch_end once before the first epoch; resuming must match anyway.

    Under JAX Keras also reads one batch before that on_epoch_end (to build the model); with
    worker threads its enqueuer would then serve stale batches in every epoch (sampling.py,
    `loader_workers`), and the resumed epoch would differ from the uninterrupted one.
    """

    def epoch_losses(initial_epoch: int) -> list[float]:
        dataset = make_triplets(batch_size=8, seed=5)
        dataset.set_epoch(initial_epoch)
        inputs = [keras.Input((4, 2, 3)) for _ in range(3)]
        dense = keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)
        outputs = keras.ops.stack([dense(keras.layers.Flatten()(x)) for x in inputs], axis=1)
        model = keras.Model(inputs, outputs)
        # Learning rate 0: the loss is the mean pixel sum of the batches that were read.
        model.compile(keras.optimizers.SGD(0.0), lambda y, p: keras.ops.mean(p))
        history = model.fit(dataset, epochs=3, initial_epoch=initial_epoch, verbose=0)
        return history.history["loss"]

    fresh = epoch_losses(0)
    resumed = epoch_losses(2)
    assert len(resumed) == 1
    assert resumed[0] == pytest.approx(fresh[2], rel=1e-6)
    assert fresh[0] != pytest.approx(fresh[1], rel=1e-6)


def test_device_resident_batches_equal_the_plain_batches_epoch_by_epoch():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(12, 8, 4, 3), dtype=np.uint8)
    person_ids = np.repeat([1, 2, 3], 4)
    camera_ids = np.tile([1, 2], 6)
    plain = TripletDataset(pixels, person_ids, camera_ids, batch_size=5, steps_per_epoch=3, seed=7)
    device = DeviceTripletDataset(
        TripletDataset(pixels, person_ids, camera_ids, batch_size=5, steps_per_epoch=3, seed=7)
    )
    assert len(device) == 3 and device.workers == loader_workers()
    for epoch in range(2):
        assert device.triplets.epoch == plain.epoch == epoch
        for index in range(3):
            (anchor, positive, negative), targets = device[index]
            (plain_a, plain_p, plain_n), plain_targets = plain[index]
            for gathered, expected in ((anchor, plain_a), (positive, plain_p), (negative, plain_n)):
                gathered = keras.ops.convert_to_numpy(gathered)
                assert gathered.dtype == np.float32 and gathered.shape == (5, 8, 4, 3)
                np.testing.assert_array_equal(gathered, expected)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(targets), plain_targets)
        device.on_epoch_end()
        plain.on_epoch_end()
    device.set_epoch(0)
    assert device.triplets.epoch == 0
    with pytest.raises(ValueError, match="shape"):
        DeviceTripletDataset(plain, keras.ops.convert_to_tensor(pixels[:6]))
    with pytest.raises(ValueError, match="TripletDataset"):
        DeviceTripletDataset(PKDataset(pixels, person_ids, p=2, k=2))


def test_keras_reads_the_datasets_with_worker_threads_and_no_tf_data_autotuning():
    """With one worker Keras adds tf.data's prefetch(AUTOTUNE), whose autotuning thread makes the
    end of `fit` wait up to 60 s (sampling.LOADER_WORKERS); with more, Keras turns it off. Only
    under TensorFlow: elsewhere one worker, no enqueuer (sampling.loader_workers)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    images = row_images(len(PERSON_IDS))
    datasets = {
        "TripletDataset": make_triplets(batch_size=8),
        "PKDataset": PKDataset(images, PERSON_IDS, p=2, k=2, steps_per_epoch=3),
        "ImageBatches": ImageBatches(images, batch_size=4, steps=3, seed=0),
        "validation batches": FixedEpoch(make_triplets(batch_size=8)),
    }
    tensorflow = keras.backend.backend() == "tensorflow"
    assert LOADER_WORKERS > 1
    assert loader_workers() == (LOADER_WORKERS if tensorflow else 1)
    for name, dataset in datasets.items():
        assert dataset.workers == loader_workers(), name
        adapter = PyDatasetAdapter(dataset)
        assert (adapter.enqueuer is not None) is tensorflow, name
        if tensorflow:
            assert adapter.get_tf_dataset().options().autotune.enabled is False, name
    assert TripletDataset(images, PERSON_IDS, CAMERA_IDS, workers=1).workers == 1


def test_pk_batches_hold_p_identities_of_k_images():
    person_ids = np.repeat(np.arange(1, 7), [5, 5, 5, 5, 2, 1])
    dataset = PKDataset(row_images(len(person_ids)), person_ids, p=3, k=4, seed=0)
    assert len(dataset) == math.ceil(23 / 12)
    for epoch in range(5):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            rows = dataset.batch_indices(index)
            labels = person_ids[rows].reshape(3, 4)
            assert len(set(labels[:, 0].tolist())) == 3
            assert np.all(labels == labels[:, :1])
            for block in rows.reshape(3, 4):
                available = np.flatnonzero(person_ids == person_ids[block[0]])
                if len(available) >= 4:
                    assert len(set(block.tolist())) == 4
                else:  # all images, topped up with repeats
                    assert set(block.tolist()) == set(available.tolist())
    images, labels = dataset[0]
    assert images.shape == (12, 4, 2, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(images[:, 0, 0, 0], dataset.batch_indices(0))
    np.testing.assert_array_equal(labels, person_ids[dataset.batch_indices(0)])


def test_pk_batches_are_reproducible_and_change_with_seed_and_epoch():
    person_ids = np.repeat(np.arange(1, 11), 6)
    images = row_images(len(person_ids))
    first = PKDataset(images, person_ids, p=4, k=3, seed=1)
    same = PKDataset(images, person_ids, p=4, k=3, seed=1)
    other = PKDataset(images, person_ids, p=4, k=3, seed=2)
    np.testing.assert_array_equal(first.batch_indices(0), same.batch_indices(0))
    assert not np.array_equal(first.batch_indices(0), other.batch_indices(0))
    before = first.batch_indices(0)
    first.on_epoch_end()
    assert not np.array_equal(before, first.batch_indices(0))


def test_pk_dataset_rejects_bad_input():
    person_ids = np.repeat(np.arange(1, 4), 4)
    images = row_images(len(person_ids))
    with pytest.raises(ValueError, match="larger than the 3 identities"):
        PKDataset(images, person_ids, p=4, k=2)
    with pytest.raises(ValueError, match="at least 2"):
        PKDataset(images, person_ids, p=1, k=2)
    with pytest.raises(ValueError, match="person_ids has 11 entries"):
        PKDataset(images, person_ids[:-1], p=2, k=2)
    junk = person_ids.copy()
    junk[0] = -1
    with pytest.raises(ValueError, match="junk"):
        PKDataset(images, junk, p=2, k=2)


def test_classify_triplets_hand_values():
    d_ap = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    d_an = np.array([2.0, 1.25, 0.75, 1.0, 1.5, 0.0])
    labels = classify_triplets(d_ap, d_an, margin=0.5)
    # Section 3.2.3: semi-hard is strictly d(a,p) < d(a,n) < d(a,p) + margin; a tie d(a,n) = d(a,p)
    # is hard, d(a,n) = d(a,p) + margin easy (zero loss).
    assert labels.tolist() == ["easy", "semi-hard", "hard", "hard", "easy", "hard"]
    assert classify_triplets(1.0, [0.5, 3.0], margin=0.5).tolist() == ["hard", "easy"]


def test_one_triplet_difficulty_rule_for_figures_and_counts():
    # d(a,p) = 1.0, margin 0.2: d(a,n) >= 1.2 easy, 1.0 < d(a,n) < 1.2 semi-hard, <= 1.0 hard
    labels = classify_triplets([1.0] * 5, [2.4, 1.2, 1.1, 1.0, 0.5], margin=0.2)
    assert labels.tolist() == ["easy", "easy", "semi-hard", "hard", "hard"]


def test_classify_triplets_rejects_bad_input():
    with pytest.raises(ValueError, match="margin"):
        classify_triplets([1.0], [2.0], margin=-0.1)
    with pytest.raises(ValueError, match="finite"):
        classify_triplets([np.nan], [2.0], margin=0.2)
    with pytest.raises(ValueError, match="broadcast"):
        classify_triplets([1.0, 2.0], [1.0, 2.0, 3.0], margin=0.2)


def test_classify_triplets_a_tie_is_hard_at_margin_zero_too():
    assert classify_triplets([1.0, 1.0], [1.0, 1.5], margin=0.0).tolist() == ["hard", "easy"]
