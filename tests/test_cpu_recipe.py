"""The CPU profiles' recipe (issue 14): scaled thesis backbones, per-image standardisation, the
shipped warm start and the profile fields that switch them."""

import json

import keras
import numpy as np
import pytest

from tripletlib import config, models, pretraining

SHAPE = (64, 32, 3)


def _layer_names(model):
    return [layer.name for layer in model.layers]


def test_scaled_resnet50_keeps_the_bottleneck_stages_and_skip_connections():
    backbone = models.scaled_resnet50(SHAPE, width=0.25, batchnorm_momentum=0.9)
    names = _layer_names(backbone)
    blocks = [sum(name.startswith(f"conv{stage}_block") and name.endswith("_add") for name in names)
              for stage in (2, 3, 4, 5)]  # fmt: skip
    assert blocks == [3, 4, 6, 3]  # 16 residual connections
    assert "pool1_pool" not in names  # no max-pool after the stem at 64x32
    assert backbone.output_shape == (None, 4, 2, 512)  # 4 x (512 / 4) channels, stage 5 at 4x2
    # The residual branch's last BatchNorm starts at zero: each block starts as the identity.
    gamma = backbone.get_layer("conv3_block2_3_bn").gamma
    assert np.all(keras.ops.convert_to_numpy(gamma) == 0.0)
    momentum = {layer.momentum for layer in backbone.layers if "bn" in layer.name}
    assert momentum == {0.9}


def test_scaled_mildnet_keeps_thirteen_convolutions_and_five_taps():
    embedder = models.build_embedder("mildnet", input_shape=SHAPE, width=0.25, freeze_layers=0)
    backbone = models.get_backbone(embedder)
    convolutions = [name for name in _layer_names(backbone) if "_conv" in name]
    assert len(convolutions) == 13
    assert embedder.get_layer("concatenate_1472").output.shape[-1] == 1472 // 4
    assert embedder.get_layer("dense_2048").output.shape[-1] == 2048
    assert embedder.output_shape == (None, 2048)


def test_width_one_is_keras_applications_and_imagenet_needs_it():
    with pytest.raises(ValueError, match="ImageNet weights exist for width 1 only"):
        models.build_embedder("resnet50", input_shape=SHAPE, weights="imagenet", width=0.5)
    with pytest.raises(ValueError, match="width must be a number in"):
        models.build_embedder("resnet50", input_shape=SHAPE, width=0.0)
    with pytest.raises(ValueError, match="input_normalization must be one of"):
        models.build_embedder("resnet50", input_shape=SHAPE, width=0.25, input_normalization="x")


def test_per_image_standardisation_by_hand():
    # One channel alternates 0 and 2: mean 1, std 1 -> (x - 1) / (1 + 1) = -0.5 or +0.5.
    image = np.zeros((1, 2, 2, 3), dtype="float32")
    image[0, :, :, 0] = [[0.0, 2.0], [2.0, 0.0]]
    image[0, :, :, 1] = 7.0  # flat: mean 7, std 0 -> 0
    out = keras.ops.convert_to_numpy(models.PerImageStandardization()(image))
    np.testing.assert_allclose(out[0, :, :, 0], [[-0.5, 0.5], [0.5, -0.5]], atol=1e-6)
    np.testing.assert_allclose(out[0, :, :, 1], 0.0, atol=1e-6)
    # A colour cast (gain per channel) on a high-contrast image hardly moves the result.
    rng = np.random.default_rng(0)
    picture = rng.uniform(0, 200, size=(1, 16, 8, 3)).astype("float32")
    cast = picture * np.array([1.2, 1.0, 0.8], dtype="float32")
    a, b = (keras.ops.convert_to_numpy(models.PerImageStandardization()(x)) for x in (picture, cast))
    assert np.abs(a - b).max() < 0.02


def test_cpu_profiles_use_the_recipe_and_the_thesis_profile_does_not():
    for name in ("ci", "cpu"):
        profile = config.PROFILES[name]
        assert profile.width_multiplier == 0.25 and profile.input_normalization == "per-image"
        assert profile.warm_start == "shipped" and profile.colour_gain > 0
        options = profile.embedder_options(weights=None)
        assert options["width"] == 0.25 and options["input_normalization"] == "per-image"
    thesis = config.PROFILES["thesis"]
    assert thesis.width_multiplier == 1.0 and thesis.input_normalization == "caffe"
    assert thesis.warm_start is None and thesis.colour_gain == thesis.brightness == 0.0
    with pytest.raises(ValueError, match="width_multiplier"):
        config.resolve_profile("ci", width_multiplier=1.5)
    with pytest.raises(ValueError, match="warm_start"):
        config.resolve_profile("ci", warm_start="imagenet")


def test_cpu_rows_fine_tune_at_a_tenth_of_their_warm_starts_peak_rate():
    peak = pretraining.WARM_START_RECIPE["learning_rate"]
    for name in ("ci", "cpu"):
        profile = config.PROFILES[name]
        for backbone in ("resnet50", "mildnet"):
            assert profile.learning_rate_of(backbone) == pytest.approx(peak[backbone] / 10)
    # The thesis' one rate for both backbones; the gpu profile, from random weights at 1e-3,
    # keeps VGG16 (no BatchNorm) at 1e-4.
    thesis, gpu = config.PROFILES["thesis"], config.PROFILES["gpu"]
    assert thesis.learning_rate_of("mildnet") == thesis.learning_rate_of("resnet50") == 1e-4
    assert (gpu.learning_rate_of("resnet50"), gpu.learning_rate_of("mildnet")) == (1e-3, 1e-4)


def test_the_shipped_warm_starts_load_into_the_cpu_embedders_head_included():
    profile = config.PROFILES["cpu"]
    for backbone in models.BACKBONES:
        record = pretraining.warm_start_record(backbone)
        assert record["steps"] == pretraining.warm_start_steps(backbone)
        assert record["pools"] == pretraining.warm_start_pools()
        assert [stage["steps"] for stage in record["stages"]] == [
            stage["steps"] for stage in pretraining.warm_start_stages(backbone)
        ]
        heads = []
        for seed in (1, 2):  # two different random starts end in the same shipped weights
            keras.utils.set_random_seed(seed)
            embedder = models.build_embedder(backbone, **profile.embedder_options(weights=None))
            random_head = embedder.get_layer("embedding").get_weights()[0]
            pretraining.load_warm_start(embedder, backbone)
            heads.append(embedder.get_layer("embedding").get_weights()[0])
            assert not np.allclose(heads[-1], random_head)
        np.testing.assert_array_equal(heads[0], heads[1])


def test_a_warm_start_of_another_shape_is_refused_by_name():
    keras.utils.set_random_seed(0)
    embedder = models.build_embedder("mildnet", input_shape=(64, 32, 3), width=0.5)
    with pytest.raises(ValueError, match="does not fit"):
        pretraining.load_warm_start(embedder, "mildnet")


def test_train_warm_start_moves_the_weights_and_reports_its_recipe(tmp_path):
    rng = np.random.default_rng(0)
    person_ids = np.repeat(np.arange(1, 5), 4)
    images = rng.integers(0, 255, size=(len(person_ids), *SHAPE), dtype=np.uint8)
    keras.utils.set_random_seed(0)
    embedder = models.build_embedder("resnet50", input_shape=SHAPE, width=0.125, freeze_layers=0,
                                     input_normalization="per-image")  # fmt: skip
    before = keras.ops.convert_to_numpy(embedder.get_layer("embedding").kernel).copy()
    record = pretraining.train_warm_start(embedder, images, person_ids, steps=2, p=2, k=2)
    after = keras.ops.convert_to_numpy(embedder.get_layer("embedding").kernel)
    assert not np.allclose(before, after)
    assert record["steps"] == 2 and record["identities"] == 4 and record["p"] == 2
    assert np.isfinite(record["losses"]["loss"])
    json.dumps(record)


def test_a_missing_warm_start_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(pretraining, "WARM_START_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="make_warm_starts.py"):
        pretraining.warm_start_record("resnet50")


def test_the_label_free_starts_load_and_were_trained_without_labels():
    profile = config.PROFILES["cpu"].replace(warm_start=pretraining.LABEL_FREE)
    for backbone in models.BACKBONES:
        record = pretraining.warm_start_record(backbone, pretraining.LABEL_FREE)
        assert record["backbone"] == backbone and record["labels"].startswith("none")
        assert record["steps"] == pretraining.START_RECIPE["steps"][backbone]
        assert {key: record["pool"][key] for key in pretraining.START_POOL} == (
            pretraining.START_POOL
        )
        keras.utils.set_random_seed(1)
        embedder = models.build_embedder(backbone, **profile.embedder_options(weights=None))
        random_head = embedder.get_layer("embedding").get_weights()[0]
        pretraining.load_warm_start(embedder, backbone, pretraining.LABEL_FREE)
        assert not np.allclose(embedder.get_layer("embedding").get_weights()[0], random_head)


def test_the_label_free_pools_hold_no_book_people():
    # The book's sets use seeds 0-2; the start's pool and the validation set have their own.
    seeds = {pretraining.START_POOL["seed"], pretraining.VALIDATION_SET["seed"]}
    assert len(seeds) == 2 and not seeds & {0, 1, 2}
    # The validation people are in no pool of either start.
    assert pretraining.VALIDATION_SET["seed"] not in {
        pool["seed"] for pool in pretraining.warm_start_pools()
    }


def test_a_missing_label_free_start_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(pretraining, "START_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="make_starts.py"):
        pretraining.warm_start_record("resnet50", pretraining.LABEL_FREE)


def test_a_profile_names_a_known_warm_start():
    assert config.PROFILES["ci"].replace(warm_start="label-free").warm_start == "label-free"
    with pytest.raises(ValueError, match="warm_start='imagenet-ish'"):
        config.PROFILES["ci"].replace(warm_start="imagenet-ish")
