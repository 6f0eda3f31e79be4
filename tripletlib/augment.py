"""Data augmentation of Section 3.1.3 as one jit-compilable Keras 3 layer.

The thesis used Keras' ``ImageDataGenerator`` (gone in Keras 3) with: shifts of at most 20 % of
the width/height, rotations of at most 25 degrees, zoom between 80 % (zoom in) and 120 % (zoom
out), random horizontal flips, and ``fill_mode="nearest"`` (its default). Like
``ImageDataGenerator``, `FusedAugmentation` composes each image's draws into one affine map
(output pixel -> source point) and samples the image once, bilinearly, gathering the four
neighbour rows of every output pixel with ``keras.ops.take`` on the batch flattened to
``(B*H*W, C)``. It is written in ``keras.ops`` only, so it runs inside the model under every
backend, and it keeps ``supports_jit`` True: a training step that contains it compiles whole
(``jax.jit`` under JAX, XLA under TensorFlow). Keras' own ``RandomTranslation`` /
``RandomRotation`` / ``RandomZoom`` set ``supports_jit = False``, which turns compilation off for
the whole model, and warp three times (`build_keras_augmentation`, kept for comparison).

Optional, off by default (the thesis profile is Section 3.1.3 alone), against the synthetic
cameras' colour casts: a gain per channel, a brightness factor per image, and random erasing
(Zhong et al., "Random Erasing Data Augmentation", 2017).
"""

from __future__ import annotations

import math

import keras
import numpy as np

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
ERASING_AREA = (0.02, 0.4)  # fraction of the image a random-erasing rectangle covers
ERASING_ASPECT = (0.3, 3.3)  # its height / width
ERASING_ATTEMPTS = 10  # rectangles drawn per image; the first that fits the image is used
PIXEL_RANGE = (0.0, 255.0)


# ------------------------------------------------------------------------------ checks


def _check_ranges(shift, rotation_degrees, zoom, fill_mode, seed):
    """The checked `zoom` as a float pair, or None when it does nothing."""
    if not 0.0 <= shift < 1.0:
        raise ValueError(f"shift must be a fraction in [0, 1), got {shift!r}.")
    if not 0.0 <= rotation_degrees <= 180.0:
        raise ValueError(f"rotation_degrees must be in [0, 180], got {rotation_degrees!r}.")
    if zoom is not None:
        if len(zoom) != 2:
            raise ValueError(f"zoom must be a pair (low, high) or None, got {zoom!r}.")
        low, high = float(zoom[0]), float(zoom[1])
        if not 0.0 < low <= high <= 2.0:
            raise ValueError(
                f"zoom must satisfy 0 < low <= high <= 2 (e.g. (0.8, 1.2)), got {zoom!r}."
            )
        zoom = None if low == high == 1.0 else (low, high)
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ValueError(f"seed must be an int or None, got {seed!r}.")
    return zoom


def _check_unit_fraction(value, name: str, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise ValueError(f"{name} must be a number in [0, {high}], got {value!r}.")
    return float(value)


# ------------------------------------------------------------------------------ the warp


def _source_index(index, size: int, fill_mode: str):
    """Neighbour indices mapped into [0, size) as ``scipy.ndimage.map_coordinates`` does."""
    ops = keras.ops
    if fill_mode == "reflect":  # d c b a | a b c d | d c b a
        index = ops.mod(index, 2 * size)
        return ops.where(index >= size, 2 * size - 1 - index, index)
    if fill_mode == "wrap":  # a b c d | a b c d
        return ops.mod(index, size)
    return ops.clip(index, 0, size - 1)  # nearest; constant masks these afterwards


def affine_warp(images, transforms, fill_mode: str = "nearest", fill_value: float = 0.0):
    """Bilinear warp of ``(B, H, W, C)`` float images by one affine map per image.

    ``transforms`` is ``(B, 8)`` (or ``(8,)`` for all) in the convention of
    ``keras.ops.image.affine_transform``: output pixel (column x, row y) samples the input at
    ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``; the projective terms ``c0, c1`` must be 0. Each
    output pixel reads its four neighbours with one ``keras.ops.take`` each on the images
    flattened to ``(B*H*W, C)``; ``fill_mode`` (`FILL_MODES`) says what a neighbour outside the
    image reads, as in ``affine_transform`` (``fill_value`` for "constant").
    """
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}.")
    ops = keras.ops
    images = ops.convert_to_tensor(images)
    batch, height, width, channels = (ops.shape(images)[0], *images.shape[1:])
    transforms = ops.cast(ops.convert_to_tensor(transforms), images.dtype)
    if len(transforms.shape) == 1:
        transforms = ops.broadcast_to(transforms[None, :], (batch, 8))

    def coefficient(k):
        return ops.reshape(transforms[:, k], (-1, 1, 1))

    rows = ops.reshape(ops.arange(height, dtype=images.dtype), (1, height, 1))
    cols = ops.reshape(ops.arange(width, dtype=images.dtype), (1, 1, width))
    source_x = coefficient(0) * cols + coefficient(1) * rows + coefficient(2)  # (B, H, W)
    source_y = coefficient(3) * cols + coefficient(4) * rows + coefficient(5)
    y0, x0 = ops.floor(source_y), ops.floor(source_x)
    weight_y, weight_x = source_y - y0, source_x - x0
    y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
    flat = ops.reshape(images, (-1, channels))
    base = ops.reshape(ops.arange(batch, dtype="int32") * (height * width), (-1, 1, 1))

    def neighbour(y, x):
        """(B, H, W, C) values at integer (y, x), and (B, H, W, 1) 1/0: inside the image."""
        index = base + _source_index(y, height, fill_mode) * width
        index = index + _source_index(x, width, fill_mode)
        values = ops.reshape(ops.take(flat, ops.reshape(index, (-1,)), axis=0), ops.shape(images))
        if fill_mode != "constant":
            return values, None
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        return values, ops.cast(inside, images.dtype)[..., None]

    total = 0.0
    for y, x, weight in (
        (y0, x0, (1.0 - weight_y) * (1.0 - weight_x)),
        (y0, x0 + 1, (1.0 - weight_y) * weight_x),
        (y0 + 1, x0, weight_y * (1.0 - weight_x)),
        (y0 + 1, x0 + 1, weight_y * weight_x),
    ):
        values, inside = neighbour(y, x)
        weight = weight[..., None]
        if inside is not None:  # constant: a neighbour outside the image reads fill_value
            values = inside * values + (1.0 - inside) * fill_value
        total = total + weight * values
    return total


# ------------------------------------------------------------------------------ the layer


@keras.saving.register_keras_serializable(package="tripletlib")
class FusedAugmentation(keras.layers.Layer):
    """Section 3.1.3's augmentation as one warp per image; the identity unless ``training=True``.

    Per image, as ``ImageDataGenerator`` drew them: a rotation angle from
    U(-rotation_degrees, rotation_degrees), a vertical and a horizontal shift from
    U(-shift, shift) x height / width, height and width zoom factors drawn independently from
    U(zoom) (0.8 samples 80 % of the image: zoom in), and a horizontal flip with probability 1/2.
    The source point of an output pixel p (centred) is R (Z F p + t) + centre, i.e.
    ``ImageDataGenerator``'s rotation @ shift @ zoom around the image centre, followed by the flip.

    Off by default, applied after the warp in this order (then clipped to [0, 255]):
    ``colour_gain`` g multiplies each channel of each image by its own U(1-g, 1+g);
    ``brightness`` b multiplies each image by U(1-b, 1+b); ``erasing`` p, with probability p per
    image, fills a rectangle covering U(0.02, 0.4) of the image, aspect ratio (height / width)
    log-uniform in [0.3, 3.3], with uniform random values in [0, 255] (Zhong et al. 2017; of
    ``ERASING_ATTEMPTS`` rectangles drawn, the first that fits in the image, else none).

    Randomness comes from one ``keras.random.SeedGenerator`` (its state is a non-trainable
    variable of the layer, so a checkpoint of the model's variables covers it); the same seed
    gives the same images. Computes in float32 unless given another ``dtype``.
    """

    def __init__(
        self,
        shift: float = 0.2,
        rotation_degrees: float = 25.0,
        zoom: tuple[float, float] | None = (0.8, 1.2),
        flip: bool = True,
        fill_mode: str = "nearest",
        colour_gain: float = 0.0,
        brightness: float = 0.0,
        erasing: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        zoom = _check_ranges(shift, rotation_degrees, zoom, fill_mode, seed)
        self.shift, self.rotation_degrees = float(shift), float(rotation_degrees)
        self.zoom = (1.0, 1.0) if zoom is None else zoom
        self.flip, self.fill_mode = bool(flip), fill_mode
        self.colour_gain = _check_unit_fraction(colour_gain, "colour_gain")
        self.brightness = _check_unit_fraction(brightness, "brightness")
        self.erasing = _check_unit_fraction(erasing, "erasing")
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="augmentation_seed")
        self.supports_jit = True

    @property
    def warps(self) -> bool:
        """False when every geometric range is zero (then no warp is computed)."""
        return bool(self.shift or self.rotation_degrees or self.zoom != (1.0, 1.0) or self.flip)

    def draw_parameters(self, batch_size: int, height: int, width: int, channels: int = 3) -> dict:
        """One draw per image, advancing the seed generator exactly as a training call does.

        Returns ``(B,)`` tensors: ``angle`` (degrees), ``shift_y`` / ``shift_x`` (fractions of
        height and width), ``zoom_y`` / ``zoom_x``, ``flip`` (1.0: mirrored); when switched on,
        ``gain`` ``(B, channels)``, ``brightness``, and ``erase`` (1.0: erased) with the rectangle
        ``erase_top``, ``erase_left``, ``erase_height``, ``erase_width`` in pixels.
        """
        return self._draw(batch_size, height, width, channels)

    def _draw(self, batch_size, height: int, width: int, channels: int) -> dict:
        ops, seed = keras.ops, self.seed_generator

        def uniform(shape, low, high):
            return keras.random.uniform(shape, low, high, dtype="float32", seed=seed)

        one = (batch_size,)
        parameters = {
            "angle": uniform(one, -1.0, 1.0) * self.rotation_degrees,
            "shift_y": uniform(one, -1.0, 1.0) * self.shift,
            "shift_x": uniform(one, -1.0, 1.0) * self.shift,
            "zoom_y": uniform(one, *self.zoom),
            "zoom_x": uniform(one, *self.zoom),
            "flip": ops.cast(uniform(one, 0.0, 1.0) < (0.5 if self.flip else 0.0), "float32"),
        }
        if self.colour_gain:
            gain = self.colour_gain
            parameters["gain"] = uniform((batch_size, channels), 1.0 - gain, 1.0 + gain)
        if self.brightness:
            parameters["brightness"] = uniform(one, 1.0 - self.brightness, 1.0 + self.brightness)
        if self.erasing:
            parameters.update(self._draw_erasing(batch_size, height, width, uniform))
        return parameters

    def _draw_erasing(self, batch_size, height: int, width: int, uniform) -> dict:
        ops, attempts = keras.ops, (batch_size, ERASING_ATTEMPTS)
        area = uniform(attempts, *ERASING_AREA) * (height * width)
        log_low, log_high = (math.log(value) for value in ERASING_ASPECT)
        aspect = ops.exp(uniform(attempts, log_low, log_high))
        box_height = ops.round(ops.sqrt(area * aspect))
        box_width = ops.round(ops.sqrt(area / aspect))
        fits = (box_height >= 1) & (box_height <= height) & (box_width >= 1) & (box_width <= width)
        first = ops.argmax(ops.cast(fits, "int32"), axis=1)[:, None]  # first fit (0 if none)

        def chosen(values):
            return ops.take_along_axis(values, first, axis=1)[:, 0]

        box_height, box_width = chosen(box_height), chosen(box_width)
        any_fit = ops.cast(ops.any(fits, axis=1), "float32")
        chance = ops.cast(uniform((batch_size,), 0.0, 1.0) < self.erasing, "float32")
        top = ops.floor(uniform((batch_size,), 0.0, 1.0) * (height - box_height + 1))
        left = ops.floor(uniform((batch_size,), 0.0, 1.0) * (width - box_width + 1))
        return {
            "erase": chance * any_fit,
            "erase_top": ops.minimum(top, height - box_height),
            "erase_left": ops.minimum(left, width - box_width),
            "erase_height": box_height,
            "erase_width": box_width,
        }

    @staticmethod
    def transforms(parameters: dict, height: int, width: int):
        """``(B, 8)`` affine maps of the draws, in ``keras.ops.image.affine_transform``'s convention."""
        ops = keras.ops
        angle = parameters["angle"] * (math.pi / 180.0)
        cos, sin = ops.cos(angle), ops.sin(angle)
        mirror = 1.0 - 2.0 * parameters["flip"]
        zoom_y, zoom_x = parameters["zoom_y"], parameters["zoom_x"] * mirror
        shift_y, shift_x = parameters["shift_y"] * height, parameters["shift_x"] * width
        centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
        # source = R (Z F (p - centre) + t) + centre, R = [[cos, -sin], [sin, cos]] on (y, x)
        a0, a1 = cos * zoom_x, sin * zoom_y
        b0, b1 = -sin * zoom_x, cos * zoom_y
        a2 = centre_x + sin * shift_y + cos * shift_x - a0 * centre_x - a1 * centre_y
        b2 = centre_y + cos * shift_y - sin * shift_x - b0 * centre_x - b1 * centre_y
        zero = ops.zeros_like(a0)
        return ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)

    def call(self, inputs, training=False):
        if not training:
            return inputs
        ops = keras.ops
        images = ops.cast(inputs, self.compute_dtype)
        batch, height, width, channels = (ops.shape(images)[0], *images.shape[1:])
        parameters = self._draw(batch, height, width, channels)
        if self.warps:
            transforms = self.transforms(parameters, height, width)
            images = affine_warp(images, transforms, self.fill_mode)
        if "gain" in parameters:
            images = images * ops.cast(parameters["gain"], images.dtype)[:, None, None, :]
        if "brightness" in parameters:
            images = images * ops.cast(parameters["brightness"], images.dtype)[:, None, None, None]
        images = ops.clip(images, *PIXEL_RANGE)
        if "erase" in parameters:
            images = self._erase(images, parameters)
        return images

    def _erase(self, images, parameters):
        ops = keras.ops
        height, width = images.shape[1], images.shape[2]

        def column(name):
            return ops.reshape(parameters[name], (-1, 1, 1))

        rows = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1))
        cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width))
        top, left = column("erase_top"), column("erase_left")
        inside = (
            (rows >= top)
            & (rows < top + column("erase_height"))
            & (cols >= left)
            & (cols < left + column("erase_width"))
            & (column("erase") > 0.5)
        )
        noise = keras.random.uniform(
            ops.shape(images), *PIXEL_RANGE, dtype=images.dtype, seed=self.seed_generator
        )
        return ops.where(inside[..., None], noise, images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            shift=self.shift,
            rotation_degrees=self.rotation_degrees,
            zoom=list(self.zoom),
            flip=self.flip,
            fill_mode=self.fill_mode,
            colour_gain=self.colour_gain,
            brightness=self.brightness,
            erasing=self.erasing,
            seed=self.seed,
        )
        return config


def build_augmentation(
    shift: float = 0.2,
    rotation_degrees: float = 25.0,
    zoom: tuple[float, float] | None = (0.8, 1.2),
    flip: bool = True,
    seed: int | None = None,
    fill_mode: str = "nearest",
    colour_gain: float = 0.0,
    brightness: float = 0.0,
    erasing: float = 0.0,
) -> FusedAugmentation:
    """The augmentation the training path uses: Section 3.1.3 as one `FusedAugmentation` layer.

    Args:
        shift: largest shift as a fraction of height and of width, in [0, 1) (thesis: 0.2).
        rotation_degrees: largest rotation in degrees, in [0, 180] (thesis: 25), drawn uniformly
            from [-rotation_degrees, rotation_degrees] as ``ImageDataGenerator`` did.
        zoom: ``(low, high)`` scale range in ``ImageDataGenerator`` convention: 0.8 samples 80 %
            of the image (zoom in), 1.2 samples 120 % (zoom out); height and width scales are
            drawn independently. ``None`` or ``(1, 1)``: no zoom.
        flip: random horizontal flip with probability 1/2.
        seed: ``None`` for fresh randomness, or an int: the same seed gives the same sequence of
            transformations.
        fill_mode: how pixels outside the image are filled: one of ``FILL_MODES``.
        colour_gain, brightness, erasing: the optional colour and erasing draws of
            `FusedAugmentation` (0: off, the thesis profile).

    Input and output: float pixels ``(B, H, W, C)`` in [0, 255]; the shape is kept.
    """
    return FusedAugmentation(
        shift=shift,
        rotation_degrees=rotation_degrees,
        zoom=zoom,
        flip=flip,
        fill_mode=fill_mode,
        colour_gain=colour_gain,
        brightness=brightness,
        erasing=erasing,
        seed=seed,
        name="augmentation",
    )


# ------------------------------------------------------------------------------ for comparison


@keras.saving.register_keras_serializable(package="tripletlib")
class Augmentation(keras.Sequential):
    """A ``keras.Sequential`` of random layers that is the identity unless ``training=True``."""

    def call(self, inputs, training=False, mask=None, **kwargs):
        return super().call(inputs, training=bool(training), mask=mask, **kwargs)


def build_keras_augmentation(
    shift: float = 0.2,
    rotation_degrees: float = 25.0,
    zoom: tuple[float, float] | None = (0.8, 1.2),
    flip: bool = True,
    seed: int | None = None,
    fill_mode: str = "nearest",
) -> Augmentation:
    """Section 3.1.3 as Keras' own random layers (three warps), for comparison only.

    ``RandomTranslation``, ``RandomRotation(factor=rotation_degrees / 360)``,
    ``RandomZoom(height_factor=(low - 1, high - 1))`` and ``RandomFlip("horizontal")``. They set
    ``supports_jit = False``: a model containing them is not compiled (`FusedAugmentation` is).
    """
    zoom = _check_ranges(shift, rotation_degrees, zoom, fill_mode, seed)
    layer_seeds: list[int | None] = [None] * 4
    if seed is not None:
        layer_seeds = [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(4)]
    layers: list[keras.layers.Layer] = []
    if shift > 0:
        layers.append(
            keras.layers.RandomTranslation(
                height_factor=shift, width_factor=shift, fill_mode=fill_mode, seed=layer_seeds[0]
            )
        )
    if rotation_degrees > 0:
        layers.append(
            keras.layers.RandomRotation(
                factor=rotation_degrees / 360.0, fill_mode=fill_mode, seed=layer_seeds[1]
            )
        )
    if zoom is not None:
        factor = (zoom[0] - 1.0, zoom[1] - 1.0)
        layers.append(
            keras.layers.RandomZoom(
                height_factor=factor, width_factor=factor, fill_mode=fill_mode, seed=layer_seeds[2]
            )
        )
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seeds[3]))
    if not layers:
        layers.append(keras.layers.Identity())
    return Augmentation(layers, name="keras_augmentation")
