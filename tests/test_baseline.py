"""The hand-crafted colour baseline: hand-derived histograms, invariances, the metrics it returns."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tripletlib import baseline


def _flat(colour, height=64, width=32, count=1):
    return np.broadcast_to(np.array(colour, np.uint8), (count, height, width, 3)).copy()


def _person(top, bottom, background=(90, 90, 90)):
    """A 64x32 image: a background and a centred 'person' with a top and a bottom colour."""
    image = _flat(background)[0]
    image[8:32, 10:22] = top
    image[32:58, 11:21] = bottom
    return image


def test_flat_colour_has_the_hand_derived_histogram():
    # Grey world maps every channel of a flat image to 1.0; with value_range 2 and 4 bins the bin
    # centres are 0.25, 0.75, 1.25, 1.75, so 1.0 sits half-way between bins 1 and 2 of each
    # channel: 8 joint cells get 1/8 of each stripe. Sum 1 over 2 stripes -> 1/16 per cell,
    # square root 1/4, and 16 cells of 1/4 already have unit norm.
    descriptor = baseline.describe(
        _flat((200, 30, 120)), stripes=2, bins=4, value_range=2.0, centre_sigma=None
    )
    expected = np.zeros((1, 2 * 64), np.float32)
    for stripe in range(2):
        for red in (1, 2):
            for green in (1, 2):
                for blue in (1, 2):
                    expected[0, stripe * 64 + red * 16 + green * 4 + blue] = 0.25
    np.testing.assert_allclose(descriptor, expected, atol=1e-7)


def test_flat_colours_cannot_be_told_apart_after_grey_world():
    flats = np.concatenate([_flat((200, 30, 120)), _flat((10, 250, 40)), _flat((1, 1, 1))])
    descriptors = baseline.describe(flats)
    np.testing.assert_allclose(descriptors[1:], descriptors[[0, 0]], atol=1e-6)
    raw = baseline.describe(flats, grey_world=False)
    assert np.linalg.norm(raw[0] - raw[1]) > 0.5


def test_a_colour_cast_copy_has_the_same_descriptor():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 128, size=(1, 64, 32, 3), dtype=np.uint8)
    cast = image.copy()
    cast[..., 0] *= 2  # exact in uint8: a red cast of gain 2
    brighter = image * np.uint8(2)  # all channels doubled: a brighter camera
    descriptors = baseline.describe(np.concatenate([image, cast, brighter]))
    np.testing.assert_allclose(descriptors[1], descriptors[0], atol=1e-6)
    np.testing.assert_allclose(descriptors[2], descriptors[0], atol=1e-6)


def test_two_colourings_are_farther_apart_than_an_image_and_its_cast_copy():
    person = _person(top=(200, 40, 40), bottom=(40, 40, 160))
    other = _person(top=(40, 160, 40), bottom=(200, 200, 60))
    gains = np.array([1.3, 1.0, 0.7])
    cast = np.clip(np.rint(person * gains), 0, 255).astype(np.uint8)  # rounded: nearly exact
    person_d, other_d, cast_d = baseline.describe(np.stack([person, other, cast]))
    assert np.linalg.norm(person_d - cast_d) < 0.1
    assert np.linalg.norm(person_d - other_d) > 5 * np.linalg.norm(person_d - cast_d)


def test_the_background_outside_the_crop_does_not_count():
    person = _person(top=(200, 40, 40), bottom=(40, 40, 160))
    other_background = person.copy()
    other_background[:, :4] = (255, 255, 0)  # a wall in the left 4 columns (cropped away)
    other_background[:5] = (0, 255, 255)  # and a sky in the top 5 rows (cropped away)
    descriptors = baseline.describe(np.stack([person, other_background]))
    np.testing.assert_allclose(descriptors[1], descriptors[0], atol=1e-6)


def test_shape_dtype_and_unit_norm():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5, 64, 32, 3), dtype=np.uint8)
    descriptors = baseline.describe(images)
    assert descriptors.shape == (5, baseline.descriptor_size()) == (5, 8 * 4**3)
    assert descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, rtol=1e-5)
    assert baseline.describe(images, stripes=6, bins=3).shape == (5, 6 * 27)
    assert baseline.describe(images[:0]).shape == (0, 512)
    # chunking does not change the result
    np.testing.assert_array_equal(baseline.describe(images, chunk_size=2), descriptors)
    # larger images work with the same fractions
    assert baseline.describe(rng.integers(0, 256, (2, 256, 128, 3), np.uint8)).shape == (2, 512)


@pytest.mark.parametrize(
    ("images", "options", "message"),
    [
        (np.zeros((2, 64, 32, 3), np.float32), {}, "uint8"),
        (np.zeros((64, 32, 3), np.uint8), {}, r"\(64, 32, 3\)"),
        (np.zeros((2, 64, 32, 4), np.uint8), {}, "shape"),
        (np.zeros((2, 64, 32, 3), np.uint8), {"stripes": 0}, "stripes"),
        (np.zeros((2, 64, 32, 3), np.uint8), {"bins": 1}, "bins"),
        (np.zeros((2, 64, 32, 3), np.uint8), {"vertical_crop": 0.5}, "vertical_crop"),
        (np.zeros((2, 64, 32, 3), np.uint8), {"horizontal_crop": -0.1}, "horizontal_crop"),
        (np.zeros((2, 64, 32, 3), np.uint8), {"centre_sigma": 0}, "centre_sigma"),
        (np.zeros((2, 64, 32, 3), np.uint8), {"value_range": -1}, "value_range"),
        (np.zeros((2, 64, 32, 3), np.uint8), {"chunk_size": 0}, "chunk_size"),
        (np.zeros((2, 8, 32, 3), np.uint8), {"stripes": 8}, "stripes=8"),
    ],
)
def test_bad_input_raises_a_value_error_naming_it(images, options, message):
    with pytest.raises(ValueError, match=message):
        baseline.describe(images, **options)


def _tiny_retrieval_set():
    colours = {1: ((200, 40, 40), (40, 40, 160)), 2: ((40, 160, 40), (200, 200, 60))}
    gallery_images, gallery_pids, gallery_cams = [], [], []
    for person, (top, bottom) in colours.items():
        for camera, gains in ((1, (1.0, 1.0, 1.0)), (2, (1.3, 1.0, 0.7)), (3, (0.8, 0.9, 1.2))):
            image = np.clip(np.rint(_person(top, bottom) * np.array(gains)), 0, 255)
            gallery_images.append(image.astype(np.uint8))
            gallery_pids.append(person)
            gallery_cams.append(camera)
    gallery = (np.stack(gallery_images), np.array(gallery_pids), np.array(gallery_cams))
    query = (gallery[0][[0, 3]], np.array([1, 2]), np.array([1, 1]))
    return query, gallery


def test_evaluate_baseline_finds_the_cast_copies():
    query, gallery = _tiny_retrieval_set()
    metrics = baseline.evaluate_baseline(query, gallery)
    assert set(metrics) == set(baseline.METRIC_KEYS)
    assert metrics["rank1"] == 1.0 and metrics["mAP"] == 1.0
    assert metrics["num_valid_queries"] == 2
    assert metrics["cmc"][0] == 1.0
    as_objects = baseline.evaluate_baseline(
        SimpleNamespace(images=query[0], person_ids=query[1], camera_ids=query[2]),
        SimpleNamespace(images=gallery[0], person_ids=gallery[1], camera_ids=gallery[2]),
    )
    assert as_objects == metrics


def test_evaluate_baseline_rejects_bad_splits():
    query, gallery = _tiny_retrieval_set()
    with pytest.raises(ValueError, match="query"):
        baseline.evaluate_baseline(query[0], gallery)
    with pytest.raises(ValueError, match="gallery: person_ids"):
        baseline.evaluate_baseline(query, (gallery[0], gallery[1][:-1], gallery[2]))
