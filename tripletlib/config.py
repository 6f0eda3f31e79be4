"""Named training profiles: the thesis recipe (Section 3.3.1) and two small CPU profiles.

The `thesis` profile keeps the thesis' values: 256x128 inputs, ImageNet weights, Adam at 1e-4
halved half-way through (every 50 of 100 epochs), 32 triplets per batch offline, P = K = 8 online, the first
10 layers frozen, 30 % hard triplets in the second offline iteration.

The `ci` and `cpu` profiles run without ImageNet weights on the synthetic Market-shaped dataset, on
two CPU cores (`CPU_RECIPE`): the thesis' backbones at a quarter of their channels on 64x32 inputs,
per-image input standardisation, colour-cast augmentation on top of Section 3.1.3's, and in
ImageNet's place the label-free start shipped with the package (`pretraining.load_start`: no
re-identification model alone, trained without identity labels on other people). Each row then
trains with the thesis' recipe at the rate chosen on the validation set (docs/benchmarks.md).
Their numbers are about the method on synthetic data, never Market-1501's.

`derived_seed(seed, stream)` gives the independent random streams of a run (validation split,
augmentation, the sampler of each training iteration).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# Dtype policies a profile may train under (`devices.precision`): float32, or bf16 / fp16 compute
# with float32 weights.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# `Profile.warm_start`: random weights (None), the label-free start ("label-free": the shipped one
# of the profile's input size and width, `pretraining.load_start`) or a folder path (with a "/")
# of label-free starts made by scripts/make_starts.py; ImageNet weights are `Profile.weights`.
WARM_STARTS = (None, "label-free")
# Identities of the synthetic presets a profile may name (`synthetic.PRESETS`, Section 3.1.1).
SYNTHETIC_PRESET_IDS = {"market": (751, 750)}

# Independent random streams derived from a run's seed; iteration i uses ITERATION_STREAM + i.
VALIDATION_STREAM, AUGMENTATION_STREAM, ITERATION_STREAM = 1, 2, 10


def derived_seed(seed: int, stream: int) -> int:
    """The seed of one random stream of a run (validation split, augmentation, a sampler)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0] % (2**31 - 1))


@dataclass(frozen=True)
class Profile:
    """Every setting a training row needs; `resolve_profile` returns one by name."""

    name: str
    image_height: int
    image_width: int
    weights: str | None
    learning_rate: float
    epochs: int
    steps_per_epoch: int | None
    batchnorm_momentum: float
    triplet_batch_size: int = 32
    pk_identities: int = 8
    pk_images: int = 8
    lr_decay_factor: float = 0.5
    lr_decay_fraction: float = 0.5
    freeze_layers: int = 10
    margin: float = 0.2
    offline_iterations: int = 2
    hard_fraction: float = 0.3  # share of hard negatives after the first iteration (0: none mined)
    mining_neighbours: int = 10
    augment: bool = True
    validation_identity_fraction: float = 0.1
    embed_batch_size: int = 128
    dataset: str = "synthetic"
    synthetic_train_ids: int = 60
    synthetic_test_ids: int = 50
    synthetic_seed: int = 0
    # The CPU profiles' answers to "no ImageNet, two cores" (notebook 00 lists them): the
    # thesis' backbones at `width_multiplier` of their channels (1: keras.applications'),
    # "per-image" input standardisation instead of ImageNet's "caffe" means, colour-cast
    # augmentation on top of Section 3.1.3's (per-channel gain, brightness, random erasing), and
    # in ImageNet's place the label-free start ("label-free": pretraining.load_start), trained
    # without identity labels on 600 synthetic people that no book split holds.
    width_multiplier: float = 1.0
    input_normalization: str = "caffe"
    # Section 3.1.3's geometric augmentation (Keras' ImageDataGenerator arguments): shifts of up to
    # `shift` of the height and width, rotations of up to `rotation_degrees`, zoom in
    # [1 - zoom, 1 + zoom]; the CPU profiles keep the flip and a smaller shift (CPU_RECIPE).
    shift: float = 0.2
    rotation_degrees: float = 25.0
    zoom: float = 0.2
    colour_gain: float = 0.0
    brightness: float = 0.0
    erasing: float = 0.0
    warm_start: str | None = None
    # MILDNet's rows' Adam rate when it differs (None: `learning_rate`, the thesis' one rate).
    mildnet_learning_rate: float | None = None
    # How a row uses the hardware (`tripletlib.devices`), none of which changes the
    # recipe: the dtype policy the embedder and the training model are built under (`PRECISIONS`;
    # embeddings stay float32 and unit-norm), the training images uploaded once and each batch
    # gathered on the device (`sampling.DeviceTripletDataset` offline, `sampling.DevicePKDataset`
    # online), and Keras' data parallelism over every device (JAX; one device: nothing changes).
    precision: str = "float32"
    device_resident: bool = False
    data_parallel: bool = False
    # `synthetic.PRESETS` name of the generated dataset ("market": Market-1501's counts, 751 / 750
    # identities); None: `synthetic_train_ids` / `synthetic_test_ids` with the "small" ratios.
    synthetic_preset: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        validate_profile_values(self)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_height, self.image_width, 3)

    def embedder_options(self, **changes: Any) -> dict[str, Any]:
        """The arguments of `models.build_embedder` this profile sets (input shape, weights,
        frozen layers, BatchNorm momentum, width, input normalisation), with `changes` (e.g. `weights=None`) applied."""
        options = {
            "input_shape": self.input_shape,
            "weights": self.weights,
            "freeze_layers": self.freeze_layers,
            "batchnorm_momentum": self.batchnorm_momentum,
            "width": self.width_multiplier,
            "input_normalization": self.input_normalization,
        }
        unknown = sorted(set(changes) - set(options))
        if unknown:
            raise ValueError(f"unknown embedder option(s) {unknown}; known: {sorted(options)}")
        return {**options, **changes}

    def augmentation_options(self) -> dict[str, Any]:
        """The arguments of `augment.build_augmentation` this profile sets (Section 3.1.3's
        geometry, the colour cast and random erasing), without the seed."""
        zoom = None if self.zoom == 0 else (1.0 - self.zoom, 1.0 + self.zoom)
        return {
            "shift": self.shift, "rotation_degrees": self.rotation_degrees, "zoom": zoom,
            "colour_gain": self.colour_gain, "brightness": self.brightness,
            "erasing": self.erasing,
        }  # fmt: skip

    def learning_rate_of(self, backbone: str) -> float:
        """Adam's starting rate for a row of `backbone` (Section 3.3.1: 1e-4 for both)."""
        if backbone == "mildnet" and self.mildnet_learning_rate is not None:
            return self.mildnet_learning_rate
        return self.learning_rate

    @property
    def lr_decay_every_epochs(self) -> int:
        """Epochs between halvings: 50 of the thesis' 100, scaled to the profile's epochs."""
        return max(1, round(self.epochs * self.lr_decay_fraction))

    def replace(self, **changes: Any) -> Profile:
        """A copy with some fields changed (unknown names raise a clear ValueError)."""
        unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown profile field(s) {unknown}; known: {profile_fields()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# field: (smallest value, whether None is allowed).
_INTEGER_FIELDS: dict[str, tuple[int, bool]] = {
    "image_height": (8, False), "image_width": (8, False), "epochs": (1, False),
    "steps_per_epoch": (1, True), "triplet_batch_size": (1, False), "pk_identities": (2, False),
    "pk_images": (2, False), "freeze_layers": (0, False), "offline_iterations": (1, False),
    "mining_neighbours": (1, False), "embed_batch_size": (1, False), "synthetic_train_ids": (1, False),
    "synthetic_test_ids": (1, False), "synthetic_seed": (0, False),
}  # fmt: skip
# field: (lowest, highest, whether the lowest itself is allowed); the highest is allowed when finite.
_FLOAT_FIELDS: dict[str, tuple[float, float, bool]] = {
    "learning_rate": (0.0, float("inf"), False), "batchnorm_momentum": (0.0, 1.0, True),
    "lr_decay_factor": (0.0, 1.0, False), "lr_decay_fraction": (0.0, 1.0, False),
    "margin": (0.0, float("inf"), True), "hard_fraction": (0.0, 1.0, True),
    "width_multiplier": (0.0, 1.0, False), "rotation_degrees": (0.0, 180.0, True),
}  # fmt: skip


def validate_profile_values(profile: Profile) -> None:
    """Raise a ValueError naming the field for a count, epoch, step or seed out of range.

    Epochs and steps of 0 would record an untrained network as "trained"; a seed below 0 is
    refused by NumPy only much later.
    """
    for name, (lowest, may_be_none) in _INTEGER_FIELDS.items():
        value = getattr(profile, name)
        if value is None and may_be_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            expected = f"an integer >= {lowest}" + (" or None" if may_be_none else "")
            raise ValueError(f"profile {profile.name!r}: {name}={value!r}; expected {expected}")
    for name, (lowest, highest, lowest_allowed) in _FLOAT_FIELDS.items():
        value = getattr(profile, name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        inside = number and math.isfinite(value) and lowest <= value <= highest
        if not inside or (value == lowest and not lowest_allowed):
            interval = ("[" if lowest_allowed else "(") + f"{lowest:g}, {highest:g}"
            interval += "]" if math.isfinite(highest) else ")"
            raise ValueError(
                f"profile {profile.name!r}: {name}={value!r}; expected a number in {interval}"
            )
    for name in ("shift", "zoom", "colour_gain", "brightness", "erasing"):
        value = getattr(profile, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ValueError(f"profile {profile.name!r}: {name}={value!r}; expected [0, 1)")
    rate = profile.mildnet_learning_rate
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or not 0 < rate < float("inf")):  # fmt: skip
        raise ValueError(
            f"profile {profile.name!r}: mildnet_learning_rate={rate!r}; expected None or a "
            "number > 0"
        )
    if profile.input_normalization not in ("caffe", "per-image"):
        raise ValueError(
            f"profile {profile.name!r}: input_normalization={profile.input_normalization!r}; "
            "expected 'caffe' or 'per-image'"
        )
    if profile.warm_start not in WARM_STARTS and not (
        isinstance(profile.warm_start, str) and "/" in profile.warm_start
    ):
        raise ValueError(
            f"profile {profile.name!r}: warm_start={profile.warm_start!r}; expected one of "
            f"{list(WARM_STARTS)} or a folder path (with a '/') of scripts/make_starts.py's starts"
        )
    if profile.precision not in PRECISIONS:
        raise ValueError(
            f"profile {profile.name!r}: precision={profile.precision!r}; expected one of "
            f"{list(PRECISIONS)}"
        )
    for name in ("augment", "device_resident", "data_parallel"):
        value = getattr(profile, name)
        if not isinstance(value, bool):
            raise ValueError(f"profile {profile.name!r}: {name}={value!r}; expected True or False")
    preset = profile.synthetic_preset
    if preset is not None:
        if preset not in SYNTHETIC_PRESET_IDS:
            raise ValueError(
                f"profile {profile.name!r}: synthetic_preset={preset!r}; expected None or one of "
                f"{sorted(SYNTHETIC_PRESET_IDS)}"
            )
        ids = (profile.synthetic_train_ids, profile.synthetic_test_ids)
        if ids != SYNTHETIC_PRESET_IDS[preset]:
            raise ValueError(
                f"profile {profile.name!r}: synthetic_preset={preset!r} has "
                f"{SYNTHETIC_PRESET_IDS[preset]} train / test identities; synthetic_train_ids, "
                f"synthetic_test_ids={ids}"
            )
    if not 0.0 <= profile.validation_identity_fraction < 1.0:
        raise ValueError(
            f"profile {profile.name!r}: validation_identity_fraction="
            f"{profile.validation_identity_fraction!r}; expected a number in [0, 1)"
        )


def profile_fields() -> list[str]:
    return [field.name for field in dataclasses.fields(Profile)]


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def parse_overrides(assignments: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["epochs=1", "weights=none"]` -> `{"epochs": 1, "weights": None}`, typed by the Profile
    field (int, float, bool, str; "none" for a field that may be None). The CLI's `--set`; the
    values are checked when the profile is built (`resolve_profile`)."""
    types = {field.name: str(field.type) for field in dataclasses.fields(Profile)}
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        name, separator, text = str(assignment).partition("=")
        name = name.strip().replace("-", "_")
        if not separator or not name:
            raise ValueError(f"profile setting {assignment!r}; expected FIELD=VALUE")
        if name == "name" or name not in types:
            known = [field for field in profile_fields() if field != "name"]
            raise ValueError(f"unknown profile field {name!r} in {assignment!r}; known: {known}")
        overrides[name] = _parse_field_value(name, types[name], text.strip())
    return overrides


def _parse_field_value(name: str, annotation: str, text: str) -> Any:
    kinds = [kind.strip() for kind in annotation.split("|")]
    if "None" in kinds and text.lower() == "none":
        return None
    kind = kinds[0]
    try:
        if kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError
            return text.lower() in _TRUE
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        optional = " or none" if "None" in kinds else ""
        expected = "true or false" if kind == "bool" else f"{'an' if kind == 'int' else 'a'} {kind}"
        raise ValueError(f"profile field {name}={text!r}; expected {expected}{optional}") from None
    return text


def profile_from_parameter(value: str | dict[str, Any]) -> Profile:
    """The profile a notebook's PROFILE parameter names: a profile name, or
    `{"name": NAME, "overrides": {field: value}}` (what `tripletlib book --set` passes)."""
    if isinstance(value, str):
        return resolve_profile(value)
    if isinstance(value, dict) and set(value) <= {"name", "overrides"} and "name" in value:
        return resolve_profile(value["name"], **(value.get("overrides") or {}))
    raise ValueError(
        f"PROFILE={value!r}; expected a profile name ({sorted(PROFILES)}) or "
        '{"name": NAME, "overrides": {FIELD: VALUE}}'
    )


# What the CPU profiles change against the thesis' recipe (notebook 00 tabulates it): a quarter of
# the backbones' channels, per-image input standardisation, colour-cast augmentation and the
# shipped label-free start in ImageNet's place (pretraining.START_RECIPE; docs/benchmarks.md,
# "The rows from the label-free start": the rates were chosen there, on the validation set).
CPU_RECIPE: dict[str, Any] = {
    "width_multiplier": 0.25, "input_normalization": "per-image", "shift": 0.1,
    "rotation_degrees": 0.0, "zoom": 0.0, "colour_gain": 0.2, "brightness": 0.2,
    "warm_start": "label-free", "learning_rate": 1e-3, "mildnet_learning_rate": 3e-4,
}  # fmt: skip

# The GPU profile's recipe: the CPU profiles' at full width and 256x128, from a label-free start
# of that size, which scripts/gpu_run.py trains on the device first (the shipped ones are 64x32).
GPU_RECIPE: dict[str, Any] = {
    key: value for key, value in CPU_RECIPE.items()
    if key not in ("width_multiplier", "learning_rate", "mildnet_learning_rate",
                   "shift", "rotation_degrees", "zoom")
}  # fmt: skip

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        image_height=64,
        image_width=32,
        weights=None,
        epochs=2,
        steps_per_epoch=100,
        batchnorm_momentum=0.9,
        triplet_batch_size=16,
        pk_identities=8,
        pk_images=4,
        synthetic_train_ids=150,
        synthetic_test_ids=30,
        embed_batch_size=128,
        **CPU_RECIPE,
        description="CI and nbval: one to two minutes per row on 2 CPU cores, synthetic data.",
    ),
    "cpu": Profile(
        name="cpu",
        image_height=64,
        image_width=32,
        weights=None,
        epochs=2,
        steps_per_epoch=250,
        batchnorm_momentum=0.9,
        # 22 triplets (66 images) a step, as many images as a P x K batch of 8 x 8: the thesis'
        # 32 would make the offline rows' steps 1.5x dearer on two cores.
        triplet_batch_size=22,
        # 10 % hard triplets in the second offline iteration instead of the thesis' 30 %: on the
        # cpu-sized validation set 30 % cost the lossless row 15 mAP points and the triplet row 2
        # (docs/benchmarks.md, "Hard triplets in the second offline iteration").
        hard_fraction=0.1,
        pk_identities=8,
        pk_images=8,
        synthetic_train_ids=751,
        synthetic_test_ids=80,
        **CPU_RECIPE,
        description="The book's default on 2 CPU cores (README: measured time), synthetic data.",
    ),
    "thesis": Profile(
        name="thesis",
        image_height=256,
        image_width=128,
        weights="imagenet",
        learning_rate=1e-4,
        epochs=100,
        steps_per_epoch=None,
        batchnorm_momentum=0.99,
        triplet_batch_size=32,
        pk_identities=8,
        pk_images=8,
        dataset="market1501",
        description="The full recipe of Section 3.3.1: real Market-1501, ImageNet weights, a GPU.",
    ),
    "gpu": Profile(
        name="gpu",
        image_height=256,
        image_width=128,
        weights=None,
        learning_rate=1e-3,
        # VGG16 has no BatchNorm: from random weights MILDNet takes 1e-4 (README).
        mildnet_learning_rate=1e-4,
        epochs=2,
        steps_per_epoch=150,
        batchnorm_momentum=0.9,
        triplet_batch_size=32,
        pk_identities=8,
        pk_images=8,
        synthetic_train_ids=751,
        synthetic_test_ids=750,
        synthetic_preset="market",
        embed_batch_size=256,
        **GPU_RECIPE,
        precision="mixed_bfloat16",
        device_resident=True,
        description="The whole book on one H200 under JAX: the market-sized synthetic set, "
        "256x128, full-width backbones from a label-free start of that size (scripts/gpu_run.py "
        "trains it on the device and passes --set warm_start=FOLDER), bf16, device-resident "
        "batches; 2 x 2 epochs x 150 steps per row; not run on a GPU yet.",
    ),
}


def resolve_profile(name: str, **overrides: Any) -> Profile:
    """The named profile, with optional field overrides (e.g. `epochs=1`)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    return profile.replace(**overrides) if overrides else profile


# The rows of thesis tables 4.1-4.3 (Section 4.2): backbone, loss, mining.
THESIS_ROWS: dict[str, tuple[str, str, str]] = {
    "mildnet-triplet-offline": ("mildnet", "triplet", "offline"),
    "resnet50-triplet-offline": ("resnet50", "triplet", "offline"),
    "resnet50-lossless-offline": ("resnet50", "lossless", "offline"),
    "resnet50-batch-all-online": ("resnet50", "batch-all", "online"),
}

# The metrics of a row that the thesis tables print, each a fraction in [0, 1] (Section 4.1).
TABLE_METRICS = ("rank1", "rank5", "mAP")

BACKBONE_CHOICES = ("resnet50", "mildnet")
LOSS_CHOICES = ("triplet", "lossless", "batch-all", "batch-hard")
MINING_CHOICES = ("offline", "online")
OFFLINE_LOSSES = ("triplet", "lossless")
ONLINE_LOSSES = ("batch-all", "batch-hard")


def row_name(backbone: str, loss: str, mining: str) -> str:
    """`resnet50-lossless-offline`: the key used in metrics files and tables."""
    validate_row(backbone, loss, mining)
    return f"{backbone}-{loss}-{mining}"


def parse_row(row: str) -> tuple[str, str, str]:
    """`"resnet50-batch-hard-online"` -> `("resnet50", "batch-hard", "online")`, the inverse of
    `row_name`; an unknown or inconsistent row raises a ValueError naming it."""
    backbone, _, rest = str(row).partition("-")
    loss, _, mining = rest.rpartition("-")
    if not (backbone and loss and mining):
        raise ValueError(
            f"unknown row {row!r}; expected BACKBONE-LOSS-MINING, e.g. {next(iter(THESIS_ROWS))!r}"
        )
    validate_row(backbone, loss, mining)
    return backbone, loss, mining


def validate_row(backbone: str, loss: str, mining: str) -> None:
    """Raise a clear ValueError for an unknown or inconsistent backbone/loss/mining choice."""
    for value, choices, what in (
        (backbone, BACKBONE_CHOICES, "backbone"),
        (loss, LOSS_CHOICES, "loss"),
        (mining, MINING_CHOICES, "mining"),
    ):
        if value not in choices:
            raise ValueError(f"unknown {what} {value!r}; choose one of {list(choices)}")
    if mining == "offline" and loss not in OFFLINE_LOSSES:
        raise ValueError(
            f"loss {loss!r} works on PK batches, so it needs --mining online "
            f"(offline mining trains on triplets with one of {list(OFFLINE_LOSSES)})"
        )
    if mining == "online" and loss not in ONLINE_LOSSES:
        raise ValueError(
            f"loss {loss!r} works on (anchor, positive, negative) triplets, so it needs --mining "
            f"offline (online mining uses one of {list(ONLINE_LOSSES)})"
        )
