"""Market-1501 file names and the metadata table (Sections 3.1.1 and 3.1.2, Fig. 3.4).

A Market-1501 image is named ``0001_c1s1_001051_00.jpg``: person id (four digits; ``0000`` marks a
distractor and ``-1`` a junk detection), camera ``c1``..``c6``, sequence ``s1``.., six-digit frame
number and two-digit bounding-box index. `load_market1501` reads the three split folders into one
`pandas.DataFrame` (one row per image) and reports every problem it finds in a single
`MarketFormatError`. `load_splits` adds the decoded images: one `Split` per split, the one split
type that training, evaluation and the notebooks share.

A folder of people (``ROOT/<person>/<any name>.jpg|.png|.bmp``, no camera ids) loads into the same
table (`load_person_folders`, `dataset_layout` tells the two apart): its people are split into
training and test people, each test person's images into query and gallery, with a fixed seed, and
every image gets a camera id of its own (`PERSON_FOLDERS_PROTOCOL`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from tripletlib import images
from tripletlib.files import DamagedFileError, atomic_path
from tripletlib.files import read_json as read_json_file

logger = logging.getLogger(__name__)

SPLIT_FOLDERS: dict[str, str] = {
    "train": "bounding_box_train",
    "gallery": "bounding_box_test",
    "query": "query",
    "gt_bbox": "gt_bbox",
}
DEFAULT_SPLITS: tuple[str, ...] = ("train", "gallery", "query")

# A file that `tripletlib synth` writes into the dataset root: its presence marks every number computed
# on that folder as synthetic, so that no table can present it as a Market-1501 result.
SYNTHETIC_MARKER = "tripletlib-synthetic.json"


MARKET_FOLDERS = tuple(SPLIT_FOLDERS[split] for split in DEFAULT_SPLITS)  # a Market-1501 root's


def dataset_kind(data_root: str | Path) -> str:
    """'synthetic' when the folder carries the generator's marker file, 'person-folders' for a
    folder of sub-folders without any Market-1501 split folder (`dataset_layout`), else
    'market1501'."""
    root = Path(data_root)
    if (root / SYNTHETIC_MARKER).is_file():
        return "synthetic"
    if not root.is_dir() or any((root / folder).is_dir() for folder in MARKET_FOLDERS):
        return "market1501"
    folders = any(entry.is_dir() and not entry.name.startswith(".") for entry in root.iterdir())
    return "person-folders" if folders else "market1501"


JUNK_ID = -1
DISTRACTOR_ID = 0
NUMBER_OF_CAMERAS = 6
EXAMPLE_NAME = "0001_c1s1_001051_00.jpg"
NAME_RULE = (
    "<person id: 4 digits or -1>_c<camera 1-6>s<sequence>_<frame: 6 digits>_<box: 2 digits>.jpg, "
    f"e.g. {EXAMPLE_NAME}"
)
# Files the official archive ships next to the images; they are skipped (logged at debug level).
IGNORED_FILE_NAMES = frozenset({"Thumbs.db", "desktop.ini"})
IGNORED_SUFFIXES = frozenset({".txt", ".mat", ".db"})
METADATA_COLUMNS: dict[str, str] = {
    "file_name": "str",
    "file_path": "str",
    "person_id": "int64",
    "camera_id": "int64",
    "sequence_id": "int64",
    "frame_id": "int64",
    "bbox_index": "int64",
    "split": "str",
}
SIZE_COLUMNS: dict[str, str] = {"image_width": "int64", "image_height": "int64"}
MAX_LISTED_PROBLEMS = 10

_NAME_PATTERN = re.compile(r"^(-1|\d{4})_c(\d)s(\d+)_(\d{6})_(\d{2})\.jpg$")


class MarketFormatError(ValueError):
    """A Market-1501 folder or file name that does not follow the layout of Section 3.1.2.

    `problems` holds every ``(path, what was wrong and what was expected)`` pair found; the message
    lists the first `MAX_LISTED_PROBLEMS` of them and the total count.
    """

    def __init__(self, summary: str, problems: Sequence[tuple[str, str]] = ()):
        self.problems = list(problems)
        lines = [summary]
        if self.problems:
            lines[0] += f" ({len(self.problems)} problem(s))"
            lines += [f"  {path}: {reason}" for path, reason in self.problems[:MAX_LISTED_PROBLEMS]]
            if len(self.problems) > MAX_LISTED_PROBLEMS:
                lines.append(f"  ... and {len(self.problems) - MAX_LISTED_PROBLEMS} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class MarketName:
    """The fields of a Market-1501 file name (Section 3.1.2)."""

    person_id: int
    camera_id: int
    sequence_id: int
    frame_id: int
    bbox_index: int


def _parse_or_reason(file_name: str) -> MarketName | str:
    """The parsed name, or a sentence saying what is wrong with it and what was expected."""
    match = _NAME_PATTERN.match(file_name)
    if match is None:
        return f"malformed file name; expected {NAME_RULE}"
    person, camera, sequence, frame, box = (int(group) for group in match.groups())
    if not 1 <= camera <= NUMBER_OF_CAMERAS:
        return f"camera c{camera} in the file name; expected c1..c{NUMBER_OF_CAMERAS}"
    if sequence < 1:
        return f"sequence s{sequence} in the file name; expected s1 or higher"
    return MarketName(person, camera, sequence, frame, box)


def parse_market_name(file_name: str) -> MarketName:
    """Split ``0001_c1s1_001051_00.jpg`` into its fields; raise `MarketFormatError` otherwise."""
    parsed = _parse_or_reason(file_name)
    if isinstance(parsed, str):
        raise MarketFormatError(f"{file_name!r}: {parsed}")
    return parsed


def format_market_name(
    person_id: int, camera_id: int, sequence_id: int, frame_id: int, bbox_index: int
) -> str:
    """Build a Market-1501 file name, e.g. ``(1, 1, 1, 1051, 0) -> "0001_c1s1_001051_00.jpg"``."""
    checks = [
        ("person_id", person_id, person_id == JUNK_ID or 0 <= person_id <= 9999, "-1 or 0..9999"),
        ("camera_id", camera_id, 1 <= camera_id <= NUMBER_OF_CAMERAS, f"1..{NUMBER_OF_CAMERAS}"),
        ("sequence_id", sequence_id, sequence_id >= 1, ">= 1"),
        ("frame_id", frame_id, 0 <= frame_id <= 999_999, "0..999999"),
        ("bbox_index", bbox_index, 0 <= bbox_index <= 99, "0..99"),
    ]
    for name, value, valid, expected in checks:
        if isinstance(value, bool) or int(value) != value or not valid:
            raise ValueError(
                f"{name}={value!r} cannot be written in a Market-1501 name; expected {expected}"
            )
    person = "-1" if person_id == JUNK_ID else f"{int(person_id):04d}"
    return f"{person}_c{int(camera_id)}s{int(sequence_id)}_{int(frame_id):06d}_{int(bbox_index):02d}.jpg"


def _is_ignored(path: Path) -> bool:
    return (
        path.name.startswith(".")
        or path.name in IGNORED_FILE_NAMES
        or path.suffix.lower() in IGNORED_SUFFIXES
    )


def _read_image_size(path: Path, decode: bool) -> tuple[int, int]:
    """(width, height) from the header; `decode` also decodes every pixel to catch truncation."""
    with Image.open(path) as image:
        if decode:
            image.load()
        return image.size


def read_synthetic_marker(root: str | Path) -> dict | None:
    """The generator's marker of a synthetic dataset (`SYNTHETIC_MARKER`), None without one.

    Holds ``settings``, ``complete`` (False while the images are being written, so an interrupted
    generation stays marked) and, since the manifest was added, ``files`` (``{folder: {file name:
    size in bytes}}``) and ``digest`` (`files_digest` of those files).
    """
    path = Path(root).expanduser() / SYNTHETIC_MARKER
    if not path.is_file():
        return None
    marker = read_json_file(path, MARKER_WAY_OUT)
    recorded = marker.get("files", {}) if isinstance(marker, dict) else None
    if not isinstance(recorded, dict) or not all(
        isinstance(sizes, dict) and all(isinstance(size, int) for size in sizes.values())
        for sizes in recorded.values()
    ):
        raise DamagedFileError(
            f"{path} is damaged (not the marker of a synthetic dataset: a JSON object whose "
            f"'files' maps each folder to its files' sizes); {MARKER_WAY_OUT}"
        )
    return marker


MARKER_WAY_OUT = (
    "write the set again with the same `tripletlib synth` command and --overwrite "
    "(overwrite=True)"
)


def files_digest(root: str | Path, files: dict[str, dict[str, int]]) -> str:
    """SHA-256 over the folders, names and bytes of `files` (``{folder: {name: size}}``), sorted."""
    digest = hashlib.sha256()
    root = Path(root)
    for folder in sorted(files):
        for name in sorted(files[folder]):
            digest.update(f"{folder}/{name}\0".encode())
            digest.update((root / folder / name).read_bytes())
    return digest.hexdigest()


def synthetic_file_problems(
    root: Path, marker: dict, folders: Sequence[str], check_digest: bool
) -> list[tuple[str, str]]:
    """Differences between the files of `folders` on disk and those the generator recorded."""
    if not marker.get("complete"):
        raise MarketFormatError(
            f"{root} holds a synthetic dataset whose generation did not finish ('complete': false "
            f"in {SYNTHETIC_MARKER}); run the same `tripletlib synth` command again to finish it"
        )
    recorded = marker.get("files")
    if not isinstance(recorded, dict):  # written before the generator kept a manifest
        return []
    problems = []
    for folder in folders:
        expected = recorded.get(folder, {})
        directory = root / folder
        on_disk = {
            path.name: path.stat().st_size
            for path in (directory.iterdir() if directory.is_dir() else ())
            if path.is_file() and not _is_ignored(path)
        }
        for name in sorted(set(expected) | set(on_disk)):
            path = str(directory / name)
            if name not in on_disk:
                problems.append((path, "missing; the generator wrote it"))
            elif name not in expected:
                problems.append((path, "not written by the generator (added later)"))
            elif on_disk[name] != expected[name]:
                problems.append(
                    (path, f"{on_disk[name]} bytes; the generator wrote {expected[name]} (damaged)")
                )
    if check_digest and not problems and marker.get("digest"):
        subset = {folder: recorded.get(folder, {}) for folder in folders}
        if set(folders) == set(recorded) and files_digest(root, subset) != marker["digest"]:
            problems.append(
                (str(root), "file contents differ from what the generator wrote (digest mismatch)")
            )
    return problems


def load_market1501(
    root: str | Path,
    splits: Sequence[str] = DEFAULT_SPLITS,
    with_image_size: bool = False,
    check_images: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Read a Market-1501 folder into the metadata table of Fig. 3.4 (Section 3.1.2).

    Columns: ``file_name, file_path, person_id, camera_id, sequence_id, frame_id, bbox_index,
    split`` (+ ``image_width, image_height`` with `with_image_size`); rows sorted by split (in the
    order of `splits`) and file name. `check_images` decodes every image. Problems (missing folder,
    malformed name, unreadable image, empty split) are collected into one `MarketFormatError`.
    A synthetic folder is refused while its generation is unfinished (the marker's ``complete``)
    and when its files differ in name or size from what the generator recorded (with
    `check_images`, in content too).
    """
    root = Path(root).expanduser()
    if isinstance(splits, str):
        splits = (splits,)
    unknown = [split for split in splits if split not in SPLIT_FOLDERS]
    if unknown or not splits or len(set(splits)) != len(splits):
        raise ValueError(
            f"splits {tuple(splits)!r}; expected distinct names among {list(SPLIT_FOLDERS)}"
        )
    if not root.is_dir():
        raise MarketFormatError(
            f"Market-1501 root {str(root)!r} is not a folder; expected a folder holding "
            + ", ".join(f"{SPLIT_FOLDERS[split]}/" for split in splits)
        )
    wanted_folders = {SPLIT_FOLDERS[split] for split in splits}
    skipped = sorted(entry.name for entry in root.iterdir() if entry.name not in wanted_folders)
    if skipped:
        logger.debug("%s: not read (not a requested split folder): %s", root, skipped)

    problems: list[tuple[str, str]] = []
    marker = read_synthetic_marker(root)
    if marker is not None:  # refused when partial, damaged, or grown since it was written
        folders = [SPLIT_FOLDERS[split] for split in splits]
        problems += synthetic_file_problems(root, marker, folders, check_digest=check_images)
    rows: list[dict] = []
    for split in splits:
        folder = root / SPLIT_FOLDERS[split]
        if not folder.is_dir():
            problems.append((str(folder), f"missing folder; expected the {split!r} split here"))
            continue
        ignored, found = [], 0
        for path in sorted(folder.iterdir()):
            if _is_ignored(path) and not path.is_dir():
                ignored.append(path.name)
                continue
            if path.is_dir():
                problems.append((str(path), "unexpected sub-folder; expected only .jpg images"))
                continue
            name = _parse_or_reason(path.name)
            if isinstance(name, str):
                problems.append((str(path), name))
                continue
            found += 1
            rows.append(
                {"file_name": path.name, "file_path": str(path), **vars(name), "split": split}
            )
        if ignored:
            logger.debug("%s: ignored %d non-image file(s): %s", folder, len(ignored), ignored)
        if found == 0:
            problems.append((str(folder), "empty split; expected at least one .jpg image"))

    if with_image_size or check_images:
        iterator = tqdm(rows, desc="reading images", unit="image", disable=not progress)
        for row in iterator:
            try:
                row["image_width"], row["image_height"] = _read_image_size(
                    Path(row["file_path"]), decode=check_images
                )
            except (OSError, SyntaxError, ValueError) as error:
                problems.append((row["file_path"], f"unreadable image ({error}); expected a JPEG"))
    if problems:
        raise MarketFormatError(f"{root} does not look like a Market-1501 folder", problems)

    columns = dict(METADATA_COLUMNS, **(SIZE_COLUMNS if with_image_size else {}))
    table = pd.DataFrame(rows, columns=list(columns)).astype(columns)
    table["_split_order"] = table["split"].map({split: i for i, split in enumerate(splits)})
    table = table.sort_values(["_split_order", "file_name"], kind="stable")
    return table.drop(columns="_split_order").reset_index(drop=True)


def save_metadata(metadata: pd.DataFrame, path: str | Path) -> None:
    """Write the metadata table to CSV (Section 3.1.2: "saved to disk"); see `load_metadata`."""
    missing = [column for column in METADATA_COLUMNS if column not in metadata.columns]
    if missing:
        raise ValueError(
            f"metadata is missing column(s) {missing}; expected {list(METADATA_COLUMNS)}"
        )
    with atomic_path(path) as temporary:  # an interrupted save leaves the old file or the new one
        metadata.to_csv(temporary, index=False)


def load_metadata(path: str | Path) -> pd.DataFrame:
    """Read a table written by `save_metadata`, with the column dtypes of `load_market1501`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"metadata file {str(path)!r} does not exist; write it with save_metadata")
    header = pd.read_csv(path, nrows=0).columns
    missing = [column for column in METADATA_COLUMNS if column not in header]
    if missing:
        raise ValueError(
            f"{path} is missing column(s) {missing}; expected {list(METADATA_COLUMNS)}"
        )
    dtypes = {**METADATA_COLUMNS, **SIZE_COLUMNS}
    return pd.read_csv(
        path, dtype={column: dtypes[column] for column in header if column in dtypes}
    )


def _identities(person_ids: pd.Series) -> pd.Series:
    return person_ids[~person_ids.isin([JUNK_ID, DISTRACTOR_ID])]


def _check_columns(metadata: pd.DataFrame, required: Iterable[str]) -> None:
    missing = [column for column in required if column not in metadata.columns]
    if missing:
        raise ValueError(
            f"metadata is missing column(s) {missing}; expected a load_market1501 table"
        )


def summarize(metadata: pd.DataFrame) -> pd.DataFrame:
    """Identities and images per split, with junk (-1) and distractor (0000) counts (Sec. 3.1.1).

    One row per split in table order plus an ``all`` row; junk and distractors are not identities.
    """
    _check_columns(metadata, ["split", "person_id"])
    splits = list(dict.fromkeys(metadata["split"]))
    rows = {}
    for split, part in [(split, metadata[metadata["split"] == split]) for split in splits] + [
        ("all", metadata)
    ]:
        rows[split] = {
            "identities": _identities(part["person_id"]).nunique(),
            "images": len(part),
            "junk_images": int((part["person_id"] == JUNK_ID).sum()),
            "distractor_images": int((part["person_id"] == DISTRACTOR_ID).sum()),
        }
    summary = pd.DataFrame.from_dict(rows, orient="index").astype("int64")
    summary.index.name = "split"
    return summary


def identities_per_camera(metadata: pd.DataFrame) -> pd.DataFrame:
    """Distinct identities seen by each camera, per split and over all splits (Fig. 3.3).

    Index ``camera_id`` 1..6; junk and distractor images are left out.
    """
    _check_columns(metadata, ["split", "person_id", "camera_id"])
    people = metadata[~metadata["person_id"].isin([JUNK_ID, DISTRACTOR_ID])]
    cameras = pd.Index(range(1, NUMBER_OF_CAMERAS + 1), name="camera_id")
    counts = {
        split: people[people["split"] == split].groupby("camera_id")["person_id"].nunique()
        for split in dict.fromkeys(metadata["split"])
    }
    counts["all"] = people.groupby("camera_id")["person_id"].nunique()
    return pd.DataFrame(counts).reindex(cameras, fill_value=0).fillna(0).astype("int64")


@dataclass
class Split:
    """One split: images `(N, H, W, 3)` uint8 with their person and camera ids (int64) and, when
    loaded by `load_splits`, the metadata rows they came from (same order)."""

    images: np.ndarray
    person_ids: np.ndarray
    camera_ids: np.ndarray
    metadata: pd.DataFrame | None = None

    def subset(self, rows: np.ndarray) -> Split:
        metadata = None if self.metadata is None else self.metadata.iloc[rows].reset_index(drop=True)
        return Split(self.images[rows], self.person_ids[rows], self.camera_ids[rows], metadata)


# --- a folder of people, no camera ids -----------------------------------------------------------
PERSON_FOLDERS = "person-folders"
MARKET = "market"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FOLDER_TEST_FRACTION = 0.5  # of the people: test identities, disjoint from the training ones
FOLDER_QUERY_FRACTION = 0.2  # of each test person's images: queries (at least one, never all)
FOLDER_SPLIT_SEED = 0  # fixed, so that train and evaluate see the same split
PERSON_FOLDERS_PROTOCOL = (
    "people sorted by folder name get ids 1..N; a seeded half of them (FOLDER_TEST_FRACTION, "
    "rounded down) are test people, the others train; of each test person with two or more "
    "images a seeded fifth (at least one, never all) are queries and the rest gallery; every "
    "image has a camera id of its own, so the Market protocol's same-camera rule removes no "
    "gallery image (market and naive give the same numbers) and a training positive is any "
    "other image of the person"
)


def is_image_file(path: Path) -> bool:
    """A file with an image suffix (`IMAGE_SUFFIXES`, any case) that is not hidden."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def dataset_layout(root: str | Path) -> str:
    """`PERSON_FOLDERS` for a folder of sub-folders without any Market-1501 split folder
    (`dataset_kind`), else `MARKET` (whose loader then says what is missing)."""
    return PERSON_FOLDERS if dataset_kind(root) == PERSON_FOLDERS else MARKET


def _person_images(root: Path) -> tuple[dict[str, list[Path]], list[tuple[str, str]]]:
    people, problems = {}, []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or (entry.is_file() and _is_ignored(entry)):
            continue
        if not entry.is_dir():
            problems.append((str(entry), "a file beside the person folders; expected ROOT/<person>/"))
            continue
        found = sorted(path for path in entry.rglob("*") if is_image_file(path))
        if found:
            people[entry.name] = found
    return people, problems


def load_person_folders(
    root: str | Path, splits: Sequence[str] = DEFAULT_SPLITS, seed: int = FOLDER_SPLIT_SEED
) -> pd.DataFrame:
    """A folder of people as the metadata table of `load_market1501` (`PERSON_FOLDERS_PROTOCOL`).

    Each person's images are found recursively below ``root/<person>/`` (`IMAGE_SUFFIXES`);
    ``file_name`` is the path below `root`, ``person_name`` the folder name. Needs two people or
    more, and a test person with two images; problems are one `MarketFormatError`.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MarketFormatError(f"{root} is not a folder; expected ROOT/<person>/<image files>")
    people, problems = _person_images(root)
    names = sorted(people)
    if len(names) < 2:
        problems.append((str(root), f"{len(names)} person folder(s) with images "
                         f"({', '.join(IMAGE_SUFFIXES)}); expected two or more"))  # fmt: skip
    if problems:
        raise MarketFormatError(f"{root} does not look like a folder of people", problems)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    test_people = {names[i] for i in order[: max(1, int(len(names) * FOLDER_TEST_FRACTION))]}
    rows, camera = [], 0
    for person_id, name in enumerate(names, start=1):
        paths = people[name]
        query = set()
        if name in test_people and len(paths) > 1:
            count = min(len(paths) - 1, max(1, round(len(paths) * FOLDER_QUERY_FRACTION)))
            query = {int(i) for i in rng.permutation(len(paths))[:count]}
        for position, path in enumerate(paths):
            camera += 1
            split = "train" if name not in test_people else "query" if position in query else "gallery"
            rows.append({
                "file_name": path.relative_to(root).as_posix(), "file_path": str(path),
                "person_id": person_id, "camera_id": camera, "sequence_id": 0, "frame_id": 0,
                "bbox_index": 0, "split": split, "person_name": name,
            })  # fmt: skip
    table = pd.DataFrame(rows).astype(METADATA_COLUMNS)
    empty = [split for split in splits if not (table["split"] == split).any()]
    if empty:
        raise MarketFormatError(
            f"{root}: no {' or '.join(empty)} images under the folder split ({len(names)} people, "
            f"{len(test_people)} of them test people); expected more people or images per person"
        )
    if "train" in splits and len(names) - len(test_people) < 2:
        raise MarketFormatError(
            f"{root}: {len(names) - len(test_people)} training person (of {len(names)} people); "
            "expected four people or more to train on (two to evaluate)"
        )
    table = table[table["split"].isin(list(splits))]
    table["_split_order"] = table["split"].map({split: i for i, split in enumerate(splits)})
    table = table.sort_values(["_split_order", "file_name"], kind="stable")
    return table.drop(columns="_split_order").reset_index(drop=True)


def load_splits(
    data_root: str | Path,
    height: int,
    width: int,
    cache_dir: str | Path | None = None,
    splits: Sequence[str] = DEFAULT_SPLITS,
    metadata: pd.DataFrame | None = None,
    progress: bool = False,
    write_cache: bool = True,
) -> dict[str, Split]:
    """The `splits` of a Market-1501 folder with their images decoded at `height` x `width`.

    "train" drops junk (-1) and distractor (0000) images, which have no identity to learn;
    "gallery" and "query" keep every image (the evaluation protocol needs them, Section 4.1).
    Images are decoded once into `cache_dir` (`images.load_image_array`; with `write_cache=False`
    a cache there is read, a missing one decoded in memory). `metadata`, from an
    earlier `load_market1501(data_root)`, saves reading the folders again. A folder of people
    (`dataset_layout`) is split as `PERSON_FOLDERS_PROTOCOL` says.
    """
    if metadata is None and dataset_layout(data_root) == PERSON_FOLDERS:
        metadata = load_person_folders(data_root, splits)
    elif metadata is None:
        metadata = load_market1501(data_root, splits=tuple(splits), progress=progress)
    result = {}
    for name in splits:
        rows = metadata[metadata["split"] == name]
        if name == "train":
            rows = rows[rows["person_id"] > DISTRACTOR_ID]
        rows = rows.reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"{data_root}: {SPLIT_FOLDERS[name]}/ has no usable images")
        pixels = images.load_image_array(
            rows, height, width, cache_dir, progress=progress, write=write_cache
        )
        person_ids, camera_ids = (rows[c].to_numpy(np.int64) for c in ("person_id", "camera_id"))
        result[name] = Split(pixels, person_ids, camera_ids, rows)
    return result
