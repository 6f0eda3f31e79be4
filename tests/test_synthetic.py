"""Tests for tripletlib.synthetic: layout, counts, query rule, determinism, difficulty."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tripletlib import data
from tripletlib.data import identities_per_camera, load_market1501, summarize
from tripletlib.drawing import CAMERAS, make_looks, random_look, render_image
from tripletlib.images import load_image_array
from tripletlib.synthetic import generate_synthetic_market, plan_synthetic_market

FOLDERS = ("bounding_box_train", "bounding_box_test", "query")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("synthetic") / "seed7"
    return root, generate_synthetic_market(root, train_ids=12, test_ids=10, seed=7, progress=False)


def file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def assert_query_rule(table: pd.DataFrame) -> None:
    """One query per test identity and camera exactly where it has gallery images elsewhere."""
    people = table[(table["split"] != "train") & (table["person_id"] > 0)]
    for person, group in people.groupby("person_id"):
        gallery_cameras = set(group.loc[group["split"] == "gallery", "camera_id"])
        for camera in set(group["camera_id"]):
            queries = ((group["split"] == "query") & (group["camera_id"] == camera)).sum()
            assert queries == (1 if gallery_cameras - {camera} else 0), (person, camera)


def test_counts_read_back_equal_files_on_disk(small):
    root, summary = small
    table = load_market1501(root, check_images=True, progress=False)
    for split, folder in zip(("train", "gallery", "query"), FOLDERS, strict=True):
        on_disk = sorted(path.name for path in (root / folder).iterdir())
        assert sorted(table.loc[table["split"] == split, "file_name"]) == on_disk
    counts = summarize(table)
    assert counts.loc["train", "images"] == summary.train_images
    assert counts.loc["gallery", "images"] == summary.gallery_images
    assert counts.loc["query", "images"] == summary.query_images
    assert (counts.loc["train", "identities"], counts.loc["query", "identities"]) == (12, 10)
    assert counts.loc["gallery", "junk_images"] == summary.junk_images > 0
    assert counts.loc["gallery", "distractor_images"] == summary.distractor_images > 0
    assert counts.loc["train", "junk_images"] + counts.loc["train", "distractor_images"] == 0


def test_images_are_128_by_64_jpegs(small):
    root, _ = small
    table = load_market1501(root, with_image_size=True, progress=False)
    assert set(table["image_width"]) == {64} and set(table["image_height"]) == {128}
    assert (root / FOLDERS[0] / table["file_name"].iloc[0]).read_bytes()[:2] == b"\xff\xd8"


def test_train_and_test_identities_are_disjoint(small):
    table = load_market1501(small[0], progress=False)
    train = set(table.loc[table["split"] == "train", "person_id"])
    test = set(table.loc[(table["split"] != "train") & (table["person_id"] > 0), "person_id"])
    assert train and test and not train & test
    assert set(table.loc[table["split"] == "query", "person_id"]) == test


def test_query_rule_cameras_and_hand_drawn_boxes(small):
    table = load_market1501(small[0], progress=False)
    assert_query_rule(table)
    assert set(table.loc[table["split"] == "query", "bbox_index"]) == {0}
    people = table[table["person_id"] > 0]
    cameras_per_identity = people.groupby("person_id")["camera_id"].nunique()
    assert cameras_per_identity.between(2, 6).all()


def test_marker_file_marks_the_folder_synthetic(small):
    root, summary = small
    assert data.dataset_kind(root) == "synthetic"
    marker = json.loads((root / data.SYNTHETIC_MARKER).read_text())
    assert marker["complete"] is True and marker["settings"]["seed"] == 7
    assert marker["settings"]["train_images"] == summary.train_images


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(small, tmp_path):
    root, _ = small
    generate_synthetic_market(tmp_path / "again", train_ids=12, test_ids=10, seed=7, progress=False)
    assert file_bytes(tmp_path / "again") == file_bytes(root)
    generate_synthetic_market(tmp_path / "other", train_ids=12, test_ids=10, seed=8, progress=False)
    assert file_bytes(tmp_path / "other").keys() != file_bytes(root).keys()


def test_worker_processes_write_the_same_files(tmp_path):
    arguments = dict(train_ids=2, test_ids=2, seed=3, progress=False)
    generate_synthetic_market(tmp_path / "one", workers=1, **arguments)
    generate_synthetic_market(tmp_path / "two", workers=2, **arguments)
    assert file_bytes(tmp_path / "one") == file_bytes(tmp_path / "two")


def test_existing_folders_are_reused_protected_or_overwritten(small, tmp_path):
    root, summary = small
    before = {path: path.stat().st_mtime_ns for path in root.rglob("*.jpg")}
    again = generate_synthetic_market(root, train_ids=12, test_ids=10, seed=7, progress=False)
    assert again.reused and again.train_images == summary.train_images
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*.jpg")} == before

    target = tmp_path / "data"
    generate_synthetic_market(target, train_ids=2, test_ids=2, seed=1, progress=False)
    with pytest.raises(ValueError, match="overwrite=True"):
        generate_synthetic_market(target, train_ids=3, test_ids=2, seed=1, progress=False)
    replaced = generate_synthetic_market(
        target, train_ids=3, test_ids=2, seed=1, overwrite=True, progress=False
    )
    table = load_market1501(target, progress=False)
    assert summarize(table).loc["train", "identities"] == replaced.train_ids == 3

    (tmp_path / "real" / "query").mkdir(parents=True)
    with pytest.raises(ValueError, match="not written by generate_synthetic_market"):
        generate_synthetic_market(tmp_path / "real", overwrite=True, progress=False)


def test_market_preset_reproduces_market1501_counts():
    plan, looks = plan_synthetic_market(preset="market", seed=0)
    summary = summarize(plan)
    assert summary.loc["train", "identities"] == 751
    assert summary.loc["train", "images"] == 12936
    assert summary.loc["gallery", "identities"] == 750
    assert summary.loc["gallery", "images"] == 19732
    assert summary.loc["gallery", "distractor_images"] == 2793
    assert summary.loc["gallery", "junk_images"] == 3819
    assert summary.loc["query", "images"] == 3368
    assert plan["file_name"].groupby(plan["split"]).apply(lambda names: names.is_unique).all()
    assert len(looks) == 1501
    assert_query_rule(plan)
    per_camera = identities_per_camera(plan)["all"]
    assert set(per_camera.nlargest(2).index) == {1, 3}  # Fig. 3.3
    assert per_camera.idxmin() == 4


def test_explicit_counts_override_the_preset_and_bad_counts_are_rejected():
    plan, _ = plan_synthetic_market(preset="market", train_ids=20, train_images=300, seed=0)
    assert summarize(plan).loc["train", "images"] == 300
    assert summarize(plan).loc["train", "identities"] == 20
    with pytest.raises(ValueError, match="unknown preset"):
        plan_synthetic_market(preset="duke")
    with pytest.raises(ValueError, match="query_images=100 cannot be met"):
        plan_synthetic_market(test_ids=10, query_images=100)
    with pytest.raises(ValueError, match="gallery has room"):
        plan_synthetic_market(test_ids=10, gallery_images=30, distractor_images=5, junk_images=5)
    with pytest.raises(ValueError, match="non-negative integer"):
        plan_synthetic_market(train_ids=-3)
    with pytest.raises(ValueError, match="at least one"):
        plan_synthetic_market(test_ids=0)
    with pytest.raises(ValueError, match="workers"):
        generate_synthetic_market("unused", workers=0)


def visibly_different(first, second) -> bool:
    def far(a, b):
        return np.abs(np.subtract(a, b)).sum() > 60

    return (
        far(first.hair, second.hair) or far(first.shoes, second.shoes)
        or far(first.skin, second.skin) or first.bag_style != second.bag_style
        or first.long_sleeves != second.long_sleeves or first.hair_style != second.hair_style
    )  # fmt: skip


def test_look_alike_groups_share_a_uniform_but_differ_in_details():
    looks = make_looks(40, np.random.default_rng(0), lookalike_fraction=1.0)
    uniforms: dict[tuple, list] = {}
    for look in looks:
        uniform = (look.upper, look.upper_second, look.pattern, look.lower, look.lower_style)
        uniforms.setdefault(uniform, []).append(look)
    groups = [group for group in uniforms.values() if len(group) > 1]
    assert sum(map(len, groups)) == 40 and all(2 <= len(group) <= 4 for group in groups)
    for group in groups:
        assert all(visibly_different(a, b) for a, b in itertools.combinations(group, 2))
    independent = make_looks(40, np.random.default_rng(0), lookalike_fraction=0.0)
    assert len({(look.upper, look.lower) for look in independent}) == 40


def test_render_image_depends_on_camera_and_seed_only():
    look = random_look(np.random.default_rng(5))
    image = render_image(look, 1, "front", "person", seed=11)
    assert image.shape == (128, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, render_image(look, 1, "front", "person", seed=11))
    means = [render_image(look, camera, seed=11).mean(axis=(0, 1)) for camera in CAMERAS]
    distances = [np.abs(a - b).sum() for i, a in enumerate(means) for b in means[i + 1 :]]
    assert min(distances) > 10  # every pair of cameras looks clearly different
    with pytest.raises(ValueError, match="camera_id=7"):
        render_image(look, 7)


def rank1(features: np.ndarray, table: pd.DataFrame) -> float:
    """Market protocol: same identity in the same camera and junk are left out of the gallery."""
    features = features - features.mean(0)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    query, gallery = table[table["split"] == "query"], table[table["split"] == "gallery"]
    distances = -features[query.index] @ features[gallery.index].T
    hits = []
    for row, (person, camera) in enumerate(
        zip(query["person_id"], query["camera_id"], strict=True)
    ):
        allowed = (gallery["person_id"] != -1) & ~(
            (gallery["person_id"] == person) & (gallery["camera_id"] == camera)
        )
        best = np.argmin(np.where(allowed.to_numpy(), distances[row], np.inf))
        hits.append(gallery["person_id"].iloc[best] == person)
    return float(np.mean(hits))


def test_raw_pixels_match_cameras_but_identity_is_learnable(tmp_path):
    """Untrained features fail; a linear map learnt on train identities transfers to test ones."""
    root = tmp_path / "data"
    generate_synthetic_market(root, train_ids=60, test_ids=30, seed=0, image_height=32,
                              image_width=16, progress=False)  # fmt: skip
    table = load_market1501(root, progress=False)
    images = load_image_array(table, 32, 16, progress=False) / 255.0
    pixels = images.reshape(len(table), 16, 2, 8, 2, 3).mean(axis=(2, 4)).reshape(len(table), -1)
    raw = rank1(pixels, table)

    train = (table["split"] == "train").to_numpy()
    labels = table.loc[train, "person_id"].to_numpy()
    mean = pixels[train].mean(0)
    _, _, components = np.linalg.svd(pixels[train] - mean, full_matrices=False)
    reduced = (pixels - mean) @ components[:80].T
    class_means = {label: reduced[train][labels == label].mean(0) for label in np.unique(labels)}
    within = sum(np.cov((reduced[train][labels == label] - centre).T, bias=True) * (labels == label).sum()
                 for label, centre in class_means.items())  # fmt: skip
    between = np.cov(np.array(list(class_means.values())).T, bias=True)
    values, vectors = np.linalg.eig(np.linalg.solve(within + 1e-3 * np.eye(80), between))
    projection = np.real(vectors[:, np.argsort(-np.real(values))[:40]])
    learned = rank1(reduced @ projection, table)
    assert raw < 0.25
    assert learned > raw + 0.25
