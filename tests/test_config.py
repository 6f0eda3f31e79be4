import pytest

from tripletlib import config


def test_thesis_profile_keeps_the_thesis_recipe():
    thesis = config.resolve_profile("thesis")
    assert thesis.input_shape == (256, 128, 3)
    assert thesis.weights == "imagenet"
    assert thesis.learning_rate == pytest.approx(1e-4)
    assert thesis.epochs == 100 and thesis.lr_decay_every_epochs == 50
    assert thesis.triplet_batch_size == 32
    assert (thesis.pk_identities, thesis.pk_images) == (8, 8)
    assert thesis.freeze_layers == 10 and thesis.hard_fraction == pytest.approx(0.3)
    assert thesis.dataset == "market1501"


def test_decay_interval_scales_with_epochs():
    assert config.resolve_profile("ci", epochs=2).lr_decay_every_epochs == 1
    assert config.resolve_profile("ci", epochs=10).lr_decay_every_epochs == 5


def test_unknown_profile_and_field_are_clear_errors():
    with pytest.raises(ValueError, match="unknown profile 'tpu'"):
        config.resolve_profile("tpu")
    with pytest.raises(ValueError, match="unknown profile field"):
        config.resolve_profile("ci", epoch=3)


@pytest.mark.parametrize(
    "row", ["mildnet-triplet-offline", "resnet50-lossless-offline", "resnet50-batch-all-online"]
)
def test_thesis_rows_are_valid(row):
    backbone, loss, mining = config.THESIS_ROWS[row]
    assert config.row_name(backbone, loss, mining) == row


@pytest.mark.parametrize(
    "backbone, loss, mining, message",
    [
        ("vgg", "triplet", "offline", "unknown backbone"),
        ("resnet50", "hinge", "offline", "unknown loss"),
        ("resnet50", "triplet", "sideways", "unknown mining"),
        ("resnet50", "batch-all", "offline", "needs --mining online"),
        ("resnet50", "lossless", "online", "needs --mining offline"),
    ],
)
def test_invalid_rows_are_rejected(backbone, loss, mining, message):
    with pytest.raises(ValueError, match=message):
        config.validate_row(backbone, loss, mining)



def test_embedder_options_are_the_arguments_of_build_embedder():
    import inspect

    from tripletlib import models

    ci = config.resolve_profile("ci")
    options = ci.embedder_options(weights=None)
    assert options == {"input_shape": (64, 32, 3), "weights": None, "freeze_layers": 10,
                       "batchnorm_momentum": 0.9, "width": 0.25,
                       "input_normalization": "per-image"}  # fmt: skip
    passed_on = {"width", "input_normalization"}  # through build_embedder's **options
    assert set(options) - passed_on <= set(inspect.signature(models.build_embedder).parameters)
    for builder in models.BUILDERS.values():
        assert passed_on <= set(inspect.signature(builder).parameters)
    with pytest.raises(ValueError, match="unknown embedder option"):
        ci.embedder_options(dropout=0.5)


def test_derived_seeds_are_fixed_per_stream():
    assert config.derived_seed(0, config.VALIDATION_STREAM) == config.derived_seed(0, 1)
    assert config.derived_seed(0, 1) != config.derived_seed(0, 2) != config.derived_seed(1, 2)


def test_parse_row_is_the_inverse_of_row_name():
    for backbone in config.BACKBONE_CHOICES:
        for loss, mining in (("triplet", "offline"), ("lossless", "offline"),
                             ("batch-all", "online"), ("batch-hard", "online")):  # fmt: skip
            assert config.parse_row(config.row_name(backbone, loss, mining)) == (backbone, loss, mining)
    for bad, message in (("resnet50", "expected BACKBONE-LOSS-MINING"),
                         ("resnet50-batch-all-offline", "needs --mining online"),
                         ("vgg-triplet-offline", "unknown backbone 'vgg'")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            config.parse_row(bad)

