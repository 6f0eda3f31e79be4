"""A hand-crafted colour descriptor with no learning: the classic baseline of person re-id.

In the spirit of the hand-crafted baselines of the Market-1501 paper (Zheng et al. 2015, ref. [4]
of the thesis: colour features of horizontal stripes, a Gaussian mask against the background,
Euclidean distance), a few lines of NumPy:

1. grey-world colour normalisation: each channel of each image is divided by its (centre-weighted)
   mean, so a camera's colour cast and brightness cancel (a channel gain `g` gives the same image);
2. a centre crop (`vertical_crop` of the height off the top and the bottom, `horizontal_crop` of
   the width off each side) and a Gaussian weight across the columns (`centre_sigma`, a fraction
   of the crop's width), so that the person counts more than the background;
3. `stripes` horizontal stripes, each a joint RGB histogram of `bins`**3 cells over the normalised
   values [0, `value_range`] with trilinear soft assignment (a value between two bin centres is
   shared between them, so a small colour change moves the histogram a little, not a whole bin);
4. each image's histogram normalised to sum 1, square-rooted (Hellinger) and L2-normalised;
   images are compared by Euclidean distance.

Nothing is learned and nothing is read from the test split: the defaults were chosen on the
TRAINING splits of the `ci` and `cpu` synthetic datasets (leave-one-out retrieval inside the
training split, Market protocol) by ``benchmarks/baseline_descriptor.py``, which prints the grid.

What it scores on the book's synthetic splits, and what each step adds, is measured in
docs/benchmarks.md ("The hand-crafted baseline"): the six synthetic cameras' backgrounds dominate
the pixels without the crop and the centre weight.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from tripletlib import checks, evaluation

METRIC_KEYS = ("rank1", "rank5", "mAP", "cmc", "num_valid_queries")
DEFAULTS: dict[str, Any] = {
    "stripes": 8,
    "bins": 4,
    "vertical_crop": 0.15,
    "horizontal_crop": 0.25,
    "centre_sigma": 0.12,
    "value_range": 1.5,
    "grey_world": True,
}


def descriptor_size(stripes: int = DEFAULTS["stripes"], bins: int = DEFAULTS["bins"]) -> int:
    """Length of a descriptor: one joint RGB histogram of ``bins**3`` cells per stripe."""
    return int(stripes) * int(bins) ** 3


def describe(
    images: Any,
    *,
    stripes: int = DEFAULTS["stripes"],
    bins: int = DEFAULTS["bins"],
    vertical_crop: float = DEFAULTS["vertical_crop"],
    horizontal_crop: float = DEFAULTS["horizontal_crop"],
    centre_sigma: float | None = DEFAULTS["centre_sigma"],
    value_range: float = DEFAULTS["value_range"],
    grey_world: bool = DEFAULTS["grey_world"],
    chunk_size: int = 512,
) -> np.ndarray:
    """Descriptors (N, stripes * bins**3) float32, unit L2 norm, of uint8 images (N, H, W, 3).

    See the module docstring for the steps. ``centre_sigma=None`` weighs all columns alike;
    ``grey_world=False`` keeps the raw pixel values (divided by 128 instead of the channel mean).
    """
    images = _check_images(images)
    stripes, bins = _check_int("stripes", stripes, 1), _check_int("bins", bins, 2)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    for name, value in (("vertical_crop", vertical_crop), ("horizontal_crop", horizontal_crop)):
        if not _is_number(value) or not 0 <= value < 0.5:
            raise ValueError(f"{name} must be a fraction in [0, 0.5), got {value!r}")
    if centre_sigma is not None and not (_is_number(centre_sigma) and centre_sigma > 0):
        raise ValueError(f"centre_sigma must be a positive number or None, got {centre_sigma!r}")
    if not (_is_number(value_range) and value_range > 0):
        raise ValueError(f"value_range must be a positive number, got {value_range!r}")
    height, width = images.shape[1:3]
    top, side = round(vertical_crop * height), round(horizontal_crop * width)
    crop_height, crop_width = height - 2 * top, width - 2 * side
    if crop_height < stripes or crop_width < 1:
        raise ValueError(
            f"images of {height}x{width} cropped by vertical_crop={vertical_crop!r}, "
            f"horizontal_crop={horizontal_crop!r} leave {crop_height}x{crop_width} pixels: "
            f"too few rows for stripes={stripes}"
        )
    columns = (np.arange(crop_width) + 0.5) / crop_width - 0.5
    if centre_sigma is None:
        column_weights = np.ones(crop_width, np.float32)
    else:
        column_weights = np.exp(-0.5 * (columns / centre_sigma) ** 2).astype(np.float32)
    weights = np.broadcast_to(column_weights, (crop_height, crop_width))
    stripe_of_row = np.arange(crop_height) * stripes // crop_height
    result = np.empty((len(images), descriptor_size(stripes, bins)), np.float32)
    for start in range(0, len(images), chunk_size):
        chunk = images[start : start + chunk_size, top : height - top, side : width - side]
        result[start : start + len(chunk)] = _histograms(
            chunk.astype(np.float32), weights, stripe_of_row, stripes, bins, value_range,
            grey_world,
        )  # fmt: skip
    return result


def _histograms(
    pixels: np.ndarray,
    weights: np.ndarray,
    stripe_of_row: np.ndarray,
    stripes: int,
    bins: int,
    value_range: float,
    grey_world: bool,
) -> np.ndarray:
    """Hellinger-normalised soft joint histograms of a chunk of cropped float images."""
    count = len(pixels)
    if grey_world:
        weights64 = weights.astype(np.float64)
        means = np.einsum("nhwc,hw->nc", pixels, weights64) / weights64.sum()
        means = np.maximum(means, 1.0).astype(np.float32)  # a black channel stays 0
        pixels = pixels / means[:, None, None, :]
    else:
        pixels = pixels / 128.0
    # Position among the bin centres: bin b covers [b, b + 1) * value_range / bins.
    position = np.clip(pixels * (bins / value_range) - 0.5, 0.0, bins - 1.0)
    lower = np.minimum(position.astype(np.int64), bins - 2)
    upper_share = position - lower
    cell_base = (np.arange(count)[:, None, None] * stripes + stripe_of_row[None, :, None]) * bins**3
    histogram = np.zeros(count * stripes * bins**3)
    for corner in range(8):  # the 2 x 2 x 2 neighbouring bin centres of each pixel
        upper_bits = [(corner >> channel) & 1 for channel in range(3)]
        cell = cell_base.copy()
        share = np.broadcast_to(weights, pixels.shape[:3]).copy()
        for channel, bit in enumerate(upper_bits):
            cell = cell + (lower[..., channel] + bit) * bins ** (2 - channel)
            share *= upper_share[..., channel] if bit else 1.0 - upper_share[..., channel]
        histogram += np.bincount(cell.ravel(), weights=share.ravel(), minlength=histogram.size)
    histogram = histogram.reshape(count, -1)
    histogram /= histogram.sum(axis=1, keepdims=True)
    histogram = np.sqrt(histogram)
    histogram /= np.linalg.norm(histogram, axis=1, keepdims=True)
    return histogram.astype(np.float32)


def evaluate_baseline(
    query: Any, gallery: Any, protocol: str = "market", **descriptor_options: Any
) -> dict[str, Any]:
    """Rank-1, Rank-5, mAP, CMC and the number of valid queries of the descriptor (Section 4.1).

    `query` and `gallery` are each a ``(images, person_ids, camera_ids)`` tuple or an object with
    those attributes (such as a `data.Split`). Same keys as a trained row's metrics, through the
    one evaluation path: the descriptors ranked by `evaluation.evaluate_embeddings` (exact
    search on squared Euclidean distances).
    """
    parts = [_split_parts(split, name) for split, name in ((query, "query"), (gallery, "gallery"))]
    (query_images, query_pids, query_cams), (gallery_images, gallery_pids, gallery_cams) = parts
    result = evaluation.evaluate_embeddings(
        describe(query_images, **descriptor_options), describe(gallery_images, **descriptor_options),
        SimpleNamespace(person_ids=query_pids, camera_ids=query_cams),
        SimpleNamespace(person_ids=gallery_pids, camera_ids=gallery_cams), protocol=protocol,
    )  # fmt: skip
    values = result.to_dict()
    return {key: values[key] for key in METRIC_KEYS}


def _split_parts(split: Any, name: str) -> tuple[Any, Any, Any]:
    fields = ("images", "person_ids", "camera_ids")
    if all(hasattr(split, field) for field in fields):
        parts = tuple(getattr(split, field) for field in fields)
    elif isinstance(split, tuple | list) and len(split) == 3:
        parts = tuple(split)
    else:
        raise ValueError(
            f"{name} must be an (images, person_ids, camera_ids) tuple or have those attributes; "
            f"got {type(split).__name__}"
        )
    count = len(parts[0])
    if any(np.ndim(ids) != 1 or len(ids) != count for ids in parts[1:]):
        raise ValueError(
            f"{name}: person_ids and camera_ids must be 1-D with one entry per image ({count}); "
            f"got shapes {np.shape(parts[1])} and {np.shape(parts[2])}"
        )
    return parts


def _check_images(images: Any) -> np.ndarray:
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB pixels, got dtype {array.dtype}")
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, height, width, 3), got {array.shape}")
    return array


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> int:
    return checks.integer(value, name, minimum)
