"""Tests for tripletlib.images: decode once, cache as .npy, reopen memory-mapped."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tripletlib import images
from tripletlib.images import ImageReadError, cache_key, load_image_array

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30)]


@pytest.fixture
def image_paths(tmp_path: Path) -> list[str]:
    """Four solid-colour 2x4 PNGs (lossless, so every resized pixel keeps the exact colour)."""
    paths = []
    for index, colour in enumerate(COLOURS):
        path = tmp_path / "images" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (2, 4), colour).save(path)
        paths.append(str(path))
    return paths


def test_shape_dtype_order_and_colours(image_paths):
    array = load_image_array(image_paths, 8, 4, progress=False)
    assert array.shape == (4, 8, 4, 3) and array.dtype == np.uint8
    for index, colour in enumerate(COLOURS):
        assert (array[index] == colour).all()
    reversed_array = load_image_array(image_paths[::-1], 8, 4, progress=False)
    np.testing.assert_array_equal(reversed_array, array[::-1])


def test_resize_is_pil_bilinear(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "noise.png")
    expected = np.asarray(Image.fromarray(pixels).resize((5, 12), Image.BILINEAR))
    np.testing.assert_array_equal(load_image_array([tmp_path / "noise.png"], 12, 5)[0], expected)


def test_accepts_a_metadata_table(image_paths):
    table = pd.DataFrame({"file_path": image_paths[:2], "person_id": [1, 2]})
    array = load_image_array(table, 4, 2, progress=False)
    assert array.shape == (2, 4, 2, 3)
    assert (array[1] == COLOURS[1]).all()


def test_cache_hit_returns_identical_memory_mapped_data(image_paths, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_image_array(image_paths, 8, 4, cache_dir=cache, progress=False)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"
    assert isinstance(first, np.memmap) and not first.flags.writeable

    def no_decoding(*args):
        raise AssertionError("a cache hit must not decode images")

    monkeypatch.setattr(images, "read_image", no_decoding)
    second = load_image_array(image_paths, 8, 4, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(second, first)
    assert isinstance(second, np.memmap)
    assert list(cache.iterdir()) == files


def test_changed_file_list_size_or_file_misses_the_cache(image_paths, tmp_path):
    cache = tmp_path / "cache"
    load_image_array(image_paths, 8, 4, cache_dir=cache, progress=False)
    subset = load_image_array(image_paths[:3], 8, 4, cache_dir=cache, progress=False)
    assert subset.shape[0] == 3
    load_image_array(image_paths, 16, 8, cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npy"))) == 3
    before = cache_key(image_paths, 8, 4)
    Image.new("RGB", (3, 5), (1, 2, 3)).save(image_paths[0])  # same name, new content and size
    assert cache_key(image_paths, 8, 4) != before
    changed = load_image_array(image_paths, 8, 4, cache_dir=cache, progress=False)
    assert (changed[0] == (1, 2, 3)).all()
    assert len(list(cache.glob("*.npy"))) == 4
    assert not list(cache.glob("*.tmp"))


def jpeg_bytes(colour, size: int) -> bytes:
    """A solid-colour 8x4 JPEG padded to exactly `size` bytes after its EOI marker (ignored)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 8), colour).save(buffer, format="JPEG")
    data = buffer.getvalue()
    assert data.endswith(b"\xff\xd9") and len(data) <= size
    return data + b"\0" * (size - len(data))


def test_file_replaced_by_same_size_image_misses_the_cache(tmp_path):
    paths = [tmp_path / f"{index}.jpg" for index in range(3)]
    for path, colour in zip(paths, COLOURS[:3], strict=True):
        path.write_bytes(jpeg_bytes(colour, 2048))
    cache = tmp_path / "cache"
    before = np.array(load_image_array(paths, 8, 4, cache_dir=cache, progress=False))
    stat = os.stat(paths[1])
    paths[1].write_bytes(jpeg_bytes((200, 100, 50), 2048))  # same byte size and mtime
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(paths[1]).st_size == stat.st_size
    after = load_image_array(paths, 8, 4, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(after[1], images.read_image(str(paths[1]), 8, 4))
    assert not np.array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
    assert len(list(cache.glob("*.npy"))) == 2


def test_corrupt_image_names_the_file_and_leaves_no_cache(image_paths, tmp_path):
    Path(image_paths[2]).write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageReadError, match=r"2\.png"):
        load_image_array(image_paths, 8, 4, progress=False)
    cache = tmp_path / "cache"
    with pytest.raises(ImageReadError, match=r"cannot decode image .*2\.png"):
        load_image_array(image_paths, 8, 4, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []


def test_missing_file_names_the_file(image_paths, tmp_path):
    with pytest.raises(ImageReadError, match="gone.png"):
        load_image_array([*image_paths, str(tmp_path / "gone.png")], 8, 4, cache_dir=tmp_path)
    with pytest.raises(ImageReadError, match="gone.png"):
        load_image_array([tmp_path / "gone.png"], 8, 4)


def test_bad_arguments(image_paths):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        load_image_array(image_paths, 0, 4)
    with pytest.raises(ValueError, match="file_path"):
        load_image_array(pd.DataFrame({"path": image_paths}), 8, 4)
    with pytest.raises(ValueError, match="one path"):
        load_image_array(image_paths[0], 8, 4)


def test_empty_list_gives_an_empty_array(tmp_path):
    empty = load_image_array([], 8, 4, cache_dir=tmp_path / "cache")
    assert empty.shape == (0, 8, 4, 3) and empty.dtype == np.uint8
