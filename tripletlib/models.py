"""Embedding networks and the triplet wrapper (Section 3.2.1-3.2.2, Figures 3.7-3.9).

Two base networks map a person image to an L2-normalised embedding:

- `build_resnet50_embedder`: ResNet-50 without its top -> global average pooling -> Dense 1024 ->
  BatchNorm -> ReLU -> Dense 128 -> L2 normalisation (the modified ResNet-50 of Figure 3.9).
- `build_mildnet_embedder`: VGG16 without its top; global average pooling after each of the five
  blocks (64 + 128 + 256 + 512 + 512 = 1472 values) -> concatenation -> Dense 2048 ReLU ->
  Dropout 0.6 -> Dense 2048 -> L2 normalisation (MILDNet, Figure 3.8; gofynd/mildnet `mildnet_vgg16`).

Every embedder takes float32 RGB pixels in [0, 255] and does the ImageNet "caffe" preprocessing
(RGB -> BGR, minus the ImageNet channel means) itself, so the same arrays feed every backbone and
backend. The backbone is nested in the embedder as one layer (`get_backbone`); its first
`freeze_layers` layers are frozen (Section 3.3.1: the first 10).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops
from tqdm.auto import tqdm

from tripletlib import checks
from tripletlib.config import BACKBONE_CHOICES as BACKBONES

# Name of the nested backbone model inside each embedder (see `get_backbone`).
BACKBONE_LAYER_NAMES = {"resnet50": "resnet50", "mildnet": "vgg16"}
# ImageNet channel means in BGR order, as in keras.applications' "caffe" preprocessing.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
MILDNET_POOL_LAYERS = ("block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool")
WEIGHTS_FILE_SUFFIXES = (".h5", ".hdf5", ".keras")


@keras.saving.register_keras_serializable(package="tripletlib")
class CaffePreprocessing(layers.Layer):
    """ImageNet "caffe" preprocessing in the graph: RGB -> BGR, then subtract the BGR means."""

    def call(self, inputs):
        images = ops.cast(inputs, "float32")
        bgr = ops.flip(images, axis=-1)
        return bgr - ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype="float32")


@keras.saving.register_keras_serializable(package="tripletlib")
class L2Normalization(layers.Layer):
    """Scale each embedding to unit Euclidean length (Section 3.2.4, Eq. 3.5)."""

    def __init__(self, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        squared_norm = ops.sum(ops.square(inputs), axis=-1, keepdims=True)
        return inputs * ops.rsqrt(ops.maximum(squared_norm, self.epsilon))

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tripletlib")
class JoinBranches(layers.Layer):
    """The anchor, positive and negative batches `(B, H, W, C)` -> one batch `(3B, H, W, C)`."""

    def call(self, inputs):
        return ops.concatenate(inputs, axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="tripletlib")
class SplitBranches(layers.Layer):
    """`(3B, D)` embeddings of `JoinBranches`' batch -> `(B, 3, D)`: anchor, positive, negative."""

    def call(self, inputs):
        stacked = ops.reshape(inputs, (3, -1, ops.shape(inputs)[-1]))
        return ops.transpose(stacked, (1, 0, 2))

    def compute_output_shape(self, input_shape):
        return (None, 3, input_shape[-1])


INPUT_NORMALIZATIONS = ("caffe", "per-image")
# Stage layout of ResNet-50 (He et al. 2016, Table 1): blocks and bottleneck widths per stage.
RESNET50_STAGES = ((3, 64), (4, 128), (6, 256), (3, 512))
# VGG16's five blocks (Simonyan and Zisserman 2015, configuration D): filters and convolutions.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


@keras.saving.register_keras_serializable(package="tripletlib")
class PerImageStandardization(layers.Layer):
    """Each image's channels to zero mean and unit spread: `(x - mean) / (std + 1)` per image and
    channel. The CPU profiles' input normalisation (the thesis' ImageNet weights expect "caffe"):
    it takes each camera's colour cast and brightness out of the pixels, as grey-world colour
    constancy does, so that a network trained from random weights does not learn the cameras."""

    def call(self, inputs):
        images = ops.cast(inputs, "float32")
        mean = ops.mean(images, axis=(1, 2), keepdims=True)
        spread = ops.std(images, axis=(1, 2), keepdims=True)
        return (images - mean) / (spread + 1.0)


def _input_normalization(kind: str):
    if kind == "caffe":
        return CaffePreprocessing(name="caffe_preprocessing")
    if kind == "per-image":
        return PerImageStandardization(name="per_image_standardization")
    raise ValueError(f"input_normalization must be one of {INPUT_NORMALIZATIONS}; got {kind!r}")


def _scaled(filters: int, width: float) -> int:
    return max(8, int(round(filters * width)))


def _bottleneck(x, filters, stride, momentum, name, first):
    """ResNet-50's bottleneck block (1x1, 3x3, 1x1 convolutions, 4x wider output, skip
    connection), keras.applications' layer names; the residual branch's last BatchNorm starts at
    zero (Goyal et al. 2017), so that each block starts as the identity."""

    def batchnorm(suffix, gamma="ones"):
        return layers.BatchNormalization(
            momentum=momentum, epsilon=1.001e-5, gamma_initializer=gamma, name=name + suffix
        )

    shortcut = x
    if first:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=name + "_0_conv")(x)
        shortcut = batchnorm("_0_bn")(shortcut)
    x = layers.Conv2D(filters, 1, strides=stride, name=name + "_1_conv")(x)
    x = layers.Activation("relu", name=name + "_1_relu")(batchnorm("_1_bn")(x))
    x = layers.Conv2D(filters, 3, padding="same", name=name + "_2_conv")(x)
    x = layers.Activation("relu", name=name + "_2_relu")(batchnorm("_2_bn")(x))
    x = layers.Conv2D(4 * filters, 1, name=name + "_3_conv")(x)
    x = batchnorm("_3_bn", gamma="zeros")(x)
    x = layers.Add(name=name + "_add")([shortcut, x])
    return layers.Activation("relu", name=name + "_out")(x)


def scaled_resnet50(input_shape, width: float, batchnorm_momentum: float = 0.99) -> keras.Model:
    """ResNet-50's bottleneck stages (3, 4, 6, 3 blocks) at `width` times its channels, for small
    inputs: the 7x7 stride-2 stem without the max-pool (a 64x32 image leaves stage 5 at 4x2,
    as a 128x64 one does in the original). Random weights; keras.applications' layer names."""
    shape = _check_image_shape(input_shape)
    inputs = keras.Input(shape)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(_scaled(64, width), 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(momentum=batchnorm_momentum, epsilon=1.001e-5, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    for stage, (blocks, filters) in enumerate(RESNET50_STAGES, start=2):
        for block in range(1, blocks + 1):
            stride = 2 if block == 1 and stage > 2 else 1
            x = _bottleneck(
                x, _scaled(filters, width), stride, batchnorm_momentum,
                f"conv{stage}_block{block}", first=block == 1,
            )  # fmt: skip
    return keras.Model(inputs, x, name=BACKBONE_LAYER_NAMES["resnet50"])


def scaled_vgg16(input_shape, width: float) -> keras.Model:
    """VGG16's 13 convolutions in five blocks at `width` times its channels, He-initialised for
    training from random weights; keras.applications' layer names (`block1_conv1` ...)."""
    shape = _check_image_shape(input_shape)
    inputs = keras.Input(shape)
    x = inputs
    for block, (filters, convolutions) in enumerate(VGG16_BLOCKS, start=1):
        for index in range(1, convolutions + 1):
            x = layers.Conv2D(
                _scaled(filters, width), 3, padding="same", activation="relu",
                kernel_initializer="he_normal", name=f"block{block}_conv{index}",
            )(x)  # fmt: skip
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="vgg16")


def _check_image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if (
        len(shape) != 3
        or shape[2] != 3
        or not all(isinstance(s, int) and s >= 32 for s in shape[:2])
    ):
        raise ValueError(
            f"input_shape must be (height, width, 3) with height and width integers >= 32; "
            f"got {input_shape!r}"
        )
    return shape


def _check_weights(weights: str | os.PathLike | None) -> str | None:
    """Return `weights` as keras.applications expects it, or raise a ValueError saying why not."""
    if weights is None or weights == "imagenet":
        return weights
    if not isinstance(weights, str | os.PathLike):
        raise ValueError(
            f"weights must be None, 'imagenet' or the path of a weights file; got {weights!r}"
        )
    path = Path(weights)
    if not path.is_file():
        raise ValueError(
            f"weights must be None, 'imagenet' or the path of an existing weights file; got "
            f"{str(weights)!r}, which is not an existing file"
        )
    if not path.name.endswith(WEIGHTS_FILE_SUFFIXES):
        raise ValueError(
            f"weights file {str(path)!r} must end with one of {WEIGHTS_FILE_SUFFIXES} "
            "(a Keras weights file such as 'backbone.weights.h5')"
        )
    return str(path)


def _check_positive_int(value: int, name: str) -> None:
    checks.integer(value, name)


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {value!r}")


def _check_width(width: float, weights: str | None) -> float:
    if isinstance(width, bool) or not isinstance(width, int | float) or not 0.0 < width <= 1.0:
        raise ValueError(f"width must be a number in (0, 1]; got {width!r}")
    if width < 1.0 and weights == "imagenet":
        raise ValueError(f"ImageNet weights exist for width 1 only; got width {width}")
    return float(width)


def _freeze_first_layers(backbone: keras.Model, freeze_layers: int) -> None:
    """Freeze `backbone.layers[:freeze_layers]` (input layer included, as in Keras and MILDNet)."""
    if isinstance(freeze_layers, bool) or not isinstance(freeze_layers, int):
        raise ValueError(f"freeze_layers must be an integer; got {freeze_layers!r}")
    if not 0 <= freeze_layers <= len(backbone.layers):
        raise ValueError(
            f"freeze_layers must be between 0 and the backbone's {len(backbone.layers)} layers; "
            f"got {freeze_layers}"
        )
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= freeze_layers


def _add_normalization(embeddings, l2_normalize: bool):
    # float32 even under a mixed-precision policy: distances of unit vectors need the precision.
    if not l2_normalize:
        return embeddings
    return L2Normalization(name="l2_normalization", dtype="float32")(embeddings)


def build_resnet50_embedder(
    input_shape: Sequence[int] = (256, 128, 3),
    embedding_dim: int = 128,
    weights: str | os.PathLike | None = None,
    freeze_layers: int = 10,
    l2_normalize: bool = True,
    batchnorm_momentum: float = 0.99,
    width: float = 1.0,
    input_normalization: str = "caffe",
    name: str = "resnet50_embedder",
) -> keras.Model:
    """Modified ResNet-50 of Section 3.2.2 (Figure 3.9): images `(B, H, W, 3)` -> `(B, D)`.

    `weights`: None (random), "imagenet" or the path of a backbone weights file.
    `batchnorm_momentum` applies to the head's and the backbone's BatchNorm layers.
    `width` 1: keras.applications' ResNet-50 (ImageNet weights possible); below 1:
    `scaled_resnet50` (the CPU profiles). `input_normalization`: "caffe" (ImageNet's) or
    "per-image" (`PerImageStandardization`).
    """
    shape = _check_image_shape(input_shape)
    _check_positive_int(embedding_dim, "embedding_dim")
    _check_fraction(batchnorm_momentum, "batchnorm_momentum")
    weights = _check_weights(weights)
    if _check_width(width, weights) == 1.0:
        backbone = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=shape)
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = batchnorm_momentum
    else:
        backbone = scaled_resnet50(shape, width, batchnorm_momentum)
        if weights is not None:
            backbone.load_weights(weights)
    _freeze_first_layers(backbone, freeze_layers)

    images = keras.Input(shape=shape, dtype="float32", name="images")
    features = backbone(_input_normalization(input_normalization)(images))
    x = layers.GlobalAveragePooling2D(name="global_average_pooling")(features)
    x = layers.Dense(1024, name="dense_1024")(x)
    x = layers.BatchNormalization(momentum=batchnorm_momentum, name="dense_1024_bn")(x)
    x = layers.ReLU(name="dense_1024_relu")(x)
    x = layers.Dense(embedding_dim, name="embedding")(x)
    return keras.Model(images, _add_normalization(x, l2_normalize), name=name)


def build_mildnet_embedder(
    input_shape: Sequence[int] = (256, 128, 3),
    embedding_dim: int = 2048,
    weights: str | os.PathLike | None = None,
    freeze_layers: int = 10,
    l2_normalize: bool = True,
    dropout: float = 0.6,
    width: float = 1.0,
    input_normalization: str = "caffe",
    name: str = "mildnet_embedder",
) -> keras.Model:
    """MILDNet of Section 3.2.2 (Figure 3.8): VGG16 with GAP skip connections -> `(B, D)`.

    The five pooled block outputs are concatenated to 1472 values (layer "concatenate_1472"; `width`
    times that below 1), then Dense 2048 ReLU -> Dropout -> Dense `embedding_dim` -> L2
    normalisation. `width` 1: keras.applications' VGG16; below 1: `scaled_vgg16`.
    """
    shape = _check_image_shape(input_shape)
    _check_positive_int(embedding_dim, "embedding_dim")
    _check_fraction(dropout, "dropout")
    weights = _check_weights(weights)
    if _check_width(width, weights) == 1.0:
        vgg = keras.applications.VGG16(include_top=False, weights=weights, input_shape=shape)
    else:
        vgg = scaled_vgg16(shape, width)
        if weights is not None:
            vgg.load_weights(weights)
    _freeze_first_layers(vgg, freeze_layers)
    # The same layers (and weights) as `vgg`, with the five block outputs exposed.
    backbone = keras.Model(
        vgg.inputs,
        [vgg.get_layer(layer_name).output for layer_name in MILDNET_POOL_LAYERS],
        name=BACKBONE_LAYER_NAMES["mildnet"],
    )

    images = keras.Input(shape=shape, dtype="float32", name="images")
    block_outputs = backbone(_input_normalization(input_normalization)(images))
    pooled = [
        layers.GlobalAveragePooling2D(name=f"gap_{layer_name}")(output)
        for layer_name, output in zip(MILDNET_POOL_LAYERS, block_outputs, strict=True)
    ]
    x = layers.Concatenate(name="concatenate_1472")(pooled)
    x = layers.Dense(2048, activation="relu", name="dense_2048")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(embedding_dim, name="embedding")(x)
    return keras.Model(images, _add_normalization(x, l2_normalize), name=name)


BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "resnet50": build_resnet50_embedder,
    "mildnet": build_mildnet_embedder,
}


def build_embedder(
    backbone: str,
    input_shape: Sequence[int] = (256, 128, 3),
    weights: str | os.PathLike | None = None,
    freeze_layers: int = 10,
    batchnorm_momentum: float = 0.99,
    **options,
) -> keras.Model:
    """The embedder of a thesis row, "resnet50" or "mildnet", with its default head (Section 3.2.2).

    One signature for both backbones (`config.Profile.embedder_options()` gives a profile's
    values). `batchnorm_momentum` sets ResNet-50's BatchNorm layers; MILDNet (VGG16) has none, so
    it does not apply there. `options` go to the backbone's builder (`embedding_dim`,
    `l2_normalize`, MILDNet's `dropout`, ...).
    """
    if backbone not in BUILDERS:
        raise ValueError(f"backbone must be one of {BACKBONES}; got {backbone!r}")
    options.update(input_shape=input_shape, weights=weights, freeze_layers=freeze_layers)
    if backbone == "resnet50":
        options["batchnorm_momentum"] = batchnorm_momentum
    else:
        _check_fraction(batchnorm_momentum, "batchnorm_momentum")
    return BUILDERS[backbone](**options)


def check_embedder_options(
    backbone: str,
    input_shape: Sequence[int] = (256, 128, 3),
    weights: str | os.PathLike | None = None,
    freeze_layers: int = 10,
    batchnorm_momentum: float = 0.99,
    width: float = 1.0,
    input_normalization: str = "caffe",
) -> None:
    """Raise the ValueError `build_embedder` would, without building anything (a command checks
    its profile before it writes a file)."""
    if backbone not in BUILDERS:
        raise ValueError(f"backbone must be one of {BACKBONES}; got {backbone!r}")
    _check_image_shape(input_shape)
    _check_fraction(batchnorm_momentum, "batchnorm_momentum")
    _check_width(width, _check_weights(weights))
    checks.integer(freeze_layers, "freeze_layers", 0)
    _input_normalization(input_normalization)


def get_backbone(embedder: keras.Model) -> keras.Model:
    """The nested backbone model of an embedder built here (e.g. to save or freeze its weights)."""
    for layer_name in BACKBONE_LAYER_NAMES.values():
        try:
            return embedder.get_layer(layer_name)
        except ValueError:
            continue
    raise ValueError(
        f"model {embedder.name!r} has no backbone layer named one of "
        f"{sorted(set(BACKBONE_LAYER_NAMES.values()))}; was it built by tripletlib.models?"
    )


def _image_input_shape(embedder: keras.Model) -> tuple[int, int, int]:
    if len(embedder.inputs) != 1:
        raise ValueError(
            f"embedder {embedder.name!r} must take one image input; it has {len(embedder.inputs)}"
        )
    return tuple(embedder.inputs[0].shape[1:])


def _augmented(images, augmentation: keras.Layer | None):
    return images if augmentation is None else augmentation(images)


def build_triplet_model(
    embedder: keras.Model, augmentation: keras.Layer | None = None, name: str = "triplet_model"
) -> keras.Model:
    """Triplet network of Figure 3.7: anchor, positive, negative -> shared embedder -> `(B, 3, D)`.

    The three branches share one embedder and run through it as one batch of 3B images (anchors,
    then positives, then negatives), so that a training step traces and runs the network once;
    BatchNorm's batch statistics are those of the 3B images. `augmentation` (e.g.
    `augment.build_augmentation()`) draws its own transformation for every image and is active
    only when the model runs with `training=True`.
    """
    shape = _image_input_shape(embedder)
    inputs = [
        keras.Input(shape=shape, dtype="float32", name=role)
        for role in ("anchor", "positive", "negative")
    ]
    images = JoinBranches(name="one_batch")(inputs)
    embeddings = embedder(_augmented(images, augmentation))
    return keras.Model(inputs, SplitBranches(name="stacked_embeddings", dtype="float32")(embeddings), name=name)


def build_online_model(
    embedder: keras.Model, augmentation: keras.Layer | None = None, name: str = "online_model"
) -> keras.Model:
    """One image batch -> (optional augmentation) -> embedder -> `(B, D)`, for online mining."""
    images = keras.Input(shape=_image_input_shape(embedder), dtype="float32", name="images")
    return keras.Model(images, embedder(_augmented(images, augmentation)), name=name)


def embed_images(
    embedder: keras.Model, images: np.ndarray, batch_size: int = 128, progress: bool = False
) -> np.ndarray:
    """Embeddings `(N, D)` float32 of `images` `(N, H, W, 3)` (uint8 or float, [0, 255], RGB).

    Runs in inference mode, `batch_size` images at a time; the last batch is padded so that every
    call has the same shape (no retracing).
    """
    _check_positive_int(batch_size, "batch_size")
    expected = _image_input_shape(embedder)
    images = np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"images must have shape (N, {', '.join(map(str, expected))}) to match the embedder "
            f"{embedder.name!r}; got {images.shape}"
        )
    count = len(images)
    embedding_dim = embedder.outputs[0].shape[-1]
    result = np.empty((count, embedding_dim), dtype=np.float32)
    batch_size = min(batch_size, max(count, 1))
    starts = range(0, count, batch_size)
    for start in tqdm(
        starts, total=math.ceil(count / batch_size), desc="embedding", disable=not progress
    ):
        batch = images[start : start + batch_size].astype(np.float32)
        size = len(batch)
        if size < batch_size:
            padding = np.zeros((batch_size - size, *expected), dtype=np.float32)
            batch = np.concatenate([batch, padding])
        result[start : start + size] = np.asarray(embedder.predict_on_batch(batch))[:size]
    return result
