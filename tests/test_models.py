"""Embedders, the triplet wrapper and batched inference (Section 3.2.2), on 64x32 inputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tripletlib import models

INPUT_SHAPE = (64, 32, 3)


@pytest.fixture(scope="module")
def resnet():
    keras.utils.set_random_seed(0)
    return models.build_resnet50_embedder(input_shape=INPUT_SHAPE, batchnorm_momentum=0.9)


@pytest.fixture(scope="module")
def mildnet():
    keras.utils.set_random_seed(1)
    return models.build_mildnet_embedder(input_shape=INPUT_SHAPE)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, *INPUT_SHAPE), dtype=np.uint8)


def tiny_embedder(embedding_dim: int = 4) -> keras.Model:
    """A deterministic stand-in embedder (no BatchNorm, no dropout) for the wrapper tests."""
    inputs = keras.Input(shape=(32, 32, 3))
    x = models.CaffePreprocessing()(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(embedding_dim, kernel_initializer=keras.initializers.GlorotUniform(0))(x)
    return keras.Model(inputs, models.L2Normalization()(x), name="tiny_embedder")


class AddOneWhenTraining(keras.layers.Layer):
    """A stand-in augmentation: +1 on every pixel in training, identity otherwise."""

    def call(self, inputs, training=None):
        return inputs + 1.0 if training else inputs


# ---- the two backbones ----------------------------------------------------------------------


@pytest.mark.parametrize(("fixture", "dim"), [("resnet", 128), ("mildnet", 2048)])
def test_embedding_sizes_and_unit_norm(request, images, fixture, dim):
    embedder = request.getfixturevalue(fixture)
    assert embedder.output_shape == (None, dim)
    embeddings = models.embed_images(embedder, images, batch_size=2)
    assert embeddings.shape == (5, dim) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_mildnet_concatenates_1472_pooled_features(mildnet):
    widths = [
        mildnet.get_layer(f"gap_{name}").output.shape[-1] for name in models.MILDNET_POOL_LAYERS
    ]
    assert widths == [64, 128, 256, 512, 512]
    assert mildnet.get_layer("concatenate_1472").output.shape[-1] == 1472
    assert mildnet.get_layer("dropout").rate == pytest.approx(0.6)


@pytest.mark.parametrize("fixture", ["resnet", "mildnet"])
def test_first_ten_backbone_layers_are_frozen(request, fixture):
    embedder = request.getfixturevalue(fixture)
    backbone = models.get_backbone(embedder)
    assert [layer.trainable for layer in backbone.layers[:10]] == [False] * 10
    assert all(layer.trainable for layer in backbone.layers[10:])
    head = [layer for layer in embedder.layers if layer is not backbone]
    assert all(layer.trainable for layer in head)
    # the first convolution holds weights and is frozen
    frozen_with_weights = [layer for layer in backbone.layers[:10] if layer.weights]
    assert frozen_with_weights
    frozen_ids = {id(w) for layer in frozen_with_weights for w in layer.weights}
    assert not frozen_ids & {id(w) for w in embedder.trainable_weights}


def test_batchnorm_momentum_reaches_backbone_and_head(resnet):
    batchnorms = [
        layer
        for layer in [*models.get_backbone(resnet).layers, *resnet.layers]
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(batchnorms) == 53 + 1  # ResNet-50's 53 BatchNorm layers + the head's
    assert {layer.momentum for layer in batchnorms} == {0.9}


def test_caffe_preprocessing_matches_keras_applications():
    pixels = np.array([[[[255.0, 0.0, 10.0]]]], dtype=np.float32)
    ours = keras.ops.convert_to_numpy(models.CaffePreprocessing()(pixels))
    # RGB (255, 0, 10) -> BGR (10, 0, 255) minus the BGR means (103.939, 116.779, 123.68)
    np.testing.assert_allclose(ours[0, 0, 0], [10 - 103.939, -116.779, 255 - 123.68], atol=1e-4)
    reference = keras.applications.imagenet_utils.preprocess_input(pixels.copy(), mode="caffe")
    np.testing.assert_allclose(ours, reference, atol=1e-4)


@pytest.mark.parametrize("fixture", ["resnet", "mildnet"])
def test_backbone_weights_file_loads_by_path(request, tmp_path, fixture):
    embedder = request.getfixturevalue(fixture)
    backbone = models.get_backbone(embedder)
    path = tmp_path / "backbone.weights.h5"
    backbone.save_weights(path)
    backbone_name = "resnet50" if fixture == "resnet" else "mildnet"
    keras.utils.set_random_seed(2)
    fresh = models.build_embedder(backbone_name, input_shape=INPUT_SHAPE, weights=path)
    saved = [keras.ops.convert_to_numpy(w) for w in backbone.weights]
    loaded = [keras.ops.convert_to_numpy(w) for w in models.get_backbone(fresh).weights]
    assert len(saved) == len(loaded)
    for before, after in zip(saved, loaded, strict=True):
        np.testing.assert_array_equal(before, after)
    keras.utils.set_random_seed(2)
    random = models.build_embedder(backbone_name, input_shape=INPUT_SHAPE, weights=None)
    first_kernel = keras.ops.convert_to_numpy(models.get_backbone(random).weights[0])
    assert not np.array_equal(first_kernel, saved[0])


class ApplicationCalled(Exception):
    pass


@pytest.mark.parametrize(
    ("backbone", "application"), [("resnet50", "ResNet50"), ("mildnet", "VGG16")]
)
def test_imagenet_weights_are_requested_from_keras_applications(monkeypatch, backbone, application):
    calls = []

    def record(**kwargs):
        calls.append(kwargs)
        raise ApplicationCalled

    monkeypatch.setattr(keras.applications, application, record)
    with pytest.raises(ApplicationCalled):
        models.build_embedder(backbone, input_shape=INPUT_SHAPE, weights="imagenet")
    assert calls == [{"include_top": False, "weights": "imagenet", "input_shape": INPUT_SHAPE}]


@pytest.mark.parametrize("backbone", models.BACKBONES)
def test_bad_weights_are_rejected_before_building(tmp_path, backbone):
    with pytest.raises(ValueError, match="'imagenett'"):
        models.build_embedder(backbone, input_shape=INPUT_SHAPE, weights="imagenett")
    with pytest.raises(ValueError, match="missing.weights.h5"):
        models.build_embedder(
            backbone, input_shape=INPUT_SHAPE, weights=tmp_path / "missing.weights.h5"
        )
    wrong_suffix = tmp_path / "backbone.txt"
    wrong_suffix.write_text("not weights")
    with pytest.raises(ValueError, match="must end with"):
        models.build_embedder(backbone, input_shape=INPUT_SHAPE, weights=wrong_suffix)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="backbone must be one of"):
        models.build_embedder("vgg19")
    with pytest.raises(ValueError, match="input_shape"):
        models.build_resnet50_embedder(input_shape=(64, 32))
    with pytest.raises(ValueError, match="input_shape"):
        models.build_mildnet_embedder(input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="embedding_dim"):
        models.build_resnet50_embedder(input_shape=INPUT_SHAPE, embedding_dim=0)
    with pytest.raises(ValueError, match="dropout"):
        models.build_mildnet_embedder(input_shape=INPUT_SHAPE, dropout=1.0)
    with pytest.raises(ValueError, match="batchnorm_momentum"):
        models.build_resnet50_embedder(input_shape=INPUT_SHAPE, batchnorm_momentum=1.5)
    with pytest.raises(ValueError, match="freeze_layers"):
        models.build_mildnet_embedder(input_shape=INPUT_SHAPE, freeze_layers=100)


def test_mildnet_without_l2_normalisation_is_not_unit_norm(images):
    keras.utils.set_random_seed(3)
    embedder = models.build_embedder(
        "mildnet", input_shape=INPUT_SHAPE, embedding_dim=16, l2_normalize=False
    )
    assert "l2_normalization" not in [layer.name for layer in embedder.layers]
    embeddings = models.embed_images(embedder, images)
    assert embeddings.shape == (5, 16)
    assert not np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-3)


# ---- the wrappers and inference -------------------------------------------------------------


def test_triplet_model_stacks_shared_embeddings():
    embedder = tiny_embedder()
    model = models.build_triplet_model(embedder)
    assert [tensor.name for tensor in model.inputs] == ["anchor", "positive", "negative"]
    assert model.output_shape == (None, 3, 4)
    assert len(model.trainable_weights) == len(embedder.trainable_weights)  # one shared embedder
    rng = np.random.default_rng(1)
    branches = [rng.uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32) for _ in range(3)]
    stacked = keras.ops.convert_to_numpy(model(branches))
    for index, branch in enumerate(branches):
        expected = keras.ops.convert_to_numpy(embedder(branch))
        np.testing.assert_allclose(stacked[:, index], expected, atol=1e-6)


def test_triplet_model_runs_the_three_branches_as_one_batch():
    """In training mode BatchNorm normalises the 3B images together: each branch's embedding is
    the embedder's on the concatenated batch, in its place."""
    inputs = keras.Input(shape=(4,))
    embedder = keras.Model(inputs, keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs)))
    model = models.build_triplet_model(embedder)
    rng = np.random.default_rng(0)
    branches = [rng.normal(size=(5, 4)).astype("float32") for _ in range(3)]
    stacked = keras.ops.convert_to_numpy(model(branches, training=True))
    joined = keras.ops.convert_to_numpy(embedder(np.concatenate(branches), training=True))
    np.testing.assert_allclose(stacked, joined.reshape(3, 5, 3).transpose(1, 0, 2), atol=1e-5)
    alone = keras.ops.convert_to_numpy(embedder(branches[0], training=True))
    assert not np.allclose(stacked[:, 0], alone, atol=1e-3)  # not normalised per branch


def test_augmentation_runs_per_branch_only_in_training():
    embedder = tiny_embedder()
    triplet = models.build_triplet_model(embedder, augmentation=AddOneWhenTraining())
    online = models.build_online_model(embedder, augmentation=AddOneWhenTraining())
    rng = np.random.default_rng(2)
    branches = [rng.uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32) for _ in range(3)]
    for training in (False, True):
        shift = 1.0 if training else 0.0
        stacked = keras.ops.convert_to_numpy(triplet(branches, training=training))
        single = keras.ops.convert_to_numpy(online(branches[0], training=training))
        expected = [keras.ops.convert_to_numpy(embedder(b + shift)) for b in branches]
        np.testing.assert_allclose(stacked, np.stack(expected, axis=1), atol=1e-6)
        np.testing.assert_allclose(single, expected[0], atol=1e-6)
    assert online.output_shape == (None, 4)


def test_wrappers_and_custom_layers_survive_keras_saving(tmp_path):
    model = models.build_triplet_model(tiny_embedder())
    path = tmp_path / "triplet.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    branches = [np.full((1, 32, 32, 3), value, dtype=np.float32) for value in (0.0, 100.0, 255.0)]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(branches)),
        keras.ops.convert_to_numpy(model(branches)),
        atol=1e-6,
    )


def test_embed_images_batches_and_dtypes_agree():
    embedder = tiny_embedder()
    images = np.random.default_rng(3).integers(0, 256, size=(7, 32, 32, 3), dtype=np.uint8)
    whole = models.embed_images(embedder, images, batch_size=7)
    batched = models.embed_images(embedder, images, batch_size=3, progress=True)
    from_float = models.embed_images(embedder, images.astype(np.float32), batch_size=4)
    direct = keras.ops.convert_to_numpy(embedder(images.astype(np.float32)))
    for result in (whole, batched, from_float):
        np.testing.assert_allclose(result, direct, atol=1e-6)
    assert models.embed_images(embedder, images[:0]).shape == (0, 4)


def test_embed_images_rejects_wrong_shapes():
    embedder = tiny_embedder()
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        models.embed_images(embedder, np.zeros((2, 64, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        models.embed_images(embedder, np.zeros((32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        models.embed_images(embedder, np.zeros((2, 32, 32, 3)), batch_size=0)


def test_embeddings_stay_float32_under_mixed_precision():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        embedder = models.build_resnet50_embedder(input_shape=(64, 32, 3), freeze_layers=0)
        output = embedder(np.zeros((2, 64, 32, 3), "float32"))
        assert keras.backend.standardize_dtype(output.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy(policy)
