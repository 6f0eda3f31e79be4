"""Tests for tripletlib.augment (Section 3.1.3); CI runs them under TensorFlow and JAX."""

import keras
import numpy as np
import pytest

from tripletlib import models
from tripletlib.augment import (
    ERASING_AREA,
    FILL_MODES,
    Augmentation,
    FusedAugmentation,
    affine_warp,
    build_augmentation,
    build_keras_augmentation,
)

STILL = {"shift": 0.0, "rotation_degrees": 0.0, "zoom": (1.0, 1.0), "flip": False}


def random_images(seed: int = 0, count: int = 4, high: float = 255.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, high, (count, 32, 16, 3)).astype("float32")


def row_ramp(height: int = 8, width: int = 4) -> np.ndarray:
    """One image whose pixel value is 10 x its row: bilinear resampling of it is exact."""
    ramp = np.arange(height, dtype="float32")[None, :, None, None] * 10.0
    return np.broadcast_to(ramp, (1, height, width, 3)).copy()


def numpy_of(parameters: dict) -> dict:
    return {name: keras.ops.convert_to_numpy(value) for name, value in parameters.items()}


def test_build_augmentation_is_one_jit_friendly_layer_with_the_thesis_ranges():
    layer = build_augmentation()
    assert isinstance(layer, FusedAugmentation) and layer.supports_jit
    assert (layer.shift, layer.rotation_degrees, layer.zoom) == (0.2, 25.0, (0.8, 1.2))
    assert layer.flip and layer.fill_mode == "nearest"
    assert (layer.colour_gain, layer.brightness, layer.erasing) == (0.0, 0.0, 0.0)


def test_shape_and_dtype_are_kept_and_pixels_change_in_training():
    images = random_images()
    augmented = np.asarray(build_augmentation(seed=0)(images, training=True))
    assert augmented.shape == images.shape
    assert augmented.dtype == np.float32
    assert np.abs(augmented - images).mean() > 1.0


def test_identity_at_inference_including_the_default_call():
    images = random_images()
    augmentation = build_augmentation(seed=0, colour_gain=0.2, brightness=0.2, erasing=0.5)
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=False)), images)
    np.testing.assert_array_equal(np.asarray(augmentation(images)), images)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_the_warp_equals_keras_affine_transform_with_the_same_matrix(fill_mode):
    if fill_mode == "wrap" and keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's native op wraps the coordinate, JAX / scipy each neighbour")
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (5, 16, 8, 3)).astype("float32")
    transforms = np.zeros((5, 8), dtype="float32")
    transforms[:, [0, 4]] = rng.uniform(0.6, 1.4, (5, 2))  # scale
    transforms[:, [1, 3]] = rng.uniform(-0.5, 0.5, (5, 2))  # rotation / shear
    transforms[:, [2, 5]] = rng.uniform(-6, 6, (5, 2))  # shift: some pixels fall outside
    expected = keras.ops.image.affine_transform(images, transforms, "bilinear", fill_mode)
    actual = affine_warp(images, transforms, fill_mode)
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=1e-4)


def test_a_training_call_is_the_warp_of_its_drawn_parameters():
    images = random_images(count=6)
    drawn = FusedAugmentation(seed=5)
    parameters = drawn.draw_parameters(6, 32, 16)
    transforms = FusedAugmentation.transforms(parameters, 32, 16)
    expected = keras.ops.image.affine_transform(images, transforms, "bilinear", "nearest")
    actual = FusedAugmentation(seed=5)(images, training=True)  # same seed: the same draws
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=1e-4)


def test_draws_are_within_the_thesis_ranges_and_fill_them():
    parameters = numpy_of(FusedAugmentation(seed=0).draw_parameters(2000, 32, 16))
    for name, bound in (("angle", 25.0), ("shift_y", 0.2), ("shift_x", 0.2)):
        assert np.abs(parameters[name]).max() <= bound
        assert np.abs(parameters[name]).max() > 0.95 * bound
        assert abs(parameters[name].mean()) < 0.05 * bound
    for name in ("zoom_y", "zoom_x"):
        assert 0.8 <= parameters[name].min() < 0.81 and 1.19 < parameters[name].max() <= 1.2
    assert abs(np.corrcoef(parameters["zoom_y"], parameters["zoom_x"])[0, 1]) < 0.1
    assert set(np.unique(parameters["flip"])) == {0.0, 1.0}
    assert 0.45 < parameters["flip"].mean() < 0.55


def test_transforms_compose_zoom_shift_rotation_about_the_centre_then_flip():
    ops = keras.ops
    one = np.ones(1, dtype="float32")

    def matrix(angle=0.0, shift_y=0.0, shift_x=0.0, zoom_y=1.0, zoom_x=1.0, flip=0.0):
        values = dict(angle=angle, shift_y=shift_y, shift_x=shift_x, zoom_y=zoom_y)
        values.update(zoom_x=zoom_x, flip=flip)
        parameters = {name: ops.convert_to_tensor(one * value) for name, value in values.items()}
        return np.asarray(FusedAugmentation.transforms(parameters, 9, 5))[0]

    identity = [1, 0, 0, 0, 1, 0, 0, 0]
    np.testing.assert_allclose(matrix(), identity, atol=1e-6)
    # a shift of 0.2 x height moves the source row by 1.8 pixels
    np.testing.assert_allclose(matrix(shift_y=0.2), [1, 0, 0, 0, 1, 1.8, 0, 0], atol=1e-6)
    # zoom 0.5 about the centre (row 4, column 2): source = 0.5 p + 0.5 centre
    np.testing.assert_allclose(matrix(zoom_y=0.5, zoom_x=0.5), [0.5, 0, 1, 0, 0.5, 2, 0, 0])
    # the flip mirrors columns about the centre: source column = 4 - x
    np.testing.assert_allclose(matrix(flip=1.0), [-1, 0, 4, 0, 1, 0, 0, 0], atol=1e-6)
    # 90 degrees: the centre stays, output (row 4 + 1, col 2) samples (row 4, col 3)
    a0, a1, a2, b0, b1, b2, _, _ = matrix(angle=90.0)
    np.testing.assert_allclose([a0 * 2 + a1 * 5 + a2, b0 * 2 + b1 * 5 + b2], [3, 4], atol=1e-5)


def test_seed_makes_augmentation_reproducible():
    images = random_images()
    options = {"colour_gain": 0.2, "brightness": 0.2, "erasing": 0.5}
    first = build_augmentation(seed=11, **options)
    second = build_augmentation(seed=11, **options)
    other = build_augmentation(seed=12, **options)
    out_first = np.asarray(first(images, training=True))
    np.testing.assert_array_equal(out_first, np.asarray(second(images, training=True)))
    assert not np.allclose(out_first, np.asarray(other(images, training=True)))
    # The next call draws new transformations.
    assert not np.allclose(out_first, np.asarray(first(images, training=True)))


def test_the_seed_state_is_a_non_trainable_variable_of_the_layer():
    layer = build_augmentation(seed=0)
    assert layer.weights == []
    (state,) = layer.variables
    assert not state.trainable
    before = keras.ops.convert_to_numpy(state.value).copy()
    layer(random_images(), training=True)
    assert not np.array_equal(before, keras.ops.convert_to_numpy(state.value))


def test_zoom_below_one_zooms_in_and_above_one_zooms_out():
    """Output row y samples input row z*y + (H-1)/2*(1-z); the ramp gives 10x that."""
    rows = np.arange(8)

    def zoomed(scale: float) -> np.ndarray:
        augmentation = build_augmentation(
            shift=0.0, rotation_degrees=0.0, zoom=(scale, scale), flip=False
        )
        return np.asarray(augmentation(row_ramp(), training=True))[0, :, 0, 0]

    np.testing.assert_allclose(zoomed(0.5), 10 * (0.5 * rows + 1.75), atol=1e-3)
    zoom_out = zoomed(1.5)  # rows 0, 1, 6, 7 sample outside rows 0..7: nearest fill
    np.testing.assert_allclose(zoom_out[2:6], 10 * (1.5 * rows[2:6] - 1.75), atol=1e-3)
    np.testing.assert_allclose(zoom_out[[0, 1, 6, 7]], [0.0, 0.0, 70.0, 70.0], atol=1e-3)


def test_flip_only_mirrors_each_image_or_keeps_it():
    images = random_images(count=16)
    flip_only = build_augmentation(**{**STILL, "flip": True}, seed=0)
    augmented = np.asarray(flip_only(images, training=True))
    kept = np.all(np.isclose(augmented, images, atol=1e-3), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(augmented, images[:, :, ::-1], atol=1e-3), axis=(1, 2, 3))
    assert np.all(kept | mirrored)
    assert kept.any() and mirrored.any()


def test_shift_only_moves_each_image_by_at_most_a_fifth_of_its_height():
    ramp = np.broadcast_to(np.arange(10, dtype=np.float32)[None, :, None, None], (64, 10, 5, 3))
    layer = build_augmentation(**{**STILL, "shift": 0.2}, seed=1)
    shifted = np.asarray(layer(ramp, training=True))
    offsets = shifted[:, 5, 2, 0] - ramp[:, 5, 2, 0]  # the row index moved by the vertical shift
    assert np.all(np.abs(offsets) <= 0.2 * 10 + 1e-4)
    assert offsets.std() > 0  # a different shift per image


def test_everything_disabled_is_the_identity():
    images = random_images()
    augmentation = build_augmentation(**STILL)
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=True)), images)


def test_colour_gain_and_brightness_scale_within_their_ranges():
    images = random_images(count=64, high=100.0) + 1.0  # no clipping at 255 below x2.25
    for options, low, high in (
        ({"colour_gain": 0.3}, 0.7, 1.3),
        ({"brightness": 0.4}, 0.6, 1.4),
        ({"colour_gain": 0.3, "brightness": 0.4}, 0.7 * 0.6, 1.3 * 1.4),
    ):
        layer = build_augmentation(**STILL, **options, seed=2)
        ratio = np.asarray(layer(images, training=True)) / images
        per_channel = ratio.mean(axis=(1, 2))  # (B, C): one factor per image and channel
        expected = np.broadcast_to(per_channel[:, None, None, :], ratio.shape)
        np.testing.assert_allclose(ratio, expected, rtol=1e-4)
        assert low - 1e-5 <= per_channel.min() and per_channel.max() <= high + 1e-5
        assert per_channel.std() > 0.05 * (high - low)
        if "colour_gain" not in options:  # brightness alone: the same factor for every channel
            np.testing.assert_allclose(per_channel, per_channel[:, :1].repeat(3, 1), rtol=1e-4)
        else:
            assert np.ptp(per_channel, axis=1).max() > 0.01
    bright = build_augmentation(**STILL, brightness=0.9, seed=0)
    clipped = np.asarray(bright(np.full((16, 4, 4, 3), 250.0, "float32"), training=True))
    assert clipped.max() <= 255.0 and clipped.max() == 255.0


def test_erasing_fills_a_rectangle_of_the_stated_area_with_random_pixels():
    count, height, width = 400, 32, 16
    images = np.full((count, height, width, 3), 128.0, dtype="float32")
    parameters = numpy_of(FusedAugmentation(**STILL, erasing=0.5, seed=4).draw_parameters(
        count, height, width
    ))  # fmt: skip
    erased = parameters["erase"] > 0.5
    assert 0.4 < erased.mean() < 0.6
    area = parameters["erase_height"] * parameters["erase_width"] / (height * width)
    low, high = ERASING_AREA
    assert np.all(area[erased] >= low * 0.7) and np.all(area[erased] <= high * 1.15)  # rounding
    assert area[erased].min() < 0.06 and area[erased].max() > 0.3
    aspect = parameters["erase_height"] / parameters["erase_width"]
    assert np.all((aspect[erased] > 0.2) & (aspect[erased] < 4.5))
    assert np.all(parameters["erase_top"] + parameters["erase_height"] <= height)
    assert np.all(parameters["erase_left"] + parameters["erase_width"] <= width)
    output = np.asarray(FusedAugmentation(**STILL, erasing=0.5, seed=4)(images, training=True))
    changed = np.any(output != 128.0, axis=-1)  # (B, H, W)
    for index in range(count):
        expected = np.zeros((height, width), dtype=bool)
        if erased[index]:
            top, left = int(parameters["erase_top"][index]), int(parameters["erase_left"][index])
            rows, cols = (
                int(parameters["erase_height"][index]),
                int(parameters["erase_width"][index]),
            )
            expected[top : top + rows, left : left + cols] = True
        np.testing.assert_array_equal(changed[index], expected)
    noise = output[np.broadcast_to(changed[..., None], output.shape)]
    assert noise.min() >= 0.0 and noise.max() <= 255.0 and noise.std() > 60  # U(0, 255): 73.6


def test_a_training_model_containing_it_is_compiled_whole():
    inputs = keras.Input((32, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(inputs)
    embedder = keras.Model(inputs, keras.layers.Dense(4)(features))
    model = models.build_online_model(embedder, build_augmentation(seed=0, erasing=0.5))
    model.compile(keras.optimizers.SGD(1e-6), "mse")
    if keras.backend.backend() == "jax":
        assert model.jit_compile
    history = model.fit(random_images(count=8), np.zeros((8, 4)), batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Keras' own random layers turn compilation off for the whole model.
    keras_layers = models.build_online_model(embedder, build_keras_augmentation(seed=0))
    keras_layers.compile(keras.optimizers.SGD(1e-6), "mse")
    assert not keras_layers.jit_compile


def test_works_inside_a_model_and_trains():
    images = random_images(count=8)
    inputs = keras.Input((32, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(build_augmentation(seed=0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(features))
    np.testing.assert_allclose(model.predict(images, verbose=0), model(images), rtol=1e-5)
    train_a, train_b = (np.asarray(model(images, training=True)) for _ in range(2))
    assert not np.allclose(train_a, train_b)


def test_mixed_precision_policy_leaves_the_augmentation_in_float32():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = build_augmentation(seed=0)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert layer.compute_dtype == "float32"
    assert np.asarray(layer(random_images(), training=True)).dtype == np.float32


def test_serialization_round_trip_keeps_the_class_and_options():
    original = build_augmentation(seed=3, colour_gain=0.1, erasing=0.25, fill_mode="reflect")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    assert isinstance(restored, FusedAugmentation)
    assert restored.get_config() == original.get_config()
    images = random_images()
    np.testing.assert_array_equal(np.asarray(restored(images)), images)
    np.testing.assert_array_equal(
        np.asarray(restored(images, training=True)),
        np.asarray(build_augmentation(seed=3, colour_gain=0.1, erasing=0.25, fill_mode="reflect")(
            images, training=True
        )),
    )  # fmt: skip


def test_keras_layers_version_maps_the_thesis_ranges_to_keras_factors():
    keras_augmentation = build_keras_augmentation()
    assert isinstance(keras_augmentation, Augmentation)
    translation, rotation, zoom, flip = keras_augmentation.layers
    assert isinstance(translation, keras.layers.RandomTranslation)
    assert translation.height_factor == translation.width_factor == 0.2
    assert rotation.factor == pytest.approx((-25.0 / 360.0, 25.0 / 360.0))
    assert (zoom.height_lower, zoom.height_upper) == pytest.approx((-0.2, 0.2))
    assert isinstance(flip, keras.layers.RandomFlip) and flip.mode == "horizontal"
    images = random_images()
    np.testing.assert_array_equal(np.asarray(keras_augmentation(images)), images)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shift": 1.0}, "shift"),
        ({"rotation_degrees": -5.0}, "rotation_degrees"),
        ({"zoom": (1.2, 0.8)}, "zoom"),
        ({"zoom": (0.0, 1.2)}, "zoom"),
        ({"zoom": (0.8,)}, "zoom"),
        ({"fill_mode": "mirror"}, "fill_mode"),
        ({"seed": 1.5}, "seed"),
        ({"colour_gain": 1.5}, "colour_gain"),
        ({"brightness": -0.1}, "brightness"),
        ({"erasing": True}, "erasing"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_augmentation(**kwargs)
