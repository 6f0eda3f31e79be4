"""Tests for tripletlib.data: Market-1501 names, the metadata table and its errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tripletlib import data as tripletlib_data
from tripletlib.data import (
    MarketFormatError,
    MarketName,
    format_market_name,
    identities_per_camera,
    load_market1501,
    load_metadata,
    parse_market_name,
    save_metadata,
    summarize,
)

# split folder -> file names; hand-counted below.
LAYOUT = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg",
                           "0007_c3s3_077419_03.jpg"],
    "bounding_box_test": ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg",
                          "0001_c2s1_000301_01.jpg", "0001_c4s6_000810_01.jpg",
                          "0003_c1s1_000101_02.jpg"],
    "query": ["0001_c1s1_001051_00.jpg", "0003_c6s1_000076_00.jpg"],
}  # fmt: skip


def write_jpeg(path: Path, width: int = 4, height: int = 8) -> None:
    Image.new("RGB", (width, height), (200, 30, 30)).save(path, format="JPEG")


@pytest.fixture
def market_root(tmp_path: Path) -> Path:
    """A tiny Market-1501 folder with the extra files the real archive ships."""
    root = tmp_path / "Market-1501-v15.09.15"
    for folder, names in LAYOUT.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            write_jpeg(root / folder / name)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"\x00thumbnail cache")
    (root / "readme.txt").write_text("Market-1501")
    (root / "gt_query").mkdir()
    (root / "gt_query" / "0001_c1s1_001051_good.mat").write_bytes(b"MATLAB")
    (root / "gt_bbox").mkdir()
    write_jpeg(root / "gt_bbox" / "0001_c1s1_001051_00.jpg", width=6, height=10)
    return root


def test_parse_example_from_the_thesis():
    assert parse_market_name("0001_c1s1_001051_00.jpg") == MarketName(1, 1, 1, 1051, 0)
    assert parse_market_name("-1_c3s2_000123_04.jpg").person_id == -1
    assert parse_market_name("0000_c6s1_000076_02.jpg") == MarketName(0, 6, 1, 76, 2)


def test_format_writes_four_digit_ids_and_junk_as_minus_one():
    assert format_market_name(1, 1, 1, 1051, 0) == "0001_c1s1_001051_00.jpg"
    assert format_market_name(-1, 3, 2, 123, 4) == "-1_c3s2_000123_04.jpg"
    assert format_market_name(1501, 6, 6, 999999, 99) == "1501_c6s6_999999_99.jpg"


def test_parse_and_format_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        fields = MarketName(
            int(rng.choice([-1, 0, int(rng.integers(1, 10000))])),
            int(rng.integers(1, 7)),
            int(rng.integers(1, 10)),
            int(rng.integers(0, 1_000_000)),
            int(rng.integers(0, 100)),
        )
        name = format_market_name(**vars(fields))
        assert parse_market_name(name) == fields
        assert format_market_name(**vars(parse_market_name(name))) == name


@pytest.mark.parametrize(
    "name",
    ["foo.jpg", "0001_c9s1_001051_00.jpg", "0001_c0s1_001051_00.jpg", "0001_c1s0_001051_00.jpg",
     "1_c1s1_001051_00.jpg", "0001_c1s1_1051_00.jpg", "0001_c1s1_001051_00.png", "-2_c1s1_000001_00.jpg"],
)  # fmt: skip
def test_parse_rejects_malformed_names(name):
    with pytest.raises(MarketFormatError, match="expected"):
        parse_market_name(name)


@pytest.mark.parametrize(
    "fields",
    [(-2, 1, 1, 0, 0), (10000, 1, 1, 0, 0), (1, 7, 1, 0, 0), (1, 0, 1, 0, 0), (1, 1, 0, 0, 0),
     (1, 1, 1, 1_000_000, 0), (1, 1, 1, 0, 100), (1, 1.5, 1, 0, 0), (True, 1, 1, 0, 0)],
)  # fmt: skip
def test_format_rejects_values_that_do_not_fit_the_rule(fields):
    with pytest.raises(ValueError, match="expected"):
        format_market_name(*fields)


def test_load_counts_equal_files_on_disk(market_root):
    table = load_market1501(market_root)
    assert list(table.columns) == ["file_name", "file_path", "person_id", "camera_id",
                                   "sequence_id", "frame_id", "bbox_index", "split"]  # fmt: skip
    for split, folder in [("train", "bounding_box_train"), ("gallery", "bounding_box_test"),
                          ("query", "query")]:  # fmt: skip
        part = table[table["split"] == split]
        assert sorted(part["file_name"]) == sorted(LAYOUT[folder])
        assert all(Path(path).is_file() for path in part["file_path"])
    assert len(table) == 10
    assert "Thumbs.db" not in set(table["file_name"])


def test_load_parses_fields_and_sorts_by_split_then_name(market_root):
    table = load_market1501(market_root)
    assert list(table["split"]) == ["train"] * 3 + ["gallery"] * 5 + ["query"] * 2
    gallery = table[table["split"] == "gallery"]
    assert list(gallery["file_name"]) == sorted(LAYOUT["bounding_box_test"])
    row = table[table["file_name"] == "0001_c4s6_000810_01.jpg"].iloc[0]
    assert (row.person_id, row.camera_id, row.sequence_id, row.frame_id, row.bbox_index) == (
        1, 4, 6, 810, 1,
    )  # fmt: skip
    assert table["person_id"].dtype == np.int64
    assert list(load_market1501(market_root, splits=("query", "train"))["split"]) == (
        ["query"] * 2 + ["train"] * 3
    )


def test_load_logs_ignored_files_at_debug_level(market_root, caplog):
    with caplog.at_level(logging.DEBUG, logger="tripletlib.data"):
        load_market1501(market_root)
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "Thumbs.db" in messages and "gt_bbox" in messages and "readme.txt" in messages
    assert all(record.levelno == logging.DEBUG for record in caplog.records)


def test_gt_bbox_is_read_only_when_asked(market_root):
    table = load_market1501(market_root, splits=("gt_bbox",), with_image_size=True)
    assert list(table["file_name"]) == ["0001_c1s1_001051_00.jpg"]
    assert (table["image_width"].iloc[0], table["image_height"].iloc[0]) == (6, 10)


def test_image_size_columns(market_root):
    table = load_market1501(market_root, with_image_size=True, progress=False)
    assert set(table["image_width"]) == {4} and set(table["image_height"]) == {8}
    assert table["image_width"].dtype == np.int64


def test_missing_root(tmp_path):
    with pytest.raises(MarketFormatError, match="is not a folder"):
        load_market1501(tmp_path / "nowhere")


def test_missing_split_folder(market_root):
    for path in (market_root / "query").iterdir():
        path.unlink()
    (market_root / "query").rmdir()
    with pytest.raises(MarketFormatError, match="query.*missing folder") as caught:
        load_market1501(market_root)
    assert len(caught.value.problems) == 1


def test_malformed_names_are_all_listed_in_one_error(market_root):
    write_jpeg(market_root / "bounding_box_train" / "foo.jpg")
    write_jpeg(market_root / "query" / "0001_c9s1_001051_00.jpg")
    with pytest.raises(MarketFormatError) as caught:
        load_market1501(market_root)
    message = str(caught.value)
    assert "(2 problem(s))" in message
    assert "foo.jpg: malformed file name; expected" in message
    assert "0001_c9s1_001051_00.jpg: camera c9" in message and "expected c1..c6" in message


def test_error_lists_first_ten_problems_and_the_total(market_root):
    for index in range(13):
        write_jpeg(market_root / "bounding_box_train" / f"bad_{index:02d}.jpg")
    with pytest.raises(MarketFormatError) as caught:
        load_market1501(market_root)
    assert len(caught.value.problems) == 13
    assert "(13 problem(s))" in str(caught.value)
    assert "bad_09.jpg" in str(caught.value) and "bad_10.jpg" not in str(caught.value)
    assert "... and 3 more" in str(caught.value)


def test_corrupt_image_is_found_when_checking_images(market_root):
    broken = market_root / "bounding_box_test" / "0003_c2s1_000101_02.jpg"
    data = (market_root / "query" / "0001_c1s1_001051_00.jpg").read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # a truncated JPEG
    (market_root / "query" / "0003_c5s1_000101_00.jpg").write_bytes(b"not an image")
    assert len(load_market1501(market_root)) == 12  # names alone are fine
    with pytest.raises(MarketFormatError, match="unreadable image") as caught:
        load_market1501(market_root, check_images=True, progress=False)
    assert sorted(Path(path).name for path, _ in caught.value.problems) == [
        "0003_c2s1_000101_02.jpg", "0003_c5s1_000101_00.jpg",
    ]  # fmt: skip
    with pytest.raises(MarketFormatError, match="0003_c5s1_000101_00.jpg: unreadable"):
        load_market1501(market_root, with_image_size=True, progress=False)


def test_empty_split(market_root):
    for path in (market_root / "bounding_box_train").iterdir():
        path.unlink()
    (market_root / "bounding_box_train" / "Thumbs.db").write_bytes(b"")
    with pytest.raises(MarketFormatError, match="bounding_box_train: empty split"):
        load_market1501(market_root)


def test_unknown_split_name(market_root):
    with pytest.raises(ValueError, match="expected distinct names among"):
        load_market1501(market_root, splits=("test",))
    with pytest.raises(ValueError, match="expected distinct names among"):
        load_market1501(market_root, splits=("train", "train"))


def test_metadata_round_trip_keeps_dtypes(market_root, tmp_path):
    table = load_market1501(market_root, with_image_size=True, progress=False)
    save_metadata(table, tmp_path / "meta" / "market.csv")
    pd.testing.assert_frame_equal(load_metadata(tmp_path / "meta" / "market.csv"), table)


def test_load_metadata_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_metadata(tmp_path / "missing.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        load_metadata(tmp_path / "other.csv")
    with pytest.raises(ValueError, match="missing column"):
        save_metadata(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")


def test_summarize_counts_identities_junk_and_distractors(market_root):
    summary = summarize(load_market1501(market_root))
    expected = pd.DataFrame(
        {"identities": [2, 2, 2, 4], "images": [3, 5, 2, 10], "junk_images": [0, 1, 0, 1],
         "distractor_images": [0, 1, 0, 1]},
        index=pd.Index(["train", "gallery", "query", "all"], name="split"),
    )  # fmt: skip
    pd.testing.assert_frame_equal(summary, expected)


def test_identities_per_camera(market_root):
    counts = identities_per_camera(load_market1501(market_root))
    assert list(counts.index) == [1, 2, 3, 4, 5, 6]
    # camera 1: train 0002; gallery 0003 (junk and distractor do not count); query 0001
    assert counts.loc[1].to_dict() == {"train": 1, "gallery": 1, "query": 1, "all": 3}
    assert counts.loc[2].to_dict() == {"train": 1, "gallery": 1, "query": 0, "all": 2}
    assert counts["all"].to_dict() == {1: 3, 2: 2, 3: 1, 4: 1, 5: 0, 6: 1}


def test_dataset_kind_follows_the_marker(tmp_path):
    assert tripletlib_data.dataset_kind(tmp_path) == "market1501"
    (tmp_path / tripletlib_data.SYNTHETIC_MARKER).write_text("{}")
    assert tripletlib_data.dataset_kind(tmp_path) == "synthetic"
