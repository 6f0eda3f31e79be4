"""Your own images: embed a folder, index it, search it; a folder of people as a dataset.

One tiny trained run (6 + 4 synthetic people at 64x32, two training steps) embeds copies of the
tiny set's images under other names and formats. Every bad input is one line, exit code 2, and
leaves the files as they were.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import SMALL, error_line, snapshot

from tripletlib import data, gallery, models, runs
from tripletlib.cli import main


@pytest.fixture(scope="module")
def run_dir(tiny_market_64x32, tmp_path_factory) -> Path:
    from tripletlib.training import train_row

    out = tmp_path_factory.mktemp("gallery-run") / "run"
    return train_row("mildnet", "triplet", "offline", SMALL, tiny_market_64x32, out,
                     progress=False).out_dir  # fmt: skip


@pytest.fixture(scope="module")
def own_images(tiny_market_64x32, tmp_path_factory) -> Path:
    """The tiny test gallery's first 12 images under other names, as JPEG, PNG and BMP, some
    in a sub-folder, beside a text file and a hidden file that are not images."""
    folder = tmp_path_factory.mktemp("own") / "photos"
    (folder / "day two").mkdir(parents=True)
    sources = sorted((tiny_market_64x32 / "bounding_box_test").glob("*.jpg"))[:12]
    for number, source in enumerate(sources):
        image = Image.open(source)
        suffix = (".jpg", ".PNG", ".bmp")[number % 3]
        where = folder / "day two" if number % 2 else folder
        image.save(where / f"photo {number:02d}{suffix}")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.jpg").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def embedded(run_dir, own_images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("embedded") / "gallery.npz"
    gallery.save_gallery(gallery.embed_folder(run_dir, own_images), out)
    return out


@pytest.fixture(scope="module")
def indexed(embedded) -> Path:
    return gallery.build_index(embedded, embedded.with_name("gallery.ann"), n_trees=10)


def forged(embedded: Path, out: Path, **changes) -> Path:
    """A copy of a gallery file with its embeddings or model identity changed."""
    found = gallery.load_gallery(embedded)
    found.model = {**found.model, **changes.pop("model", {})}
    found.embeddings = changes.pop("embeddings", found.embeddings)
    return gallery.save_gallery(found, out)


# ----------------------------------------------------------------------------- the library
def test_list_images_takes_image_files_of_any_name_sorted(own_images):
    found = gallery.list_images(own_images)
    assert len(found) == 12 and found == sorted(found)
    assert "day two/photo 01.PNG" in found and "photo 00.jpg" in found
    assert not any(name.endswith((".txt", ".hidden.jpg")) for name in found)
    assert gallery.list_images(own_images, recursive=False) == [
        name for name in found if "/" not in name
    ]


def test_embed_folder_saves_what_the_run_would_embed(run_dir, own_images, embedded):
    found = gallery.load_gallery(embedded)
    assert found.embeddings.dtype == np.float32 and found.embeddings.shape == (12, 2048)
    assert found.paths == gallery.list_images(own_images)
    assert found.root == str(own_images.resolve())
    assert found.model["embedding_dim"] == 2048 and found.model["input_size"] == [64, 32]
    assert found.model["weights_sha256"] == gallery.model_identity(run_dir)["weights_sha256"]
    height, width = gallery.input_size(run_dir)
    pixels = np.stack([np.asarray(Image.open(found.image_path(row)).convert("RGB").resize(
        (width, height), Image.BILINEAR)) for row in range(3)])  # fmt: skip
    expected = models.embed_images(runs.load_embedder(run_dir), pixels)
    np.testing.assert_allclose(found.embeddings[:3], expected, atol=1e-5)


def test_the_index_is_built_once_and_searched_like_the_embeddings(run_dir, own_images,
                                                                  embedded, indexed, tmp_path):
    record = json.loads(gallery.sidecar_path(indexed).read_text())
    assert record["dimension"] == 2048 and record["metric"] == "euclidean"
    assert record["n_trees"] == 10 and record["items"] == 12
    assert record["model"] == gallery.load_gallery(embedded).model
    opened = gallery.open_gallery(indexed)
    assert opened.index is not None and opened.embeddings is None
    query = own_images / "photo 02.bmp"
    exact = gallery.search(run_dir, embedded, query, k=5)
    approximate = gallery.search(run_dir, indexed, query, k=5)
    assert exact[0].path == query and exact[0].distance < 1e-4
    assert [hit.rank for hit in exact] == [1, 2, 3, 4, 5]
    assert [hit.path for hit in approximate] == [hit.path for hit in exact]
    np.testing.assert_allclose([h.distance for h in approximate], [h.distance for h in exact],
                               atol=1e-3)  # fmt: skip
    assert len(gallery.search(run_dir, embedded, query, k=50)) == 12  # k: at most the gallery
    alone = tmp_path / "elsewhere" / "copy.ann"  # the index and its sidecar, not the .npz
    alone.parent.mkdir()
    shutil.copy(indexed, alone)
    shutil.copy(gallery.sidecar_path(indexed), gallery.sidecar_path(alone))
    assert gallery.search(run_dir, alone, query, k=5) == approximate


# ----------------------------------------------------------------------------- the commands
def test_embed_index_search_on_the_command_line(run_dir, own_images, tmp_path, capsys):
    npz, index, figure = tmp_path / "mine.npz", tmp_path / "mine.ann", tmp_path / "list.png"
    assert main(["embed", "--model", str(run_dir), "--images", str(own_images),
                 "--out", str(npz), "--quiet"]) == 0  # fmt: skip
    assert "embedded 12 images" in capsys.readouterr().out
    assert main(["index", "--embeddings", str(npz), "--out", str(index), "--trees", "5"]) == 0
    assert index.is_file() and gallery.sidecar_path(index).is_file()
    query = own_images / "day two" / "photo 03.jpg"
    capsys.readouterr()
    assert main(["search", "--model", str(run_dir), "--gallery", str(index), "--query",
                 str(query), "-k", "3", "--figure", str(figure)]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "distance", "path"]
    assert lines[1].split()[0] == "1" and lines[1].endswith(str(query))
    assert [line.split()[0] for line in lines[1:4]] == ["1", "2", "3"]
    assert Image.open(figure).format == "PNG"
    assert not list(tmp_path.glob(".tmp-*"))


def refused(capsys, arguments: list[str], folder: Path, *expected: str) -> None:
    """`arguments` exit with 2 and one line holding `expected`; `folder` is unchanged."""
    before = snapshot(folder)
    assert main(arguments) == 2
    line = error_line(capsys)
    for text in expected:
        assert text in line, line
    assert snapshot(folder) == before


def test_embed_refuses_bad_input(run_dir, own_images, tmp_path, capsys):
    out = tmp_path / "out.npz"
    embed = ["embed", "--model", str(run_dir), "--quiet", "--out", str(out)]
    (tmp_path / "empty").mkdir()
    refused(capsys, [*embed, "--images", str(tmp_path / "empty")], tmp_path, "no image files",
            str(tmp_path / "empty"))  # fmt: skip
    broken = tmp_path / "broken"
    shutil.copytree(own_images, broken)
    (broken / "day two" / "zz broken.png").write_bytes(b"not a png")
    refused(capsys, [*embed, "--images", str(broken)], tmp_path, "zz broken.png",
            "cannot decode")  # fmt: skip
    out.write_bytes(b"the user's file")
    refused(capsys, [*embed, "--images", str(own_images)], tmp_path, str(out), "--overwrite")
    refused(capsys, [*embed[:-1], str(tmp_path / "out.csv"), "--images", str(own_images)],
            tmp_path, ".npz")  # fmt: skip
    refused(capsys, ["embed", "--model", str(tmp_path), "--images", str(own_images), "--out",
                     str(tmp_path / "new.npz")], tmp_path, "not a trained model")  # fmt: skip
    assert main([*embed, "--images", str(own_images), "--overwrite"]) == 0
    assert len(gallery.load_gallery(out).paths) == 12


def test_index_refuses_bad_input(embedded, tmp_path, capsys):
    other = tmp_path / "other.npz"
    np.savez(other, embeddings=np.zeros((3, 4), np.float32))
    refused(capsys, ["index", "--embeddings", str(other), "--out", str(tmp_path / "a.ann")],
            tmp_path, str(other), "tripletlib embed")  # fmt: skip
    taken = tmp_path / "taken.ann"
    taken.write_bytes(b"the user's file")
    refused(capsys, ["index", "--embeddings", str(embedded), "--out", str(taken)], tmp_path,
            str(taken), "--overwrite")  # fmt: skip
    (tmp_path / "b.ann.json").write_text("{}")  # the user's file where the sidecar would go
    refused(capsys, ["index", "--embeddings", str(embedded), "--out", str(tmp_path / "b.ann")],
            tmp_path, "b.ann.json")  # fmt: skip


def test_search_refuses_a_gallery_of_another_model_or_dimension(run_dir, own_images, embedded,
                                                                tmp_path, capsys):
    query = own_images / "photo 00.jpg"
    search = ["search", "--model", str(run_dir), "--query", str(query), "--gallery"]
    other_model = forged(embedded, tmp_path / "other-model.npz", model={"weights_sha256": "ab" * 32})
    refused(capsys, [*search, str(other_model)], tmp_path, "another model", str(other_model))
    index = gallery.build_index(other_model, tmp_path / "other-model.ann", n_trees=2)
    refused(capsys, [*search, str(index)], tmp_path, "another model", str(index))
    small = forged(embedded, tmp_path / "small.npz", embeddings=np.eye(12, 8, dtype=np.float32))
    refused(capsys, [*search, str(small)], tmp_path, "8-dimensional", "gives 2048")
    index = gallery.build_index(small, tmp_path / "small.ann", n_trees=2)
    refused(capsys, [*search, str(index)], tmp_path, "8-dimensional", "gives 2048")


def test_search_refuses_a_bad_query_index_or_figure(run_dir, own_images, embedded, indexed,
                                                    tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    search = ["search", "--model", str(run_dir), "--gallery", str(embedded), "--query"]
    refused(capsys, [*search, str(bad)], tmp_path, "cannot decode", str(bad))
    refused(capsys, [*search, str(tmp_path / "missing.jpg")], tmp_path, "missing.jpg")
    lone = tmp_path / "lone.ann"
    shutil.copy(indexed, lone)  # without its sidecar
    refused(capsys, [*search[:4], str(lone), "--query", str(bad)], tmp_path, "sidecar")
    figure = tmp_path / "figure.png"
    figure.write_bytes(b"the user's figure")
    refused(capsys, [*search, str(own_images / "photo 00.jpg"), "--figure", str(figure)],
            tmp_path, str(figure), "--overwrite")  # fmt: skip


# ----------------------------------------------------------------------------- a folder of people
@pytest.fixture(scope="module")
def people(tiny_market_64x32, tmp_path_factory) -> Path:
    """The tiny set's people, one folder each (named after them, not numbered), no camera ids."""
    root = tmp_path_factory.mktemp("people") / "people"
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        for path in sorted((tiny_market_64x32 / folder).glob("*.jpg")):
            person = path.name.split("_")[0]
            if person in ("0000", "-1"):
                continue
            target = root / f"person {person}" / f"{folder} {path.name[5:]}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target.with_suffix(".png" if len(person) % 2 else ".jpg"))
    return root


def test_a_folder_of_people_is_split_by_person_then_by_image(people):
    assert data.dataset_layout(people) == data.PERSON_FOLDERS
    assert data.dataset_kind(people) == "person-folders"
    table = data.load_person_folders(people)
    assert table["camera_id"].is_unique  # every image a camera of its own
    assert sorted(table["person_id"].unique()) == list(range(1, 11))
    train = set(table[table["split"] == "train"]["person_id"])
    query = set(table[table["split"] == "query"]["person_id"])
    gallery_ids = set(table[table["split"] == "gallery"]["person_id"])
    assert len(train) == 5 and not train & (query | gallery_ids) and query <= gallery_ids
    for _, rows in table[table["split"] != "train"].groupby("person_id"):
        counts = rows["split"].value_counts()
        assert counts["query"] == max(1, round(len(rows) * data.FOLDER_QUERY_FRACTION))
    assert table.equals(data.load_person_folders(people))  # the same split every time
    splits = data.load_splits(people, 64, 32, splits=("gallery", "query"))
    assert splits["query"].images.shape[1:] == (64, 32, 3)


def test_a_folder_that_is_not_a_folder_of_people_is_one_error(people, tmp_path):
    one = tmp_path / "one"
    shutil.copytree(next(people.iterdir()), one / "alice")
    with pytest.raises(data.MarketFormatError, match="expected two or more"):
        data.load_person_folders(one)
    shutil.copytree(one / "alice", one / "bob")
    assert len(data.load_person_folders(one, splits=("gallery", "query"))) > 0
    with pytest.raises(data.MarketFormatError, match="expected four people or more"):
        data.load_person_folders(one)
    (one / "stray.jpg").write_bytes(b"")
    with pytest.raises(data.MarketFormatError, match="beside the person folders"):
        data.load_person_folders(one)


def test_train_and_evaluate_accept_a_folder_of_people(people, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--backbone", "mildnet", "--loss", "triplet", "--mining", "offline",
                 "--profile", "ci", "--data", str(people), "--out", str(out), "--quiet",
                 "--epochs", "1", "--steps-per-epoch", "1", "--set", "offline_iterations=1",
                 "--set", "triplet_batch_size=4",
                 "--set", "validation_identity_fraction=0"]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "person-folders"
    table = data.load_person_folders(people)
    queries = (table["split"] == "query").sum()
    assert metrics["trained"]["num_valid_queries"] == queries
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(people), "--quiet"]) == 0
    assert f"queries evaluated: {queries}" in capsys.readouterr().out
