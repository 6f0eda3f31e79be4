"""What an embedder looks at: occlusion sensitivity (Zeiler and Fergus 2014, "Visualizing and
Understanding Convolutional Networks", Section 4.2).

A patch of one colour slides over the image; every occluded copy is embedded, and each patch
position scores how far its occlusion moves the embedding:

- without `targets`: the squared Euclidean distance (the thesis' distance, Section 3.3.2) between
  the occluded copy's embedding and the un-occluded image's, i.e. how much of the image's
  identity that patch carried;
- with `targets` (the embeddings, or images, of each query's true match): how much the occlusion
  increases the squared distance to the true match. Positive where the patch hid what made the
  match; negative where hiding it brought the match closer.

The scores form a grid (one per patch position); `upsample_grid` spreads them back to the image's
pixels, each pixel the mean score of the patch positions that cover it. Forward passes only (via
`models.embed_images`), so it runs on every Keras backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tripletlib import checks, models

FILLS = ("mean", "grey")
GREY = 127.5


@dataclass(frozen=True, eq=False)
class OcclusionResult:
    """`grid` (N, H', W'): the score of each patch position; `maps` (N, H, W): the scores
    spread to the pixels; `row_starts` (H',) and `column_starts` (W',): the patches' top-left
    corners; `patch_size`: (height, width). All float32 but the int64 starts."""

    grid: np.ndarray
    maps: np.ndarray
    row_starts: np.ndarray
    column_starts: np.ndarray
    patch_size: tuple[int, int]


def patch_starts(length: int, patch: int, stride: int) -> np.ndarray:
    """First rows (or columns) of the patches: 0, stride, ... and the last one flush with the edge."""
    if patch > length:
        raise ValueError(f"a patch of {patch} does not fit in {length} pixels")
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return np.array(starts, dtype=np.int64)


def upsample_grid(
    grid: Any, image_size: Sequence[int], patch_size: Sequence[int], stride: Sequence[int]
) -> np.ndarray:
    """(N, H', W') patch scores -> (N, H, W): each pixel the mean score of the patches covering it."""
    grid = np.asarray(grid, dtype=np.float64)
    height, width = (int(value) for value in image_size)
    patch_height, patch_width = _pair("patch_size", patch_size)
    stride_height, stride_width = _pair("stride", stride)
    row_starts = patch_starts(height, patch_height, stride_height)
    column_starts = patch_starts(width, patch_width, stride_width)
    if grid.ndim != 3 or grid.shape[1:] != (len(row_starts), len(column_starts)):
        raise ValueError(
            f"grid must have shape (N, {len(row_starts)}, {len(column_starts)}) for images of "
            f"{height}x{width}, patch {patch_height}x{patch_width} and stride "
            f"{stride_height}x{stride_width}; got {grid.shape}"
        )
    total = np.zeros((len(grid), height, width))
    count = np.zeros((height, width))
    for row_index, row in enumerate(row_starts):
        for column_index, column in enumerate(column_starts):
            block = (slice(row, row + patch_height), slice(column, column + patch_width))
            total[(slice(None), *block)] += grid[:, row_index, column_index, None, None]
            count[block] += 1
    return (total / count).astype(np.float32)


def occlusion_sensitivity(
    embedder: keras.Model,
    images: Any,
    *,
    patch_size: Sequence[int] = (16, 8),
    stride: Sequence[int] = (4, 4),
    fill: str | float | Sequence[float] = "mean",
    targets: Any = None,
    batch_size: int = 128,
) -> OcclusionResult:
    """Occlusion-sensitivity grids and maps of `images` (N, H, W, 3) (or one image (H, W, 3)).

    `fill`: "mean" (each image's mean colour), "grey" (127.5), a number or an RGB triple in
    [0, 255]. `targets`: None (distance moved from the un-occluded embedding), the true matches'
    embeddings (N, D) or images (N, H, W, 3) (increase of the distance to them). Occluded copies
    are embedded `batch_size` at a time, N x H' x W' of them in all. One image in, one out:
    `grid` (H', W') and `maps` (H, W) then.
    """
    single = np.ndim(images) == 3
    images = np.asarray(images)[None] if single else np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(
            f"images must have shape (N, height, width, 3), N >= 1; got {images.shape}"
        )
    images = images.astype(np.float32)
    count, height, width, _ = images.shape
    patch_height, patch_width = _pair("patch_size", patch_size)
    stride_height, stride_width = _pair("stride", stride)
    checks.integer(batch_size, "batch_size")
    colours = _fill_colours(fill, images)
    originals = models.embed_images(embedder, images, batch_size=batch_size)  # checks the shape
    row_starts = patch_starts(height, patch_height, stride_height)
    column_starts = patch_starts(width, patch_width, stride_width)
    reference = originals if targets is None else _target_embeddings(embedder, targets, count,
                                                                     batch_size)  # fmt: skip
    baseline_distance = np.sum((originals - reference) ** 2, axis=1)

    positions = [(row, column) for row in row_starts for column in column_starts]
    jobs = [(image, position) for image in range(count) for position in positions]
    scores = np.empty(len(jobs), dtype=np.float64)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        occluded = images[[image for image, _ in chunk]]
        for copy, (image, (row, column)) in enumerate(chunk):
            occluded[copy, row : row + patch_height, column : column + patch_width] = colours[image]
        embeddings = models.embed_images(embedder, occluded, batch_size=batch_size)
        owners = np.array([image for image, _ in chunk])
        distances = np.sum((embeddings - reference[owners]) ** 2, axis=1)
        scores[start : start + len(chunk)] = distances - baseline_distance[owners]
    grid = scores.reshape(count, len(row_starts), len(column_starts))
    maps = upsample_grid(grid, (height, width), (patch_height, patch_width),
                         (stride_height, stride_width))  # fmt: skip
    grid = grid.astype(np.float32)
    return OcclusionResult(
        grid=grid[0] if single else grid,
        maps=maps[0] if single else maps,
        row_starts=row_starts,
        column_starts=column_starts,
        patch_size=(patch_height, patch_width),
    )


def _target_embeddings(embedder: keras.Model, targets: Any, count: int, batch_size: int):
    targets = np.asarray(targets)
    if targets.ndim == 4:
        targets = models.embed_images(embedder, targets, batch_size=batch_size)
    elif targets.ndim == 1 and count == 1:
        targets = targets[None]
    if targets.ndim != 2 or len(targets) != count:
        raise ValueError(
            f"targets must be {count} embeddings (N, D) or images (N, H, W, 3), one per image; "
            f"got shape {targets.shape}"
        )
    return targets.astype(np.float32)


def _fill_colours(fill: Any, images: np.ndarray) -> np.ndarray:
    """(N, 3) colour of each image's patch."""
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ValueError(
                f"fill must be one of {FILLS}, a number or an RGB triple; got {fill!r}"
            )
        if fill == "mean":
            return images.mean(axis=(1, 2))
        return np.full((len(images), 3), GREY, np.float32)
    colour = np.asarray(fill, dtype=np.float64) if _numeric(fill) else np.array([np.nan])
    if colour.shape not in ((), (3,)) or not np.all((colour >= 0) & (colour <= 255)):
        raise ValueError(f"fill must be one of {FILLS}, a number or an RGB triple in [0, 255]; "
                         f"got {fill!r}")  # fmt: skip
    return np.broadcast_to(colour, (len(images), 3)).astype(np.float32)


def _numeric(value: Any) -> bool:
    try:
        array = np.asarray(value)
    except ValueError:
        return False
    return array.dtype != bool and np.issubdtype(array.dtype, np.number)


def _pair(name: str, value: Any) -> tuple[int, int]:
    values = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if (
        values is None
        or len(values) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in values)
    ):
        raise ValueError(f"{name} must be two positive integers (height, width), got {value!r}")
    return int(values[0]), int(values[1])
