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

from pathlib import Path
from typing import Any

import keras

from tripletlib import files

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


def start_path(
    backbone: str,
    input_shape: tuple[int, int, int] = START_RECIPE["input_shape"],
    width: float = START_RECIPE["width"],
    folder: str | Path | None = None,
) -> Path:
    """The label-free start of `backbone`'s whole embedder at `input_shape` and `width`, in
    `folder` (default `START_DIR`, the shipped ones: START_RECIPE's 64x32 at a quarter width)."""
    height, image_width, _ = input_shape
    return Path(folder or START_DIR) / f"{backbone}-w{width:g}-{height}x{image_width}.weights.h5"


def start_folder(warm_start: str) -> Path:
    """Where a profile's `warm_start` lives: LABEL_FREE, the shipped starts (`START_DIR`); a
    folder path, starts that `scripts/make_starts.py --out FOLDER` wrote (`scripts/gpu_run.py`
    trains the `gpu` profile's there, on the device, at 256x128 and full width)."""
    return START_DIR if warm_start == LABEL_FREE else Path(warm_start).expanduser()


def profile_start_path(profile: Any, backbone: str) -> Path:
    """The start that `profile` (`config.Profile` with a `warm_start`) loads for `backbone`."""
    return start_path(
        backbone, profile.input_shape, profile.width_multiplier, start_folder(profile.warm_start)
    )


def start_record_path(weights_path: Path) -> Path:
    """The JSON record written beside a start's ``.weights.h5`` file."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.name.replace(".weights.h5", ".json"))


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"the label-free start {path} (or its .json record) is missing; make it with `python "
        f"scripts/make_starts.py --work /tmp/starts --out {path.parent}` and the profile's "
        "--input-size and --width"
    )


def start_record(backbone: str, path: str | Path | None = None) -> dict[str, Any]:
    """The JSON record beside the start `path` (default: the shipped `start_path(backbone)`):
    recipe, pool, losses, seconds, SHA-256; a clear error when either file is missing."""
    path = Path(path) if path is not None else start_path(backbone)
    record_path = start_record_path(path)
    if not path.is_file() or not record_path.is_file():
        raise _missing(path)
    way_out = f"make it again with `python scripts/make_starts.py --out {path.parent}`"
    record = files.read_json(record_path, way_out)
    if not isinstance(record, dict):
        raise files.DamagedFileError(f"{record_path} is damaged (not a JSON object); {way_out}")
    return {**record, "shipped": path.name}


def check_profile_starts(profile: Any, backbones: tuple[str, ...] = ("resnet50", "mildnet")) -> None:
    """Raise the missing-start error before any work when `profile.warm_start` names starts that
    are not there (a book checks this before its first notebook)."""
    if profile.warm_start is None:
        return
    for backbone in backbones:
        start_record(backbone, profile_start_path(profile, backbone))


def load_start(embedder: keras.Model, backbone: str, path: str | Path | None = None) -> keras.Model:
    """Load the label-free start `path` (default: the shipped one) into `embedder`, backbone and
    head (FC 1024-BN-ReLU-FC 128, Section 3.1.5; MILDNet's 1,472 -> 2,048 -> 2,048), so that
    every row of a backbone starts from the same embedding."""
    path = Path(path) if path is not None else start_path(backbone)
    if not path.is_file():
        raise _missing(path)
    files.load_weights(
        embedder, path, f"it does not fit the {backbone} embedder {embedder.name} (a start fits "
        "the input size and width its file name gives), or make it again with "
        f"`python scripts/make_starts.py --out {path.parent}`",
    )  # fmt: skip
    return embedder
