"""The CPU profiles' recipe: scaled thesis backbones, per-image standardisation, the shipped
label-free start and the profile fields that switch them."""


import keras
import numpy as np
import pytest

from tripletlib import augment, config, models, pretraining

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
        assert profile.warm_start == pretraining.LABEL_FREE and profile.colour_gain > 0
        options = profile.embedder_options(weights=None)
        assert options["width"] == 0.25 and options["input_normalization"] == "per-image"
        # the rows fit the shipped start's network
        recipe = pretraining.START_RECIPE
        assert profile.input_shape == recipe["input_shape"]
        assert profile.width_multiplier == recipe["width"]
    thesis = config.PROFILES["thesis"]
    assert thesis.width_multiplier == 1.0 and thesis.input_normalization == "caffe"
    assert thesis.warm_start is None and thesis.colour_gain == thesis.brightness == 0.0
    with pytest.raises(ValueError, match="width_multiplier"):
        config.resolve_profile("ci", width_multiplier=1.5)
    with pytest.raises(ValueError, match="warm_start"):
        config.resolve_profile("ci", warm_start="imagenet")
    with pytest.raises(ValueError, match="warm_start='shipped'"):
        config.resolve_profile("ci", warm_start="shipped")  # the supervised warm start is gone


def test_the_label_free_starts_load_and_were_trained_without_labels():
    profile = config.PROFILES["cpu"]
    for backbone in models.BACKBONES:
        record = pretraining.start_record(backbone)
        assert record["backbone"] == backbone and record["labels"].startswith("none")
        assert record["steps"] == pretraining.START_RECIPE["steps"][backbone]
        assert {key: record["pool"][key] for key in pretraining.START_POOL} == (
            pretraining.START_POOL
        )
        heads = []
        for seed in (1, 2):  # two different random networks end in the same shipped weights
            keras.utils.set_random_seed(seed)
            embedder = models.build_embedder(backbone, **profile.embedder_options(weights=None))
            random_head = embedder.get_layer("embedding").get_weights()[0]
            pretraining.load_start(embedder, backbone)
            heads.append(embedder.get_layer("embedding").get_weights()[0])
            assert not np.allclose(heads[-1], random_head)
        np.testing.assert_array_equal(heads[0], heads[1])


def test_a_start_of_another_shape_is_refused_by_name():
    keras.utils.set_random_seed(0)
    embedder = models.build_embedder("mildnet", input_shape=(64, 32, 3), width=0.5)
    with pytest.raises(ValueError, match="does not fit"):
        pretraining.load_start(embedder, "mildnet")


def test_the_label_free_pools_hold_no_book_people():
    # The book's sets use seeds 0-2; the start's pool and the validation set have their own.
    seeds = {pretraining.START_POOL["seed"], pretraining.VALIDATION_SET["seed"]}
    assert len(seeds) == 2 and not seeds & {0, 1, 2}
    book_seeds = {profile.synthetic_seed for profile in config.PROFILES.values()}
    assert not seeds & book_seeds


def test_a_missing_label_free_start_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(pretraining, "START_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="make_starts.py"):
        pretraining.start_record("resnet50")


def test_a_profile_names_a_known_warm_start():
    assert config.PROFILES["thesis"].replace(warm_start="label-free").warm_start == "label-free"
    with pytest.raises(ValueError, match="warm_start='imagenet-ish'"):
        config.PROFILES["ci"].replace(warm_start="imagenet-ish")
    folder = config.PROFILES["gpu"].replace(warm_start="/tmp/work/starts")  # gpu_run.py's
    assert folder.warm_start == "/tmp/work/starts"


def test_augmentation_options_are_section_3_1_3_on_the_thesis_profile():
    thesis = config.PROFILES["thesis"].augmentation_options()
    assert (thesis["shift"], thesis["rotation_degrees"], thesis["zoom"]) == (0.2, 25.0, (0.8, 1.2))
    assert thesis["colour_gain"] == thesis["brightness"] == thesis["erasing"] == 0.0
    # The CPU profiles keep the flip and a smaller shift, no rotation or zoom (docs/benchmarks.md).
    cpu = config.PROFILES["cpu"].augmentation_options()
    assert (cpu["shift"], cpu["rotation_degrees"], cpu["zoom"]) == (0.1, 0.0, None)
    layer = augment.build_augmentation(seed=0, **cpu)
    assert layer.rotation_degrees == 0.0 and layer.zoom == (1.0, 1.0) and layer.flip
    for field, value in (("zoom", 1.0), ("shift", -0.1), ("rotation_degrees", 200.0)):
        with pytest.raises(ValueError, match=field):
            config.resolve_profile("cpu", **{field: value})
