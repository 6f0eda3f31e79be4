"""Decode once: every image as one uint8 array, cached on disk and memory-mapped (Section 3.1.2).

The thesis resizes every image to 256x128 for training; decoding and resizing thousands of JPEGs
each epoch would dominate a CPU run, so `load_image_array` does it once per (file list, size) and
keeps the result as a ``.npy`` file that later calls open memory-mapped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from tripletlib import checks, files


class ImageReadError(ValueError):
    """An image file that is missing, unreadable or corrupt."""


def _paths_of(df_or_paths: pd.DataFrame | Sequence[str | Path]) -> list[str]:
    if isinstance(df_or_paths, pd.DataFrame):
        if "file_path" not in df_or_paths.columns:
            raise ValueError(
                "the metadata table has no 'file_path' column; expected a table "
                "from data.load_market1501 or a list of image paths"
            )
        return [str(path) for path in df_or_paths["file_path"]]
    if isinstance(df_or_paths, str | Path):
        raise ValueError(f"expected a table or a list of image paths, got one path {df_or_paths!r}")
    return [str(path) for path in df_or_paths]


def _file_digest(path: str) -> str:
    try:
        return files.file_sha256(path)
    except OSError as error:
        raise ImageReadError(f"cannot read image {path!r}: {error.strerror}") from error


def cache_key(paths: Sequence[str], height: int, width: int) -> str:
    """Hash of the image size and every (path, SHA-256 of the file's bytes) pair: a changed file
    list or a file whose content changed (even at the same byte size) misses."""
    digest = hashlib.sha256(f"{height}x{width}\n".encode())
    for path in paths:
        digest.update(f"{path}\t{_file_digest(path)}\n".encode())
    return digest.hexdigest()[:20]


def read_image(path: str, height: int, width: int) -> np.ndarray:
    """One image as uint8 ``(height, width, 3)`` RGB, resized with PIL's bilinear filter."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(
            f"cannot decode image {path!r} ({error}); expected a JPEG, PNG or BMP image"
        ) from error


def _decode_into(target: np.ndarray, paths: Sequence[str], progress: bool) -> None:
    height, width = target.shape[1:3]
    for index, path in enumerate(
        tqdm(paths, desc="decoding images", unit="image", disable=not progress)
    ):
        target[index] = read_image(path, height, width)


def load_image_array(
    df_or_paths: pd.DataFrame | Sequence[str | Path],
    height: int,
    width: int,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    write: bool = True,
) -> np.ndarray:
    """All images as uint8 ``(N, height, width, 3)`` RGB, in the order of the table or list.

    With `cache_dir` the array is written once to ``cache_dir/images_<H>x<W>_<key>.npy`` (atomic
    rename; `cache_key` covers the paths, a digest of each file's bytes and the size) and returned
    memory-mapped read-only; later calls with the same files open it without decoding (reading
    and hashing the bytes, much cheaper than decoding them). With `write=False` nothing is
    written: a cache file there is read, a missing one decoded in memory. A damaged cache file is
    decoded again.
    """
    height = checks.integer(height, "height", whole_float=True)
    width = checks.integer(width, "width", whole_float=True)
    paths = _paths_of(df_or_paths)
    shape = (len(paths), int(height), int(width), 3)
    cache_file = None
    if cache_dir is not None and paths:
        cache_dir = Path(cache_dir)
        cache_file = cache_dir / f"images_{height}x{width}_{cache_key(paths, height, width)}.npy"
        if cache_file.is_file():
            try:
                cached = np.load(cache_file, mmap_mode="r")
            except (ValueError, OSError):
                cached = None  # damaged (a truncated copy): decoded again below
            if cached is not None and cached.shape == shape and cached.dtype == np.uint8:
                return cached
    if cache_file is None or not write:
        images = np.empty(shape, np.uint8)
        _decode_into(images, paths, progress)
        return images
    with files.atomic_path(cache_file) as temporary:  # the package's one temporary naming rule
        images = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
        _decode_into(images, paths, progress)
        images.flush()
        del images
    return np.load(cache_file, mmap_mode="r")
