"""Training throughput of the thesis profile (Section 3.3.1) on the active Keras backend.

Builds the `thesis` profile (256x128 inputs, triplets of 32, Adam 1e-4) with random weights (no
ImageNet download), the three-branch triplet model of Fig. 3.7 with the augmentation of Section
3.1.3 inside the graph (so it runs on the accelerator) and the lossless triplet loss (Eq. 3.6),
then times training steps on a synthetic Market-shaped dataset generated on the spot (`--data DIR`
reuses a Market-1501-layout folder, or generates into it when it has no bounding_box_train/).
Reported per backbone, batch size and input path:

- images/second in training (3 images per triplet) after `--warmup-steps` (compile) steps;
- seconds per epoch: ceil(12,936 / batch size) steps, one triplet per Market-1501 training image;
- the projected time of one thesis row: 100 epochs x 2 offline iterations (Section 4.2.3). The
  projection counts training steps only: no validation passes, mining or checkpoints. The thesis
  needed "approximately 8 hours" for 100 epochs on an RTX 2080 Ti (Sections 3.3.3, 4.2.1);
- compile time: the first step minus one steady step;
- embedding throughput (`models.embed_images` over the gallery) and the evaluation time (query x
  gallery squared distances + `evaluation.evaluate`; Market-size with `--preset market`).

Input paths: the plain `TripletDataset` (a PyDataset: images gathered and converted on the host
every step) and, with `--device-resident`, the same triplets gathered with `keras.ops.take` from
uint8 images kept on the accelerator, so only (B, 3) indices cross from the host per step (JAX;
under TensorFlow Keras' PyDataset adapter still routes batches through tf.data on the host).
Only `keras` / `keras.ops` are used, so it runs under KERAS_BACKEND=jax without TensorFlow.

`--augmentation fused` replaces the library's augmentation layers (three warps; under JAX each
interpolates over the channel axis too) by `FusedAugmentation`: the same random draws composed
into one bilinear warp. On an H200 under JAX the library's layers made ResNet-50's fp32 training
steps about 120-150 times slower (docs/benchmarks.md). Every report also times both augmentations alone on one step's images, and
under `--mixed-precision` compares the embeddings with a float32 copy of the embedder.

    # 2-core CPU smoke run, about a minute:
    python benchmarks/train_throughput.py --preset small --image-size 64x32 --steps 3 \
        --warmup-steps 1 --backbones resnet50
    # the GPU profile:
    KERAS_BACKEND=jax python benchmarks/train_throughput.py --workers 16 --device-resident \
        --mixed-precision --augmentation fused --extra-batch-sizes 256 --json throughput.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import inspect
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from tripletlib import (
    augment,
    config,
    data,
    evaluation,
    images,
    losses,
    models,
    retrieval,
    sampling,
    synthetic,
)

# Market-1501's training images: one triplet per image and epoch (TripletDataset's default epoch).
MARKET_TRAIN_IMAGES = synthetic.PRESETS["market"].train_images
IMAGES_PER_TRIPLET = 3
SPLITS = ("train", "gallery", "query")
THESIS = config.resolve_profile("thesis")
THESIS_REFERENCE = "thesis: ~8 h per 100 epochs, RTX 2080 Ti, batch 32 (Sections 3.3.3, 4.2.1)"
PROJECTION_ASSUMPTION = (
    "row = profile.epochs (100) x profile.offline_iterations (2) epochs of ceil(12936 / batch "
    "size) training steps at the measured seconds per step; validation passes, hard-negative "
    "mining between the iterations and checkpoints are not included"
)
TRAINING_HEADERS = (
    "backbone", "input path", "batch (triplets)", "train images/s", "s/step", "compile s",
    "min/epoch", "h/100 epochs", "h/row (x2)", "augmentation", "last loss",
)  # fmt: skip
EMBEDDING_HEADERS = (
    "backbone", "embedding dtype", "embed images/s", "query x gallery", "distances s",
    "evaluate s", "evaluation s", "non-finite rows", "rel. error vs float32",
)  # fmt: skip
# "library": tripletlib.augment (four Keras layers, three warps); "fused": `FusedAugmentation`
# (the same random transformations composed into one warp); "none": no augmentation.
AUGMENTATIONS = ("library", "fused", "none")
VERSION_PACKAGES = (
    "keras", "numpy", "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "tensorflow",
    "tensorflow-cpu", "torch", "tripletlib",
)  # fmt: skip


@dataclass(frozen=True)
class BenchmarkOptions:
    """What to measure; `main` builds it from the command line."""

    preset: str = "market"
    data: Path | None = None
    workers: int = 1
    cache_dir: Path | None = None
    backbones: tuple[str, ...] = ("resnet50", "mildnet")
    image_size: tuple[int, int] = (256, 128)
    batch_sizes: tuple[int, ...] = (32,)
    steps: int = 50
    warmup_steps: int = 5
    embed_batch_size: int = 128
    mixed_precision: bool = False
    device_resident: bool = False
    augmentation: str = "library"  # one of AUGMENTATIONS
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class TrainingResult:
    """One (backbone, batch size, input path) measurement and its projection to a thesis row."""

    backbone: str
    input_path: str
    batch_size: int
    images_per_step: int
    warmup_steps: int
    steps: int
    first_step_seconds: float
    compile_seconds: float
    seconds_per_step: float
    images_per_second: float
    steps_per_epoch: int
    seconds_per_epoch: float
    projected_iteration_seconds: float  # profile.epochs epochs
    projected_row_seconds: float  # profile.epochs x profile.offline_iterations epochs
    last_loss: float
    losses_finite: bool
    augmentation: str = "library"


@dataclass(frozen=True)
class EmbeddingResult:
    """Inference throughput over the gallery and the evaluation time of one backbone."""

    backbone: str
    embedder_output_dtype: str
    library_embedder_output_dtype: str  # before the float32 fix under mixed precision
    triplet_output_dtype: str
    embedding_dim: int
    gallery_images: int
    query_images: int
    embed_batch_size: int
    embed_seconds: float
    embed_images_per_second: float
    distance_seconds: float | None  # None (not measured) when the embeddings were not finite
    evaluate_seconds: float | None
    evaluation_seconds: float | None  # distances + evaluate
    num_valid_queries: int
    nonfinite_embeddings: int  # query and gallery rows holding a NaN or an infinity
    # Mixed precision only: the same weights in a float32 embedder, embeddings of the first
    # `precision_check_images` gallery images; ||e_bf16 - e_fp32|| / ||e_fp32|| (None otherwise).
    precision_check_images: int = 0
    float32_relative_error: float | None = None


@dataclass
class BenchmarkData:
    """Decoded uint8 images `(N, H, W, 3)` and ids per split, with how long they took."""

    root: str
    kind: str
    generated: bool
    generation_seconds: float
    decode_seconds: float
    splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # images, person, camera ids

    def counts(self) -> dict[str, int]:
        return {split: len(arrays[0]) for split, arrays in self.splits.items()}


# ------------------------------------------------------------------------------ input checks


def parse_image_size(text: str) -> tuple[int, int]:
    """`"256x128"` -> (256, 128): height x width, each an integer >= 32 (the embedders' minimum)."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"--image-size {text!r}; expected HEIGHTxWIDTH, e.g. 256x128")
    height, width = (int(part) for part in parts)
    if height < 32 or width < 32:
        raise ValueError(f"--image-size {text!r}; height and width must be at least 32")
    return height, width


def _check_options(options: BenchmarkOptions) -> None:
    for name in ("steps", "warmup_steps", "embed_batch_size", "workers"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} {value!r}; expected an integer >= 1")
    for size in options.batch_sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"batch size {size!r}; expected an integer >= 1")
    unknown = [name for name in options.backbones if name not in models.BACKBONES]
    if unknown or not options.backbones:
        raise ValueError(f"--backbones {list(options.backbones)}; choose from {models.BACKBONES}")
    if options.augmentation not in AUGMENTATIONS:
        raise ValueError(f"--augmentation {options.augmentation!r}; choose from {AUGMENTATIONS}")
    if options.preset not in synthetic.PRESETS:
        raise ValueError(f"--preset {options.preset!r}; choose from {sorted(synthetic.PRESETS)}")


def thesis_profile(image_size: tuple[int, int]) -> config.Profile:
    """The thesis profile at `image_size`, with random weights (no ImageNet download offline)."""
    height, width = image_size
    return config.resolve_profile("thesis", weights=None, image_height=height, image_width=width)


def project(seconds_per_step: float, batch_size: int, profile: config.Profile) -> dict[str, Any]:
    """Steps and seconds per epoch, and of one iteration and one offline row (2 iterations)."""
    steps_per_epoch = math.ceil(MARKET_TRAIN_IMAGES / batch_size)
    seconds_per_epoch = steps_per_epoch * seconds_per_step
    iteration = profile.epochs * seconds_per_epoch
    return {
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_epoch": seconds_per_epoch,
        "projected_iteration_seconds": iteration,
        "projected_row_seconds": profile.offline_iterations * iteration,
    }


# ------------------------------------------------------------------------------------- data


def prepare_data(options: BenchmarkOptions, root: Path, profile: config.Profile) -> BenchmarkData:
    """Generate the synthetic dataset in `root` unless it holds one, then decode it once."""
    started = time.perf_counter()
    generated = not (root / data.SPLIT_FOLDERS["train"]).is_dir()
    if generated:
        synthetic.generate_synthetic_market(
            root,
            preset=options.preset,
            seed=options.seed,
            workers=options.workers,
            progress=options.progress,
        )
    generation_seconds = time.perf_counter() - started
    table = data.load_market1501(root, progress=options.progress)
    started = time.perf_counter()
    pixels = images.load_image_array(
        table,
        profile.image_height,
        profile.image_width,
        cache_dir=options.cache_dir,
        progress=options.progress,
    )
    decode_seconds = time.perf_counter() - started
    splits = {}
    for split in SPLITS:
        rows = np.flatnonzero(table["split"].to_numpy() == split)
        person_ids = table["person_id"].to_numpy()[rows]
        splits[split] = (np.asarray(pixels[rows]), person_ids, table["camera_id"].to_numpy()[rows])
    kind = config.dataset_kind(root)
    return BenchmarkData(str(root), kind, generated, generation_seconds, decode_seconds, splits)


class DeviceTripletDataset(keras.utils.PyDataset):
    """The triplets of `triplets` (same seed, same rows) gathered from images on the device.

    `device_images` is the uint8 training array after `keras.ops.convert_to_tensor`; per step only
    the `(B, 3)` rows of `TripletDataset.triplet_indices` are uploaded, then one `keras.ops.take`
    gathers the 3B images and they are cast to float32 pixels there.
    """

    def __init__(self, triplets: sampling.TripletDataset, device_images: Any) -> None:
        super().__init__()
        self.triplets = triplets
        self.device_images = device_images
        self.targets = keras.ops.zeros((triplets.batch_size,), dtype="float32")

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, index: int):
        rows = self.triplets.triplet_indices(index)  # (B, 3): anchor, positive, negative
        order = keras.ops.convert_to_tensor(rows.T.reshape(-1), dtype="int32")
        batch = keras.ops.cast(keras.ops.take(self.device_images, order, axis=0), "float32")
        anchor, positive, negative = keras.ops.split(batch, 3, axis=0)
        return (anchor, positive, negative), self.targets


# ------------------------------------------------------------------------------------ model


@contextlib.contextmanager
def global_dtype_policy(policy: str) -> Iterator[None]:
    """Build layers under `policy` (e.g. "mixed_bfloat16"); the previous policy comes back after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_benchmark_embedder(
    backbone: str, profile: config.Profile, mixed_precision: bool
) -> tuple[keras.Model, str]:
    """The row's embedder and the dtype the library's own output has.

    Under "mixed_bfloat16" the library's `L2Normalization` follows the global policy and returns
    bfloat16; the last layer is then replaced by a float32 `L2Normalization` on the same features
    (Eq. 3.5 in float32), so embeddings, distances and the loss keep float32 precision.
    """
    options = {
        "input_shape": profile.input_shape,
        "weights": profile.weights,
        "freeze_layers": profile.freeze_layers,
        "batchnorm_momentum": profile.batchnorm_momentum,
    }
    accepted = inspect.signature(models.BUILDERS[backbone]).parameters
    options = {key: value for key, value in options.items() if key in accepted}
    policy = "mixed_bfloat16" if mixed_precision else keras.mixed_precision.global_policy().name
    with global_dtype_policy(policy):
        embedder = models.build_embedder(backbone, **options)
    library_dtype = str(embedder.outputs[0].dtype)
    if library_dtype != "float32":
        features = embedder.get_layer("l2_normalization").input
        normalized = models.L2Normalization(dtype="float32", name="l2_normalization_float32")
        embedder = keras.Model(embedder.inputs, normalized(features), name=embedder.name)
    return embedder, library_dtype


class FusedAugmentation(keras.layers.Layer):
    """Section 3.1.3's random transformations composed into one bilinear warp per image.

    The same draws as `augment.build_augmentation`: shifts of up to `shift` x height / width,
    rotations of up to `rotation_degrees`, height and width zoom factors drawn independently from
    `zoom` (0.8 samples 80 % of the image), a horizontal flip with probability 1/2 and "nearest"
    filling (source coordinates clamped to the image). Like Keras' `ImageDataGenerator` they are
    composed into one affine map (output pixel -> source point) and the image is sampled once,
    where the library's layers warp three times; Keras' JAX `affine_transform` also interpolates
    over the channel axis (8 gathers per value), this samples 4 neighbours per pixel. Identity
    unless `training=True`.
    """

    def __init__(
        self,
        shift: float = 0.2,
        rotation_degrees: float = 25.0,
        zoom: tuple[float, float] = (0.8, 1.2),
        flip: bool = True,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.shift, self.rotation_degrees = float(shift), float(rotation_degrees)
        self.zoom, self.flip = (float(zoom[0]), float(zoom[1])), bool(flip)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training:
            return inputs
        ops = keras.ops
        images = ops.cast(inputs, "float32")
        batch, height, width, channels = (ops.shape(images)[0], *images.shape[1:])

        def uniform(low, high):
            return keras.random.uniform((batch, 1, 1), low, high, seed=self.seed_generator)

        angle = uniform(-1.0, 1.0) * (self.rotation_degrees * math.pi / 180.0)
        shift_y = uniform(-self.shift, self.shift) * height
        shift_x = uniform(-self.shift, self.shift) * width
        zoom_y, zoom_x = uniform(*self.zoom), uniform(*self.zoom)
        mirror = ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if self.flip else 1.0
        centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
        rows = ops.reshape(ops.arange(height, dtype="float32") - centre_y, (1, height, 1))
        cols = ops.reshape(ops.arange(width, dtype="float32") - centre_x, (1, 1, width)) * mirror
        # source = R(angle) (Z p + t) + centre, as ImageDataGenerator's rotation @ shift @ zoom
        zoomed_y, zoomed_x = zoom_y * rows + shift_y, zoom_x * cols + shift_x
        cos, sin = ops.cos(angle), ops.sin(angle)
        source_y = cos * zoomed_y - sin * zoomed_x + centre_y
        source_x = sin * zoomed_y + cos * zoomed_x + centre_x
        source_y = ops.clip(source_y, 0.0, height - 1.0)  # fill_mode="nearest"
        source_x = ops.clip(source_x, 0.0, width - 1.0)
        y0, x0 = ops.floor(source_y), ops.floor(source_x)
        wy, wx = source_y - y0, source_x - x0
        y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
        y1, x1 = ops.minimum(y0 + 1, height - 1), ops.minimum(x0 + 1, width - 1)
        flat = ops.reshape(images, (batch, height * width, channels))

        def gather(y, x):
            index = ops.reshape(y * width + x, (batch, height * width, 1))
            index = ops.broadcast_to(index, (batch, height * width, channels))
            values = ops.take_along_axis(flat, index, axis=1)
            return ops.reshape(values, (batch, height, width, channels))

        wy, wx = ops.expand_dims(wy, -1), ops.expand_dims(wx, -1)
        top = gather(y0, x0) * (1.0 - wx) + gather(y0, x1) * wx
        bottom = gather(y1, x0) * (1.0 - wx) + gather(y1, x1) * wx
        return top * (1.0 - wy) + bottom * wy

    def compute_output_shape(self, input_shape):
        return input_shape


def build_augmentation(kind: str, seed: int) -> keras.layers.Layer | None:
    """The augmentation layer of `--augmentation` (`AUGMENTATIONS`); None for "none"."""
    if kind == "library":
        return augment.build_augmentation(seed=seed)
    if kind == "fused":
        return FusedAugmentation(seed=seed, name="fused_augmentation")
    if kind == "none":
        return None
    raise ValueError(f"augmentation {kind!r}; choose from {AUGMENTATIONS}")


def build_benchmark_model(
    embedder: keras.Model, profile: config.Profile, seed: int, augmentation: str = "library"
) -> keras.Model:
    """Fig. 3.7 with the Section 3.1.3 augmentation inside, lossless loss (Eq. 3.6), Adam."""
    layer = build_augmentation(augmentation, seed) if profile.augment else None
    model = models.build_triplet_model(embedder, layer)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=profile.learning_rate),
        loss=losses.LosslessTripletLoss(),
    )
    return model


# --------------------------------------------------------------------------------- measuring


class StepClock(keras.callbacks.Callback):
    """Wall-clock time at which each training step's loss is ready (the step has finished).

    `async_safe`: Keras runs batch-end callbacks off the training loop where the backend allows it
    (JAX), turning the logs into Python floats there, so timing adds no per-step synchronisation.
    """

    async_safe = True

    def __init__(self, total_steps: int, description: str, progress: bool) -> None:
        super().__init__()
        self.first_begin = math.nan
        self.ends = np.full(total_steps, np.nan)
        self.losses = np.full(total_steps, np.nan)
        self.bar = tqdm(total=total_steps, desc=description, unit="step", disable=not progress)

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.first_begin = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.ends[batch] = time.perf_counter()
        self.losses[batch] = float((logs or {}).get("loss", math.nan))
        self.bar.update(1)


def measure_training(
    model: keras.Model,
    dataset: keras.utils.PyDataset,
    backbone: str,
    input_path: str,
    batch_size: int,
    options: BenchmarkOptions,
    profile: config.Profile,
) -> TrainingResult:
    """Fit `warmup_steps + steps` steps; steady speed from the end of warm-up to the last step."""
    total = options.warmup_steps + options.steps
    clock = StepClock(total, f"{backbone} {input_path} B={batch_size}", options.progress)
    model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    clock.bar.close()
    if np.isnan(clock.ends).any():
        raise RuntimeError(f"only {np.count_nonzero(~np.isnan(clock.ends))} of {total} steps ran")
    warm = options.warmup_steps - 1
    seconds_per_step = float(clock.ends[-1] - clock.ends[warm]) / options.steps
    first_step = float(clock.ends[0] - clock.first_begin)
    images_per_step = IMAGES_PER_TRIPLET * batch_size
    return TrainingResult(
        backbone=backbone,
        input_path=input_path,
        batch_size=batch_size,
        images_per_step=images_per_step,
        warmup_steps=options.warmup_steps,
        steps=options.steps,
        first_step_seconds=first_step,
        compile_seconds=max(0.0, first_step - seconds_per_step),
        seconds_per_step=seconds_per_step,
        images_per_second=images_per_step / seconds_per_step,
        last_loss=float(clock.losses[-1]),
        losses_finite=bool(np.isfinite(clock.losses).all()),
        augmentation=options.augmentation,
        **project(seconds_per_step, batch_size, profile),
    )


def float32_relative_error(
    embedder: keras.Model,
    backbone: str,
    profile: config.Profile,
    images: np.ndarray,
    batch_size: int,
) -> float:
    """||e - e_fp32|| / ||e_fp32||: `embedder`'s embeddings against a float32 copy of it."""
    reference, _ = build_benchmark_embedder(backbone, profile, mixed_precision=False)
    reference.set_weights(embedder.get_weights())
    expected = models.embed_images(reference, images, batch_size)
    actual = models.embed_images(embedder, images, batch_size)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def measure_embedding_and_evaluation(
    backbone: str,
    embedder: keras.Model,
    benchmark_data: BenchmarkData,
    batch_size: int,
    dtypes: tuple[str, str],
    progress: bool,
    profile: config.Profile | None = None,
) -> EmbeddingResult:
    """Embed the gallery (after one compiling batch), the queries, then rank and score.

    Non-finite embeddings are counted and reported instead of scored (the evaluation refuses
    them). With `profile` and a mixed-precision `embedder`, its embeddings of the first
    `batch_size` gallery images are compared with a float32 embedder holding the same weights.
    """
    gallery, gallery_pids, gallery_camids = benchmark_data.splits["gallery"]
    query, query_pids, query_camids = benchmark_data.splits["query"]
    models.embed_images(embedder, gallery[:batch_size], batch_size)  # compiles predict
    started = time.perf_counter()
    gallery_embeddings = models.embed_images(embedder, gallery, batch_size, progress)
    embed_seconds = time.perf_counter() - started
    query_embeddings = models.embed_images(embedder, query, batch_size)
    nonfinite = int(
        np.count_nonzero(~np.isfinite(query_embeddings).all(axis=1))
        + np.count_nonzero(~np.isfinite(gallery_embeddings).all(axis=1))
    )
    distance_seconds = evaluate_seconds = evaluation_seconds = None
    num_valid_queries = 0
    if nonfinite:
        print(f"{backbone}: {nonfinite} query/gallery embeddings are not finite; not evaluated")
    else:
        started = time.perf_counter()
        distances = retrieval.squared_distances(query_embeddings, gallery_embeddings)
        distance_seconds = time.perf_counter() - started
        result = evaluation.evaluate(
            distances, query_pids, gallery_pids, query_camids, gallery_camids
        )
        evaluate_seconds = time.perf_counter() - started - distance_seconds
        evaluation_seconds = distance_seconds + evaluate_seconds
        num_valid_queries = result.num_valid_queries
    check_images, relative_error = 0, None
    mixed = embedder.get_layer("embedding").compute_dtype != "float32"
    if profile is not None and mixed:
        check_images = min(batch_size, len(gallery))
        relative_error = float32_relative_error(
            embedder, backbone, profile, gallery[:check_images], batch_size
        )
    return EmbeddingResult(
        backbone=backbone,
        embedder_output_dtype=str(embedder.outputs[0].dtype),
        library_embedder_output_dtype=dtypes[0],
        triplet_output_dtype=dtypes[1],
        embedding_dim=int(gallery_embeddings.shape[1]),
        gallery_images=len(gallery),
        query_images=len(query),
        embed_batch_size=batch_size,
        embed_seconds=embed_seconds,
        embed_images_per_second=len(gallery) / embed_seconds,
        distance_seconds=distance_seconds,
        evaluate_seconds=evaluate_seconds,
        evaluation_seconds=evaluation_seconds,
        num_valid_queries=num_valid_queries,
        nonfinite_embeddings=nonfinite,
        precision_check_images=check_images,
        float32_relative_error=relative_error,
    )


class _Training(keras.layers.Layer):
    """Calls `layer` with training=True (so that `predict` runs the random transformations)."""

    def __init__(self, layer: keras.layers.Layer, **kwargs) -> None:
        super().__init__(**kwargs)
        self.layer = layer

    def call(self, inputs):
        return self.layer(inputs, training=True)

    def compute_output_shape(self, input_shape):
        return input_shape


def time_augmentations(
    images: np.ndarray, count: int, seed: int, repeats: int = 10
) -> dict[str, dict[str, float]]:
    """Seconds to augment `count` images (one step's worth), per augmentation, compiled.

    Each augmentation runs inside a one-layer model's `predict_on_batch` (compiled by the
    backend) on float32 images already on the accelerator; the first call (compile) is timed
    apart, then the median of `repeats` calls.
    """
    pixels = images[np.arange(count) % len(images)].astype(np.float32)
    batch = keras.ops.convert_to_tensor(pixels)
    timings = {}
    for kind in AUGMENTATIONS[:2]:
        inputs = keras.Input(shape=pixels.shape[1:], dtype="float32")
        model = keras.Model(inputs, _Training(build_augmentation(kind, seed))(inputs))
        started = time.perf_counter()
        np.asarray(model.predict_on_batch(batch))
        first = time.perf_counter() - started
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            np.asarray(model.predict_on_batch(batch))
            seconds.append(time.perf_counter() - started)
        timings[kind] = {"first_call_seconds": first, "seconds": float(np.median(seconds))}
    return timings


def training_inputs(
    benchmark_data: BenchmarkData, options: BenchmarkOptions
) -> Iterator[tuple[int, str, keras.utils.PyDataset]]:
    """(batch size, input path, dataset) to time, smallest batch first, plain path first."""
    train_images, person_ids, camera_ids = benchmark_data.splits["train"]
    device_images = keras.ops.convert_to_tensor(train_images) if options.device_resident else None
    for batch_size in sorted(options.batch_sizes):
        triplets = sampling.TripletDataset(
            train_images,
            person_ids,
            camera_ids,
            batch_size=batch_size,
            steps_per_epoch=options.warmup_steps + options.steps,
            seed=options.seed,
        )
        yield batch_size, "pydataset", triplets
        if device_images is not None:
            yield batch_size, "device-resident", DeviceTripletDataset(triplets, device_images)


def is_out_of_memory(error: BaseException) -> bool:
    """True for the accelerator's out-of-memory errors (XLA RESOURCE_EXHAUSTED, TF OOM)."""
    text = str(error)
    return any(mark in text for mark in ("RESOURCE_EXHAUSTED", "Out of memory", "OOM when"))


def benchmark_backbone(
    backbone: str,
    benchmark_data: BenchmarkData,
    options: BenchmarkOptions,
    profile: config.Profile,
) -> tuple[list[TrainingResult], list[dict[str, Any]], EmbeddingResult]:
    """Every batch size and input path of one backbone on one model, then embedding/evaluation.

    A batch that does not fit in the accelerator's memory is recorded as a failure and ends this
    backbone's training rows (larger batches would not fit either); the embedding is then timed
    on a freshly built embedder, since a failed step leaves the model's variables unusable.
    """
    keras.utils.set_random_seed(options.seed)
    embedder, library_dtype = build_benchmark_embedder(backbone, profile, options.mixed_precision)
    model = build_benchmark_model(embedder, profile, options.seed, options.augmentation)
    dtypes = (library_dtype, str(model.outputs[0].dtype))
    if str(embedder.outputs[0].dtype) != "float32":
        raise RuntimeError(f"{backbone} embeddings are {embedder.outputs[0].dtype}, not float32")
    results, failures = [], []
    for batch_size, input_path, dataset in training_inputs(benchmark_data, options):
        try:
            results.append(
                measure_training(model, dataset, backbone, input_path, batch_size, options, profile)
            )
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            first_line = str(error).strip().splitlines()[0][:300]
            failures.append(
                {"backbone": backbone, "batch_size": batch_size, "input_path": input_path,
                 "error": first_line}
            )  # fmt: skip
            print(f"{backbone} batch {batch_size} {input_path}: out of memory ({first_line})")
            break
    if failures:
        del model, embedder
        embedder, _ = build_benchmark_embedder(backbone, profile, options.mixed_precision)
    embedding = measure_embedding_and_evaluation(
        backbone,
        embedder,
        benchmark_data,
        options.embed_batch_size,
        dtypes,
        options.progress,
        profile,
    )
    return results, failures, embedding


# ---------------------------------------------------------------------------------- reporting


def describe_environment() -> dict[str, Any]:
    """Backend, devices (and `jax.devices()` under JAX), versions, host."""
    backend = keras.backend.backend()
    description: dict[str, Any] = {
        "backend": backend,
        "devices": [str(device) for device in keras.distribution.list_devices()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    if backend == "jax":
        import jax

        description["jax_devices"] = [str(device) for device in jax.devices()]
        description["jax_device_kinds"] = [device.device_kind for device in jax.devices()]
        description["jax_default_backend"] = jax.default_backend()
    versions = {}
    for package in VERSION_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    description["versions"] = versions
    return description


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _format(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or "-" for a figure that was not measured (None)."""
    return "-" if value is None else format(value, spec)


def format_report(report: dict[str, Any]) -> str:
    """Two Markdown tables: training throughput, then embedding and evaluation."""
    environment = report["environment"]
    devices = environment.get("jax_device_kinds") or environment["devices"]
    height, width = report["options"]["image_size"]
    training = [
        (
            row["backbone"],
            row["input_path"],
            row["batch_size"],
            f"{row['images_per_second']:.1f}",
            f"{row['seconds_per_step']:.3f}",
            f"{row['compile_seconds']:.1f}",
            f"{row['seconds_per_epoch'] / 60:.1f}",
            f"{row['projected_iteration_seconds'] / 3600:.2f}",
            f"{row['projected_row_seconds'] / 3600:.2f}",
            row.get("augmentation", "library"),
            f"{row['last_loss']:.4f}",
        )
        for row in report["training"]
    ]
    counts = report["dataset"]["counts"]
    dtype_notes = [
        f"{row['backbone']}: the library's L2 normalisation returns "
        f"{row['library_embedder_output_dtype']} under {report['dtype_policy']}; the benchmark "
        "normalises in float32 instead (Eq. 3.5), so embeddings and the loss stay float32."
        for row in report["embedding"]
        if row["library_embedder_output_dtype"] != row["embedder_output_dtype"]
    ]
    embedding = [
        (
            row["backbone"],
            row["embedder_output_dtype"],
            f"{row['embed_images_per_second']:.1f}",
            f"{row['query_images']} x {row['gallery_images']}",
            _format(row["distance_seconds"], ".2f"),
            _format(row["evaluate_seconds"], ".2f"),
            _format(row["evaluation_seconds"], ".2f"),
            row["nonfinite_embeddings"],
            _format(row["float32_relative_error"], ".1e"),
        )
        for row in report["embedding"]
    ]
    timing = report.get("augmentation_timing") or {}
    augmentation_lines = (
        [
            f"Augmenting {timing['images']} images (one step), compiled, median: "
            + ", ".join(
                f"{kind} {timing[kind]['seconds'] * 1000:.1f} ms"
                for kind in AUGMENTATIONS
                if kind in timing
            )
            + ".",
            "",
        ]
        if timing
        else []
    )
    return "\n".join(
        [
            f"backend {environment['backend']} on {', '.join(map(str, devices))}; "
            f"{report['dtype_policy']}; "
            f"{height}x{width}; {report['dataset']['kind']} data {counts}",
            "",
            markdown_table(TRAINING_HEADERS, training),
            *[
                f"{row['backbone']} batch {row['batch_size']} {row['input_path']}: did not fit "
                f"({row['error']})"
                for row in report["failures"]
            ],
            "",
            f"Projection: {PROJECTION_ASSUMPTION}. {THESIS_REFERENCE}.",
            "",
            *augmentation_lines,
            markdown_table(EMBEDDING_HEADERS, embedding),
            *dtype_notes,
        ]
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def run_benchmark(options: BenchmarkOptions, command: str) -> dict[str, Any]:
    """Measure every backbone of `options`; the report that `main` prints and writes as JSON."""
    _check_options(options)
    profile = thesis_profile(options.image_size)
    with contextlib.ExitStack() as stack:
        root = options.data
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="throughput-")))
        benchmark_data = prepare_data(options, Path(root), profile)
        augment_images = IMAGES_PER_TRIPLET * min(options.batch_sizes)
        augmentation_timing = time_augmentations(
            benchmark_data.splits["train"][0], augment_images, options.seed
        )
        training, failures, embedding = [], [], []
        for backbone in options.backbones:
            rows, failed, embedded = benchmark_backbone(backbone, benchmark_data, options, profile)
            training += rows
            failures += failed
            embedding.append(embedded)
    return {
        "command": command,
        "options": {key: _jsonable(value) for key, value in vars(options).items()},
        "profile": profile.to_dict(),
        "dtype_policy": "mixed_bfloat16" if options.mixed_precision else "float32",
        "environment": describe_environment(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "dataset": {
            "root": benchmark_data.root if options.data is not None else None,
            "kind": benchmark_data.kind,
            "preset": options.preset if benchmark_data.generated else None,
            "generated": benchmark_data.generated,
            "counts": benchmark_data.counts(),
            "generation_seconds": benchmark_data.generation_seconds,
            "decode_seconds": benchmark_data.decode_seconds,
        },
        "projection": {
            "train_images": MARKET_TRAIN_IMAGES,
            "epochs": profile.epochs,
            "offline_iterations": profile.offline_iterations,
            "assumption": PROJECTION_ASSUMPTION,
            "thesis_reference": THESIS_REFERENCE,
        },
        "augmentation_timing": {"images": augment_images, **augmentation_timing},
        "training": [dataclasses.asdict(row) for row in training],
        "failures": failures,
        "embedding": [dataclasses.asdict(row) for row in embedding],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="market", help="synthetic preset: market or small")
    parser.add_argument("--data", type=Path, help="dataset folder: reused, or generated there")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing the images")
    parser.add_argument("--cache-dir", type=Path, help="keep the decoded images here (.npy)")
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "mildnet"])
    parser.add_argument("--image-size", default="256x128", help="HEIGHTxWIDTH (thesis: 256x128)")
    parser.add_argument(
        "--batch-size", type=int, default=THESIS.triplet_batch_size, help="triplets per step"
    )
    parser.add_argument("--extra-batch-sizes", type=int, nargs="*", default=[])
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed steps (compile)")
    parser.add_argument("--embed-batch-size", type=int, default=THESIS.embed_batch_size)
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_bfloat16 policy")
    parser.add_argument(
        "--device-resident",
        action="store_true",
        help="also time batches gathered from images kept on the accelerator",
    )
    parser.add_argument(
        "--augmentation",
        default="library",
        choices=AUGMENTATIONS,
        help="library: tripletlib.augment (thesis layers); fused: the same draws, one warp",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line, run the benchmark, print the tables, write `--json`."""
    if argv is None:
        command = shlex.join(sys.orig_argv)
        argv = sys.argv[1:]
    else:
        command = shlex.join(["python", "benchmarks/train_throughput.py", *argv])
    command = f"KERAS_BACKEND={keras.backend.backend()} {command}"
    arguments = build_parser().parse_args(list(argv))
    batch_sizes = sorted({arguments.batch_size, *arguments.extra_batch_sizes})
    options = BenchmarkOptions(
        preset=arguments.preset,
        data=arguments.data,
        workers=arguments.workers,
        cache_dir=arguments.cache_dir,
        backbones=tuple(dict.fromkeys(arguments.backbones)),
        image_size=parse_image_size(arguments.image_size),
        batch_sizes=tuple(batch_sizes),
        steps=arguments.steps,
        warmup_steps=arguments.warmup_steps,
        embed_batch_size=arguments.embed_batch_size,
        mixed_precision=arguments.mixed_precision,
        device_resident=arguments.device_resident,
        augmentation=arguments.augmentation,
        seed=arguments.seed,
        progress=not arguments.no_progress,
    )
    report = run_benchmark(options, command)
    print(format_report(report))
    if arguments.json is not None:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {arguments.json}")
    return report


if __name__ == "__main__":
    main()
