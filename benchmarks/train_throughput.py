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
every step) and, with `--device-resident`, `sampling.DeviceTripletDataset`: the same triplets
gathered with `keras.ops.take` from uint8 images kept on the accelerator, so only (B, 3) indices
cross from the host per step (JAX; under TensorFlow Keras' PyDataset adapter still routes batches
through tf.data on the host). Only `keras` / `keras.ops` are used, so it runs under
KERAS_BACKEND=jax without TensorFlow.

The model is the library's: `models.build_triplet_model` around `augment.build_augmentation` (one
jit-compilable warp, `augment.FusedAugmentation`), `losses.LosslessTripletLoss`, batches from
`sampling`. `--augmentations` lists what is timed in one run, each on its own model: "library"
(the default with "none": steps/s with and without augmentation and their ratio), "none", and
"keras-layers" (Keras' RandomTranslation/Rotation/Zoom/Flip, three warps, `supports_jit` False:
the whole step then runs without `jax.jit`; about 120-150 times slower on an H200 under JAX,
docs/benchmarks.md). Every report also times the library and Keras-layers augmentations alone on
one step's images; `--mixed-precision` builds under `devices.precision("mixed_bfloat16")` and
compares the embeddings with a float32 copy; `--data-parallel` trains under
`devices.data_parallel()` (JAX, all devices).

    # 2-core CPU smoke run, about a minute:
    python benchmarks/train_throughput.py --preset small --image-size 64x32 --steps 3 \
        --warmup-steps 1 --backbones resnet50
    # the GPU profile:
    KERAS_BACKEND=jax python benchmarks/train_throughput.py --workers 16 --device-resident \
        --mixed-precision --extra-batch-sizes 256 --json throughput.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import inspect
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
    devices,
    evaluation,
    files,
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
    "min/epoch", "h/100 epochs", "h/row (x2)", "augmentation", "steps/s", "jit", "last loss",
)  # fmt: skip
EMBEDDING_HEADERS = (
    "backbone", "embedding dtype", "embed images/s", "query x gallery", "distances s",
    "evaluate s", "evaluation s", "non-finite rows", "rel. error vs float32",
)  # fmt: skip
# "library": augment.build_augmentation (`FusedAugmentation`, one warp); "keras-layers":
# augment.build_keras_augmentation (Keras' random layers, three warps); "none": no augmentation.
AUGMENTATIONS = ("library", "keras-layers", "none")
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
    augmentations: tuple[str, ...] = ("library", "none")  # each of AUGMENTATIONS, in order
    data_parallel: bool = False
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
    jit_compile: bool | None = None  # the compiled model's `jit_compile` (jax.jit / XLA)


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
    unknown = [kind for kind in options.augmentations if kind not in AUGMENTATIONS]
    if unknown or not options.augmentations:
        raise ValueError(
            f"--augmentations {list(options.augmentations)}; choose from {AUGMENTATIONS}"
        )
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
    kind = data.dataset_kind(root)
    return BenchmarkData(str(root), kind, generated, generation_seconds, decode_seconds, splits)


# ------------------------------------------------------------------------------------ model


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
    with devices.precision(policy):
        embedder = models.build_embedder(backbone, **options)
    library_dtype = str(embedder.outputs[0].dtype)
    if library_dtype != "float32":
        features = embedder.get_layer("l2_normalization").input
        normalized = models.L2Normalization(dtype="float32", name="l2_normalization_float32")
        embedder = keras.Model(embedder.inputs, normalized(features), name=embedder.name)
    return embedder, library_dtype


def build_augmentation(kind: str, seed: int) -> keras.layers.Layer | None:
    """The augmentation layer of `--augmentation` (`AUGMENTATIONS`); None for "none"."""
    if kind == "library":
        return augment.build_augmentation(seed=seed)
    if kind == "keras-layers":
        return augment.build_keras_augmentation(seed=seed)
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
    augmentation: str = "library",
) -> TrainingResult:
    """Fit `warmup_steps + steps` steps; steady speed from the end of warm-up to the last step."""
    total = options.warmup_steps + options.steps
    description = f"{backbone} {input_path} B={batch_size} {augmentation}"
    clock = StepClock(total, description, options.progress)
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
        augmentation=augmentation,
        jit_compile=bool(model.jit_compile),
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
    for kind in ("library", "keras-layers"):
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
            yield (
                batch_size,
                "device-resident",
                sampling.DeviceTripletDataset(triplets, device_images),
            )


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
    """Every augmentation, batch size and input path of one backbone, then embedding/evaluation.

    Each augmentation of `options.augmentations` gets its own training model (and compiled step)
    around the same embedder. A batch that does not fit in the accelerator's memory is recorded
    as a failure and ends this backbone's training rows (larger batches would not fit either);
    the embedding is then timed on a freshly built embedder, since a failed step leaves the
    model's variables unusable.
    """
    keras.utils.set_random_seed(options.seed)
    embedder, library_dtype = build_benchmark_embedder(backbone, profile, options.mixed_precision)
    devices.check_float32_embeddings(embedder)
    results, failures, dtypes = [], [], (library_dtype, "")
    for augmentation in options.augmentations:
        model = build_benchmark_model(embedder, profile, options.seed, augmentation)
        dtypes = (library_dtype, str(model.outputs[0].dtype))
        for batch_size, input_path, dataset in training_inputs(benchmark_data, options):
            try:
                results.append(
                    measure_training(
                        model, dataset, backbone, input_path, batch_size, options, profile,
                        augmentation,
                    )
                )  # fmt: skip
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                first_line = str(error).strip().splitlines()[0][:300]
                failures.append(
                    {"backbone": backbone, "batch_size": batch_size, "input_path": input_path,
                     "augmentation": augmentation, "error": first_line}
                )  # fmt: skip
                print(f"{backbone} batch {batch_size} {input_path}: out of memory ({first_line})")
                break
        if failures:
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
            f"{1.0 / row['seconds_per_step']:.2f}",
            {True: "yes", False: "no"}.get(row.get("jit_compile"), "-"),
            f"{row['last_loss']:.4f}",
        )
        for row in report["training"]
    ]
    counts = report["dataset"]["counts"]
    ratio_lines = [
        f"{backbone} batch {batch} {path}: a step with the library augmentation takes "
        f"{ratio:.2f}x a step without"
        for (backbone, batch, path), ratio in augmentation_cost(report["training"]).items()
    ]
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
            *ratio_lines,
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


def augmentation_cost(training: Sequence[dict[str, Any]]) -> dict[tuple, float]:
    """(backbone, batch, input path) -> s/step with the library augmentation / s/step without."""
    seconds = {
        (row["backbone"], row["batch_size"], row["input_path"], row.get("augmentation")): row[
            "seconds_per_step"
        ]
        for row in training
    }
    return {
        key[:3]: value / seconds[(*key[:3], "none")]
        for key, value in seconds.items()
        if key[3] == "library" and (*key[:3], "none") in seconds
    }


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
    if options.data_parallel:
        devices.data_parallel()
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
        "augmentation_cost": [
            {"backbone": key[0], "batch_size": key[1], "input_path": key[2], "ratio": ratio}
            for key, ratio in augmentation_cost(
                [dataclasses.asdict(row) for row in training]
            ).items()
        ],
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
        "--augmentations",
        nargs="+",
        default=["library", "none"],
        help=f"each timed on its own model, from {AUGMENTATIONS}: library (one warp), "
        "keras-layers (Keras' random layers, not jit-compiled), none",
    )
    parser.add_argument(
        "--data-parallel", action="store_true", help="devices.data_parallel() (JAX, all devices)"
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
        augmentations=tuple(dict.fromkeys(arguments.augmentations)),
        data_parallel=arguments.data_parallel,
        seed=arguments.seed,
        progress=not arguments.no_progress,
    )
    report = run_benchmark(options, command)
    print(format_report(report))
    if arguments.json is not None:
        files.write_json_atomic(arguments.json, report, sort_keys=False)
        print(f"wrote {arguments.json}")
    return report


if __name__ == "__main__":
    main()
