"""A synthetic dataset with Market-1501's layout, names and protocol (Sections 3.1.1 and 3.1.2).

`generate_synthetic_market` writes ``bounding_box_train/``, ``bounding_box_test/`` and ``query/``
so that the whole pipeline runs without the real dataset: it plans who is seen by which camera,
draws each image (`drawing`: the people's looks and the six cameras' styles) in worker processes,
and records the files in a marker that its readers check. The gallery holds distractors (``0000``)
and junk (``-1``); there is one query per test identity and camera (Section 3.1.1).
``preset="market"`` reproduces Market-1501's counts. The same arguments give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from tripletlib import checks, drawing
from tripletlib.data import (
    DISTRACTOR_ID,
    JUNK_ID,
    SPLIT_FOLDERS,
    SYNTHETIC_MARKER,
    MarketFormatError,
    files_digest,
    format_market_name,
    parse_market_name,
    read_synthetic_marker,
    synthetic_file_problems,
)
from tripletlib.drawing import VIEWS, Look, make_looks, render_image
from tripletlib.files import (
    TEMPORARY_PREFIX,
    DamagedFileError,
    write_bytes_atomic,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
SPLITS = ("train", "gallery", "query")
# Market-1501's gallery: 13,120 good images, 2,793 distractors and 3,819 junk images.
DISTRACTORS_PER_GOOD_IMAGE = 2793 / 13120
JUNK_PER_GOOD_IMAGE = 3819 / 13120
# Market-1501: 12,936 training images over about 3,370 (identity, camera) pairs.
IMAGES_PER_TRACK = 3.85
# Chance that a camera sees an identity: cameras 1 and 3 see most, camera 4 fewest (Fig. 3.3).
CAMERA_WEIGHTS = np.array([0.88, 0.78, 0.9, 0.32, 0.8, 0.8])


@dataclass(frozen=True)
class SyntheticCounts:
    """Identities and images per split; ``None`` means "derived from the other counts"."""

    train_ids: int
    test_ids: int
    train_images: int | None = None
    gallery_images: int | None = None  # all of bounding_box_test: distractors and junk included
    query_images: int | None = None  # one per (test identity, camera) pair
    distractor_images: int | None = None
    junk_images: int | None = None


PRESETS: dict[str, SyntheticCounts] = {
    "small": SyntheticCounts(train_ids=12, test_ids=10),
    "market": SyntheticCounts(751, 750, 12936, 19732, 3368, 2793, 3819),  # Section 3.1.1
}


@dataclass(frozen=True)
class SyntheticSummary:
    """What `generate_synthetic_market` wrote."""

    out_dir: str
    seed: int
    train_ids: int
    test_ids: int
    train_images: int
    gallery_images: int
    query_images: int
    distractor_images: int
    junk_images: int
    reused: bool = False

    def __str__(self) -> str:
        return (
            f"{self.out_dir} (seed {self.seed}{', reused' if self.reused else ''}): train "
            f"{self.train_ids} ids / {self.train_images} images; gallery {self.test_ids} ids / "
            f"{self.gallery_images} images ({self.distractor_images} distractors, "
            f"{self.junk_images} junk); query {self.query_images} images"
        )


# ----------------------------------------------------------------------------- the plan


def _resolve_counts(preset: str | None, explicit: dict) -> SyntheticCounts:
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)} or None")
    counts = dataclasses.replace(
        PRESETS[preset or "small"], **{k: v for k, v in explicit.items() if v is not None}
    )
    for name, value in dataclasses.asdict(counts).items():
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 0):
            raise ValueError(f"{name}={value!r}; expected a non-negative integer")
    if counts.train_ids < 1 or counts.test_ids < 1 or counts.train_ids + counts.test_ids > 9999:
        raise ValueError(
            f"train_ids={counts.train_ids}, test_ids={counts.test_ids}; expected at least one "
            "each and at most 9999 together (Market-1501 ids have four digits)"
        )
    return counts


def _camera_sets(
    count: int, rng: np.random.Generator, total: int | None, name: str
) -> list[np.ndarray]:
    """Cameras (1..6) that see each identity: 2 to 6 each, `total` pairs in all when given."""
    if total is not None and not 2 * count <= total <= 6 * count:
        raise ValueError(
            f"{name}={total} cannot be met: {count} identities seen by 2..6 cameras each make "
            f"{2 * count}..{6 * count} (identity, camera) pairs"
        )
    seen = rng.random((count, 6)) < CAMERA_WEIGHTS
    while True:
        pairs = int(seen.sum())
        short = np.flatnonzero(seen.sum(1) < 2)
        if len(short) == 0 and (total is None or pairs == total):
            break
        grow = len(short) > 0 or pairs < total
        if len(short):
            candidates = short
        else:
            candidates = np.flatnonzero(seen.sum(1) < 6 if grow else seen.sum(1) > 2)
        row = seen[rng.choice(candidates)]
        options = np.flatnonzero(row != grow)
        weights = CAMERA_WEIGHTS[options] if grow else 1 / CAMERA_WEIGHTS[options]
        row[rng.choice(options, p=weights / weights.sum())] = grow
    return [np.flatnonzero(row) + 1 for row in seen]


def _gallery_counts(counts: SyntheticCounts, test_pairs: int) -> tuple[int, int, int]:
    """(good images of test identities, distractors, junk) in bounding_box_test."""
    share = 1 + DISTRACTORS_PER_GOOD_IMAGE + JUNK_PER_GOOD_IMAGE
    if counts.gallery_images is None:
        good = round(IMAGES_PER_TRACK * test_pairs)
    else:
        good = round(counts.gallery_images / share)
    distractors = counts.distractor_images
    distractors = round(DISTRACTORS_PER_GOOD_IMAGE * good) if distractors is None else distractors
    junk = round(JUNK_PER_GOOD_IMAGE * good) if counts.junk_images is None else counts.junk_images
    if counts.gallery_images is not None:
        good = counts.gallery_images - distractors - junk
    if good < test_pairs:
        raise ValueError(
            f"the gallery has room for {good} images of test identities but {test_pairs} "
            "(identity, camera) pairs need one each; raise gallery_images or lower query_images"
        )
    return good, distractors, junk


def plan_synthetic_market(
    train_ids: int | None = None,
    test_ids: int | None = None,
    seed: int = 0,
    train_images: int | None = None,
    gallery_images: int | None = None,
    query_images: int | None = None,
    distractor_images: int | None = None,
    junk_images: int | None = None,
    preset: str | None = None,
    lookalike_fraction: float = 0.3,
) -> tuple[pd.DataFrame, list[Look]]:
    """What `generate_synthetic_market` will write, without drawing anything.

    Returns the table of images (``file_name, person_id, camera_id, sequence_id, frame_id,
    bbox_index, split`` as in `data.load_market1501`, plus ``kind, look_index, view,
    render_seed``) and the identity looks that ``look_index`` points into.
    """
    explicit = dict(
        train_ids=train_ids,
        test_ids=test_ids,
        train_images=train_images,
        gallery_images=gallery_images,
        query_images=query_images,
        distractor_images=distractor_images,
        junk_images=junk_images,
    )
    counts = _resolve_counts(preset, explicit)
    if not 0 <= lookalike_fraction <= 1:
        raise ValueError(f"lookalike_fraction={lookalike_fraction!r}; expected a value in [0, 1]")
    rng = np.random.default_rng(seed)
    people = rng.permutation(counts.train_ids + counts.test_ids) + 1  # ids interleave, as in Market
    train_people = np.sort(people[: counts.train_ids])
    test_people = np.sort(people[counts.train_ids :])
    looks = make_looks(counts.train_ids, rng, lookalike_fraction)
    looks += make_looks(counts.test_ids, rng, lookalike_fraction)
    look_of = {
        person: i for i, person in enumerate([*train_people.tolist(), *test_people.tolist()])
    }

    train_sets = _camera_sets(counts.train_ids, rng, None, "train_images")
    if counts.train_images is not None and counts.train_images < sum(map(len, train_sets)):
        train_sets = _camera_sets(counts.train_ids, rng, counts.train_images, "train_images")
    train_total = counts.train_images or round(IMAGES_PER_TRACK * sum(map(len, train_sets)))
    test_sets = _camera_sets(counts.test_ids, rng, counts.query_images, "query_images")
    good, distractors, junk = _gallery_counts(counts, sum(map(len, test_sets)))

    rows: list[tuple] = []
    used: set[tuple] = set()

    def add(split, kind, person, camera, sequence, frame, box, view, look=None) -> None:
        while (split, person, camera, sequence, frame, box) in used:  # a clash of random frames
            frame += 1
        used.add((split, person, camera, sequence, frame, box))
        name = format_market_name(person, camera, sequence, frame, box)
        look = look_of[person] if look is None else look
        rows.append((name, person, camera, sequence, frame, box, split, kind, look, view))

    def add_tracks(split_people, camera_sets, total, split) -> None:
        """One track per (identity, camera): consecutive frames, one walking direction."""
        weights = rng.gamma(2.0, 1.0, size=sum(map(len, camera_sets)))  # some people linger
        sizes = iter(1 + rng.multinomial(total - len(weights), weights / weights.sum()))
        for person, cameras in zip(split_people.tolist(), camera_sets, strict=True):
            for camera in cameras.tolist():
                size = next(sizes) + (split == "gallery")  # a test track starts with its query
                sequence = int(rng.integers(1, 7))
                frames = rng.integers(0, 160_000) + np.cumsum(rng.integers(3, 40, size=size))
                view = VIEWS[rng.choice(4, p=drawing.CAMERAS[camera].view_weights)]
                boxes = rng.integers(1, 9, size=size).tolist()
                for index, frame in enumerate(frames.tolist()):
                    if split == "gallery" and index == 0:  # queries are hand-drawn boxes: "_00"
                        add("query", "query", person, camera, sequence, frame, 0, view)
                    else:
                        add(split, "person", person, camera, sequence, frame, boxes[index], view)

    add_tracks(train_people, train_sets, train_total, "train")
    add_tracks(test_people, test_sets, good, "gallery")
    camera_chance = CAMERA_WEIGHTS / CAMERA_WEIGHTS.sum()
    for kind, person, total in (
        ("junk", JUNK_ID, junk),
        ("distractor", DISTRACTOR_ID, distractors),
    ):
        for camera in (rng.choice(6, size=total, p=camera_chance) + 1).tolist():
            look = look_of[int(rng.choice(test_people))] if kind == "junk" else -1
            sequence, frame, box = rng.integers([1, 0, 1], [7, 160_000, 9]).tolist()
            view = VIEWS[rng.integers(4)]
            add("gallery", kind, person, camera, sequence, frame, box, view, look)

    columns = "file_name person_id camera_id sequence_id frame_id bbox_index split kind".split()
    columns += ["look_index", "view"]
    plan = pd.DataFrame(rows, columns=columns)
    plan["render_seed"] = rng.integers(0, 2**63 - 1, size=len(plan), dtype=np.int64)
    plan["_order"] = plan["split"].map({split: i for i, split in enumerate(SPLITS)})
    plan = plan.sort_values(["_order", "file_name"]).drop(columns="_order")
    return plan.reset_index(drop=True), looks


# ----------------------------------------------------------------------------- writing

_WORKER_STATE: dict = {}


def _start_worker(looks: list[Look], out_dir: str, height: int, width: int, occlusion: float,
                  parent: int | None = None):  # fmt: skip
    _WORKER_STATE.update(looks=looks, out_dir=out_dir, size=(height, width), occlusion=occlusion)
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int, interval: float = 0.2) -> None:
    """End this worker when the process that started it is gone (killed: SIGKILL, SIGTERM), so
    that no drawing process outlives `synth`."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _write_images(rows: list[tuple]) -> int:
    """Draw and save plan rows ``(folder, file name, kind, look index, camera, view, seed)``."""
    state = _WORKER_STATE
    for folder, file_name, kind, look_index, camera, view, seed in rows:
        look = state["looks"][look_index] if look_index >= 0 else None
        pixels = render_image(look, camera, view, kind, seed, *state["size"], state["occlusion"])
        encoded = io.BytesIO()
        quality = drawing.CAMERAS[camera].jpeg_quality
        Image.fromarray(pixels).save(encoded, format="JPEG", quality=quality)
        # Not flushed image by image: the marker, written last, records every file's size.
        path = os.path.join(state["out_dir"], folder, file_name)
        write_bytes_atomic(path, encoded.getvalue(), durable=False)
    return len(rows)


def _summarize_plan(plan: pd.DataFrame, out_dir: str, seed: int) -> SyntheticSummary:
    people = plan[plan["person_id"] > 0]
    split_sizes = plan["split"].value_counts()
    return SyntheticSummary(
        out_dir=out_dir,
        seed=seed,
        train_ids=people.loc[people["split"] == "train", "person_id"].nunique(),
        test_ids=people.loc[people["split"] != "train", "person_id"].nunique(),
        train_images=int(split_sizes.get("train", 0)),
        gallery_images=int(split_sizes.get("gallery", 0)),
        query_images=int(split_sizes.get("query", 0)),
        distractor_images=int((plan["person_id"] == DISTRACTOR_ID).sum()),
        junk_images=int((plan["person_id"] == JUNK_ID).sum()),
    )


def _describe_settings(settings: dict | None) -> str:
    if not isinstance(settings, dict):
        return "settings unknown"
    return (
        f"seed {settings.get('seed')}, {settings.get('train_ids')} train / "
        f"{settings.get('test_ids')} test ids, {settings.get('image_height')}x"
        f"{settings.get('image_width')}"
    )


def _prepare_folder(out_dir: Path, settings: dict, overwrite: bool) -> bool:
    """True when `out_dir` already holds this dataset, complete and intact; else make room.

    Room is made only in a folder this generator wrote: an unfinished generation of the same
    dataset is written again; another or a damaged synthetic dataset only with `overwrite`.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; expected a folder to write the dataset into")
    folders = {split: out_dir / SPLIT_FOLDERS[split] for split in SPLITS}
    try:
        marker = read_synthetic_marker(out_dir)
    except DamagedFileError:
        if not overwrite:
            raise
        marker = {"settings": None}  # ours, but unreadable: replaced like another set
    if marker is None:
        existing = sorted(out_dir.iterdir()) if out_dir.is_dir() else []
        if existing:
            raise ValueError(
                f"{out_dir} is not empty ({_listed(existing, out_dir)}) and holds no "
                f"{SYNTHETIC_MARKER}, so it was not written by generate_synthetic_market and is "
                "left alone; choose an empty or new folder"
            )
        return False
    earlier = marker.get("settings")
    way_out = "run again with --overwrite (overwrite=True) to replace it, or choose another folder"
    if earlier != settings:
        if not overwrite:
            raise ValueError(
                f"{out_dir} holds another synthetic dataset ({_describe_settings(earlier)}; "
                f"asked for {_describe_settings(settings)}); {way_out}"
            )
    elif not marker.get("complete"):
        logger.info("%s: an unfinished generation of this dataset; writing it again", out_dir)
    elif "files" not in marker:
        logger.info("%s: written before the generator kept a manifest; writing it again", out_dir)
    else:
        problems = synthetic_file_problems(
            out_dir, marker, [folder.name for folder in folders.values()], check_digest=True
        )
        if not problems:
            return True
        if not overwrite:
            path, reason = problems[0]
            raise ValueError(
                f"{out_dir} holds this synthetic dataset, but {len(problems)} file(s) changed "
                f"since it was written (e.g. {path}: {reason}); {way_out}"
            )
    ours, foreign = _split_own_files(out_dir, marker, folders.values())
    if foreign:
        raise ValueError(
            f"{out_dir} holds {len(foreign)} file(s) in its split folders that the generator did "
            f"not write ({_listed(foreign, out_dir)}); move them out to let it write the set "
            "again, or choose another folder"
        )
    for path in ours:
        path.unlink()
    return False


def _split_own_files(out_dir: Path, marker: dict, folders) -> tuple[list[Path], list[Path]]:
    """The split folders' entries the generator wrote (named in the marker's manifest, or, for a
    generation that did not finish, with a Market-1501 image name, or the temporary file of such an
    image that a killed writer left, `files.atomic_path`) and the others."""
    recorded = marker.get("files") if isinstance(marker.get("files"), dict) else None
    ours, foreign = [], []
    for folder in folders:
        names = recorded.get(folder.name, {}) if recorded is not None else None
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            own = (path.name in names if names is not None
                   else _is_market_image(path.with_name(_unprefixed(path.name))))  # fmt: skip
            (ours if own and path.is_file() else foreign).append(path)
    return ours, foreign


def _unprefixed(name: str) -> str:
    """`name` without `files.atomic_path`'s temporary prefix (".tmp-<12 hex digits>-"), if any."""
    match = re.fullmatch(rf"{re.escape(TEMPORARY_PREFIX)}[0-9a-f]{{12}}-(.+)", name)
    return match.group(1) if match else name


def _is_market_image(path: Path) -> bool:
    try:
        parse_market_name(path.name)
    except MarketFormatError:
        return False
    return path.suffix == ".jpg"


def _listed(paths: list[Path], root: Path, most: int = 5) -> str:
    """A few of `paths`, relative to `root`, and how many more."""
    names = [str(path.relative_to(root)) for path in paths[:most]]
    more = f" and {len(paths) - most} more" if len(paths) > most else ""
    return ", ".join(names) + more


def _manifest(out_dir: Path) -> dict[str, dict[str, int]]:
    """``{folder: {file name: size}}`` of the split folders, as written."""
    return {
        SPLIT_FOLDERS[split]: {
            path.name: path.stat().st_size
            for path in sorted((out_dir / SPLIT_FOLDERS[split]).iterdir())
        }
        for split in SPLITS
    }


def generate_synthetic_market(
    out_dir: str | Path,
    train_ids: int | None = None,
    test_ids: int | None = None,
    seed: int = 0,
    image_height: int = 128,
    image_width: int = 64,
    train_images: int | None = None,
    gallery_images: int | None = None,
    query_images: int | None = None,
    distractor_images: int | None = None,
    junk_images: int | None = None,
    preset: str | None = None,
    lookalike_fraction: float = 0.3,
    occlusion_probability: float = 0.2,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> SyntheticSummary:
    """Write a Market-1501-shaped dataset into `out_dir` (Sections 3.1.1 and 3.1.2).

    Counts left at ``None`` come from `preset` ("small" when None: 12 train and 10 test
    identities, about 3.85 images per identity and camera, Market-1501's share of distractors
    and junk); explicit counts override the preset. ``preset="market"``: 751 train identities
    with 12,936 images, 750 test identities, 19,732 gallery images and 3,368 queries. With
    ``workers > 1`` that many "spawn" processes draw the images (a script calling this needs an
    ``if __name__ == "__main__":`` guard); the files are the same for any number. A folder that
    already holds this exact dataset, complete and with the files it recorded (names, sizes and a
    SHA-256 digest in the marker), is reused; an unfinished generation of it is written again; an
    earlier, different or damaged synthetic dataset is replaced only with `overwrite`.
    ``tripletlib-synthetic.json`` marks the folder as synthetic (``"complete": false`` until the
    last image is written, so every reader refuses an interrupted set).
    """
    if image_height < 16 or image_width < 8:
        raise ValueError(f"image size {image_height}x{image_width}; expected at least 16x8")
    if not 0 <= occlusion_probability <= 1:
        raise ValueError(f"occlusion_probability={occlusion_probability!r}; expected [0, 1]")
    workers = checks.integer(workers, "workers", whole_float=True)
    plan, looks = plan_synthetic_market(
        train_ids,
        test_ids,
        seed,
        train_images,
        gallery_images,
        query_images,
        distractor_images,
        junk_images,
        preset,
        lookalike_fraction,
    )
    out_dir = Path(out_dir)
    summary = _summarize_plan(plan, str(out_dir), seed)
    counts = {
        k: v for k, v in dataclasses.asdict(summary).items() if k not in ("out_dir", "reused")
    }
    settings = dict(
        counts,
        generator_version=GENERATOR_VERSION,
        image_height=image_height,
        image_width=image_width,
        lookalike_fraction=lookalike_fraction,
        occlusion_probability=occlusion_probability,
    )
    if _prepare_folder(out_dir, settings, overwrite):
        logger.info("%s already holds this synthetic dataset; reusing it", out_dir)
        return dataclasses.replace(summary, reused=True)

    for split in SPLITS:
        (out_dir / SPLIT_FOLDERS[split]).mkdir(parents=True, exist_ok=True)
    marker = out_dir / SYNTHETIC_MARKER
    write_json_atomic(marker, {"settings": settings, "complete": False}, indent=1)
    rows = list(
        zip(
            plan["split"].map(SPLIT_FOLDERS),
            plan["file_name"],
            plan["kind"],
            plan["look_index"].tolist(),
            plan["camera_id"].tolist(),
            plan["view"],
            plan["render_seed"].tolist(),
            strict=True,
        )
    )
    chunks = [rows[start : start + 200] for start in range(0, len(rows), 200)]
    state = (looks, str(out_dir), image_height, image_width, occlusion_probability)
    with tqdm(total=len(rows), desc="drawing images", unit="image", disable=not progress) as bar:
        if workers <= 1:
            _start_worker(*state)
            for chunk in chunks:
                bar.update(_write_images(chunk))
        else:  # "spawn" is safe even when TensorFlow's threads run in this process
            context = multiprocessing.get_context("spawn")
            state = (*state, os.getpid())  # each worker ends when this process is gone
            with ProcessPoolExecutor(workers, context, _start_worker, state) as pool:
                for done in pool.map(_write_images, chunks):
                    bar.update(done)
    files = _manifest(out_dir)
    record = {"files": files, "digest": files_digest(out_dir, files)}
    write_json_atomic(marker, {"settings": settings, "complete": True, **record}, indent=1)
    return summary
