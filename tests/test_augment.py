"""Tests for tripletlib.augment (Section 3.1.3); CI runs them under TensorFlow and JAX."""

import keras
import numpy as np
import pytest

from tripletlib.augment import Augmentation, build_augmentation


def random_images(seed: int = 0, count: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, 32, 16, 3)).astype("float32")


def row_ramp(height: int = 8, width: int = 4) -> np.ndarray:
    """One image whose pixel value is 10 x its row: bilinear resampling of it is exact."""
    ramp = np.arange(height, dtype="float32")[None, :, None, None] * 10.0
    return np.broadcast_to(ramp, (1, height, width, 3)).copy()


def test_shape_and_dtype_are_kept_and_pixels_change_in_training():
    images = random_images()
    augmented = np.asarray(build_augmentation(seed=0)(images, training=True))
    assert augmented.shape == images.shape
    assert augmented.dtype == np.float32
    assert np.abs(augmented - images).mean() > 1.0


def test_identity_at_inference_including_the_default_call():
    images = random_images()
    augmentation = build_augmentation(seed=0)
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=False)), images)
    # Keras' random layers default to training=True; this pipeline defaults to inference.
    np.testing.assert_array_equal(np.asarray(augmentation(images)), images)


def test_seed_makes_augmentation_reproducible():
    images = random_images()
    first = build_augmentation(seed=11)
    second = build_augmentation(seed=11)
    other = build_augmentation(seed=12)
    out_first = np.asarray(first(images, training=True))
    np.testing.assert_array_equal(out_first, np.asarray(second(images, training=True)))
    assert not np.allclose(out_first, np.asarray(other(images, training=True)))
    # The next call draws new transformations.
    assert not np.allclose(out_first, np.asarray(first(images, training=True)))


def test_thesis_ranges_map_to_keras_factors():
    translation, rotation, zoom, flip = build_augmentation().layers
    assert isinstance(translation, keras.layers.RandomTranslation)
    assert translation.height_factor == translation.width_factor == 0.2
    assert isinstance(rotation, keras.layers.RandomRotation)
    assert rotation.factor == pytest.approx((-25.0 / 360.0, 25.0 / 360.0))
    assert isinstance(zoom, keras.layers.RandomZoom)
    assert (zoom.height_lower, zoom.height_upper) == pytest.approx((-0.2, 0.2))
    assert (zoom.width_lower, zoom.width_upper) == pytest.approx((-0.2, 0.2))
    assert isinstance(flip, keras.layers.RandomFlip) and flip.mode == "horizontal"
    assert all(layer.fill_mode == "nearest" for layer in (translation, rotation, zoom))


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
    flip_only = build_augmentation(shift=0.0, rotation_degrees=0.0, zoom=None, flip=True, seed=0)
    augmented = np.asarray(flip_only(images, training=True))
    kept = np.all(augmented == images, axis=(1, 2, 3))
    mirrored = np.all(augmented == images[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(kept | mirrored)
    assert kept.any() and mirrored.any()


def test_everything_disabled_is_the_identity():
    images = random_images()
    augmentation = build_augmentation(shift=0.0, rotation_degrees=0.0, zoom=(1.0, 1.0), flip=False)
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=True)), images)


def test_works_inside_a_model_and_trains():
    images = random_images(count=8)
    inputs = keras.Input((32, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(build_augmentation(seed=0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(features))
    np.testing.assert_allclose(model.predict(images, verbose=0), model(images), rtol=1e-5)
    train_a, train_b = (np.asarray(model(images, training=True)) for _ in range(2))
    assert not np.allclose(train_a, train_b)
    model.compile(keras.optimizers.SGD(1e-6), "mse")
    history = model.fit(images, np.zeros((8, 2)), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_serialization_round_trip_keeps_the_class():
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(build_augmentation(seed=3))
    )
    assert isinstance(restored, Augmentation)
    assert len(restored.layers) == 4
    images = random_images()
    np.testing.assert_array_equal(np.asarray(restored(images)), images)


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
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_augmentation(**kwargs)
