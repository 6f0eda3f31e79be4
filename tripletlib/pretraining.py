"""The start the CPU profiles' rows fine-tune, in ImageNet's role (Section 3.3.1).

The thesis never trains from random weights: both backbones start from ImageNet, features that
alone are no re-identification model (ImageNet ResNet-50 on Market-1501: Rank-1 6.7 / mAP 2.2)
and that fine-tuning then turns into one. Offline, ImageNet weights are out of reach, so the `ci`
and `cpu` profiles start from a label-free one: the whole embedder (backbone and head) trained by
self-supervised instance discrimination (`selfsupervised.train_instance_discrimination`, NT-Xent
on two augmented views of each image) on `START_POOL`, unlabelled synthetic people that no book
split holds. Its features alone score about as ImageNet's do on Market (docs/benchmarks.md);
what a row reaches is what the triplet training adds to it.

`scripts/make_starts.py` reproduces the shipped files in `START_DIR` and their JSON records; its
`--validate` scores the start on `VALIDATION_SET`, the people where every setting is chosen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras

# `Profile.warm_start` value of the label-free start (`selfsupervised`, scripts/make_starts.py).
LABEL_FREE = "label-free"
START_DIR = Path(__file__).resolve().parent / "starts"
# Unlabelled people drawn with their own seed: no book split (seeds 0-2) and no validation set.
START_POOL = {"train_ids": 600, "test_ids": 4, "seed": 1000}
# People outside every book split, where the start's and the rows' settings are chosen.
VALIDATION_SET = {"train_ids": 751, "test_ids": 80, "seed": 2000}
START_RECIPE = {
    "input_shape": (64, 32, 3), "width": 0.25, "input_normalization": "per-image",
    "batchnorm_momentum": 0.9, "steps": {"resnet50": 1500, "mildnet": 1500},
    "batch_size": 64, "temperature": 0.1, "warmup_steps": 100,
    "learning_rate": {"resnet50": 1e-3, "mildnet": 3e-4},
    "colour_gain": 0.4, "brightness": 0.4, "erasing": 0.5, "seed": 0,
}  # fmt: skip


def start_path(backbone: str) -> Path:
    """The shipped label-free start of `backbone`'s whole embedder (START_RECIPE)."""
    recipe = START_RECIPE
    height, width, _ = recipe["input_shape"]
    return START_DIR / f"{backbone}-w{recipe['width']:g}-{height}x{width}.weights.h5"


def start_record_path(weights_path: Path) -> Path:
    """The JSON record written beside a start's ``.weights.h5`` file."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.name.replace(".weights.h5", ".json"))


def start_record(backbone: str) -> dict[str, Any]:
    """The JSON record beside `start_path(backbone)` (recipe, pool, losses, seconds, SHA-256), or
    a clear error when the package lacks the file (`scripts/make_starts.py` writes both)."""
    path = start_path(backbone)
    record_path = start_record_path(path)
    if not path.is_file() or not record_path.is_file():
        raise FileNotFoundError(
            f"the shipped start {path} (or its .json record) is missing; recreate it with "
            "`python scripts/make_starts.py --work /tmp/starts`"
        )
    return {**json.loads(record_path.read_text()), "shipped": path.name}


def load_start(embedder: keras.Model, backbone: str) -> keras.Model:
    """Load the shipped label-free start into `embedder`, backbone and head (FC 1024-BN-ReLU-FC
    128, Section 3.1.5; MILDNet's 1,472 -> 2,048 -> 2,048), so that every row of a backbone
    starts from the same embedding."""
    path = start_path(backbone)
    try:
        embedder.load_weights(path)
    except ValueError as error:
        raise ValueError(
            f"the shipped start {path} does not fit the {backbone} embedder {embedder.name} (it "
            f"needs START_RECIPE's input {START_RECIPE['input_shape']} and width "
            f"{START_RECIPE['width']}): {error}"
        ) from None
    return embedder
