"""Data augmentation of Section 3.1.3 as Keras 3 preprocessing layers.

The thesis used Keras' ``ImageDataGenerator`` (gone in Keras 3) with: shifts of at most 20 % of
the width/height, rotations of at most 25 degrees, zoom between 80 % (zoom in) and 120 % (zoom
out), random horizontal flips, and ``fill_mode="nearest"`` (its default). Here the same
transformations are Keras preprocessing layers, so they run inside the model (on the GPU when
there is one) under every backend, and only when the model is called with ``training=True``.
"""

from __future__ import annotations

import keras
import numpy as np

FILL_MODES = ("reflect", "wrap", "constant", "nearest")


@keras.saving.register_keras_serializable(package="tripletlib")
class Augmentation(keras.Sequential):
    """A ``keras.Sequential`` of random layers that is the identity unless ``training=True``.

    Keras' random image layers default to ``training=True`` when called directly; this class
    makes inference the default, so ``embedder(images)`` never augments by accident.
    """

    def call(self, inputs, training=False, mask=None, **kwargs):
        return super().call(inputs, training=bool(training), mask=mask, **kwargs)


def build_augmentation(
    shift: float = 0.2,
    rotation_degrees: float = 25.0,
    zoom: tuple[float, float] | None = (0.8, 1.2),
    flip: bool = True,
    seed: int | None = None,
    fill_mode: str = "nearest",
) -> keras.Sequential:
    """Build the augmentation of Section 3.1.3 as a ``keras.Sequential`` (see `Augmentation`).

    Args:
        shift: largest shift as a fraction of height and of width, in [0, 1) (thesis: 0.2).
            Drawn uniformly from [-shift, shift] on each axis (``RandomTranslation``).
        rotation_degrees: largest rotation in degrees, in [0, 180] (thesis: 25). Drawn uniformly
            from [-rotation_degrees, rotation_degrees] as ``ImageDataGenerator`` did
            (``RandomRotation(factor=rotation_degrees / 360)``).
        zoom: ``(low, high)`` scale range in ``ImageDataGenerator`` convention: 0.8 samples 80 %
            of the image (zoom in), 1.2 samples 120 % (zoom out). Mapped to Keras'
            ``RandomZoom(height_factor=(low - 1, high - 1))``; height and width scales are drawn
            independently, as in ``ImageDataGenerator``. ``None`` or ``(1, 1)``: no zoom.
        flip: random horizontal flip with probability 1/2 (``RandomFlip("horizontal")``).
        seed: ``None`` for fresh randomness, or an int: the same seed gives the same sequence of
            transformations. Each layer gets its own seed derived from it.
        fill_mode: how pixels outside the image are filled: one of ``FILL_MODES``.

    Input and output: float pixels ``(B, H, W, 3)``; shape and dtype are kept. A stage whose
    range is zero is left out; with nothing left the pipeline is a single ``Identity`` layer.
    """
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
        if low == high == 1.0:
            zoom = None
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ValueError(f"seed must be an int or None, got {seed!r}.")

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
        factor = (float(zoom[0]) - 1.0, float(zoom[1]) - 1.0)
        layers.append(
            keras.layers.RandomZoom(
                height_factor=factor, width_factor=factor, fill_mode=fill_mode, seed=layer_seeds[2]
            )
        )
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seeds[3]))
    if not layers:
        layers.append(keras.layers.Identity())
    return Augmentation(layers, name="augmentation")
