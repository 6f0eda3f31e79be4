"""Your own gallery: embed a folder of image files with a trained run, index it once, search it.

- `embed_folder(run_dir, folder)`: every image file below `folder` (`list_images`: .jpg, .jpeg,
  .png, .bmp in any case, any names, recursively, sorted by relative path) resized to the run's
  input size as in training (bilinear, aspect ratio not kept); the run's network normalises the
  pixels itself. `save_gallery` writes one ``.npz``: ``embeddings`` (float32, N x D), ``paths``
  (relative to the folder), ``root`` and ``model`` (`model_identity`, JSON).
- `build_index(gallery_file, out)`: an Annoy index of those embeddings (`AnnoyIndex.save`) and a
  JSON sidecar ``out + ".json"`` (dimension, metric, trees, model identity, root, paths, the index
  file's size). `open_gallery` memory-maps it (`AnnoyIndex.load`), so the gallery need not fit
  in memory.
- `search(run_dir, gallery, query_image, k)`: the ranked list of the query's nearest gallery
  images: exact search for an ``.npz``, Annoy for an index (`retrieval`). A gallery embedded by
  another model (weights digest) or of another dimension is refused.

Every file is written atomically (`files`); an existing output is replaced only with `overwrite`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tripletlib import data, files, images, retrieval, runs

METRIC = "euclidean"
DEFAULT_TREES = 50
SIDECAR_SUFFIX = ".json"
FORMAT = "tripletlib-gallery-1"


class GalleryError(ValueError):
    """A gallery file, index, folder or query that cannot be used as asked."""


@dataclass
class Gallery:
    """Embeddings (N x D float32) of the images `paths` (relative to `root`) by `model`."""

    embeddings: np.ndarray
    paths: list[str]
    root: str
    model: dict[str, Any]

    def image_path(self, row: int) -> Path:
        return Path(self.root) / self.paths[row]


@dataclass(frozen=True)
class Hit:
    """One line of a ranked list: rank (1..k), squared distance, the image's path."""

    rank: int
    distance: float
    path: Path


# --- the model and the images ---------------------------------------------------------------------
def model_identity(run_dir: str | Path) -> dict[str, Any]:
    """What names a run's embedder: SHA-256 of its weights file, backbone, input size, dimension."""
    run_dir = Path(run_dir)
    run_config = runs.read_run_config(run_dir)
    weights = run_dir / runs.WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist: the run in {run_dir} did not finish")
    return {"weights_sha256": files.file_sha256(weights), "backbone": run_config["backbone"],
            "input_size": list(input_size(run_dir)), "run": str(run_dir.resolve())}  # fmt: skip


def input_size(run_dir: str | Path) -> tuple[int, int]:
    """(height, width) the run was trained at: its profile's, from config.json."""
    profile = runs.run_profile(runs.read_run_config(run_dir))
    return profile.image_height, profile.image_width


def list_images(folder: str | Path, recursive: bool = True) -> list[str]:
    """Image files below `folder` (`data.IMAGE_SUFFIXES`, hidden ones skipped) as paths relative
    to it, sorted; `recursive=False` takes only the folder's own files. None is an error."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise GalleryError(f"--images {folder} is not a folder; expected a folder of image files")
    found = folder.rglob("*") if recursive else folder.iterdir()
    paths = sorted(p.relative_to(folder).as_posix() for p in found if data.is_image_file(p))
    if not paths:
        raise GalleryError(
            f"{folder} holds no image files ({', '.join(data.IMAGE_SUFFIXES)}); expected at least one"
        )
    return paths


def _read(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        return images.read_image(str(path), *size)
    except images.ImageReadError as error:
        raise GalleryError(str(error)) from None


def embed_folder(
    run_dir: str | Path,
    folder: str | Path,
    recursive: bool = True,
    batch_size: int = 64,
    progress: bool = False,
    embedder: Any = None,
) -> Gallery:
    """Embed every image of `folder` (`list_images`) with a run's trained embedder, `batch_size`
    images decoded at a time. A file that does not decode is an error naming it."""
    from tripletlib import models

    folder = Path(folder).expanduser()
    paths = list_images(folder, recursive)
    identity = model_identity(run_dir)
    embedder = runs.load_embedder(run_dir) if embedder is None else embedder
    size = tuple(identity["input_size"])
    parts = []
    for start in range(0, len(paths), batch_size):
        batch = np.stack([_read(folder / p, size) for p in paths[start : start + batch_size]])
        parts.append(models.embed_images(embedder, batch, batch_size, progress=progress))
    embeddings = np.concatenate(parts).astype(np.float32)
    identity["embedding_dim"] = int(embeddings.shape[1])
    return Gallery(embeddings, paths, str(folder.resolve()), identity)


def embed_image(run_dir: str | Path, image: str | Path, embedder: Any = None) -> np.ndarray:
    """One image file's embedding (1 x D float32) by a run's trained embedder."""
    from tripletlib import models

    image = Path(image).expanduser()
    if not image.is_file():
        raise GalleryError(f"--query {image} is not a file; expected an image file")
    embedder = runs.load_embedder(run_dir) if embedder is None else embedder
    return models.embed_images(embedder, _read(image, input_size(run_dir))[None], 1)


# --- files ----------------------------------------------------------------------------------------
def check_output(path: str | Path, overwrite: bool, option: str = "--out") -> Path:
    """An output file name that is new, or an existing file that `overwrite` allows replacing."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise GalleryError(f"{option} {path} is a folder; expected a file name")
    if path.exists() and not overwrite:
        raise GalleryError(f"{option} {path} exists; pass --overwrite to replace it, or choose "
                           "another name")  # fmt: skip
    return path


def save_gallery(gallery: Gallery, path: str | Path, overwrite: bool = False) -> Path:
    """Write `gallery` to one ``.npz`` file (atomically; `check_output`)."""
    path = check_output(path, overwrite)
    if path.suffix != ".npz":
        raise GalleryError(f"--out {path}: expected a file name ending with .npz")
    return files.save_npz_atomic(
        path, format=np.array(FORMAT), embeddings=gallery.embeddings.astype(np.float32),
        paths=np.array(gallery.paths, dtype=str), root=np.array(gallery.root),
        model=np.array(json.dumps(gallery.model, sort_keys=True)),
    )  # fmt: skip


def load_gallery(path: str | Path) -> Gallery:
    """A gallery written by `save_gallery`; anything else is a `GalleryError` naming the file."""
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as stored:
            if "format" not in stored.files or str(stored["format"]) != FORMAT:
                raise GalleryError(f"{path} is not a gallery written by `tripletlib embed`")
            gallery = Gallery(stored["embeddings"].astype(np.float32),
                              [str(p) for p in stored["paths"]], str(stored["root"]),
                              json.loads(str(stored["model"])))  # fmt: skip
    except (OSError, ValueError, KeyError) as error:
        if isinstance(error, GalleryError):
            raise
        raise GalleryError(f"cannot read {path} ({error}); expected an .npz file written by "
                           "`tripletlib embed`") from None  # fmt: skip
    if gallery.embeddings.ndim != 2 or len(gallery.embeddings) != len(gallery.paths):
        raise GalleryError(f"{path}: {gallery.embeddings.shape} embeddings for "
                           f"{len(gallery.paths)} paths; expected one row per path")  # fmt: skip
    return gallery


def sidecar_path(index_path: str | Path) -> Path:
    """The JSON file beside an index: ``INDEX.json``."""
    index_path = Path(index_path)
    return index_path.with_name(index_path.name + SIDECAR_SUFFIX)


def build_index(
    gallery_file: str | Path,
    out: str | Path,
    n_trees: int = DEFAULT_TREES,
    overwrite: bool = False,
    seed: int = 0,
) -> Path:
    """Build an Annoy index of a gallery file once and save it to `out` with its sidecar
    (`sidecar_path`); the index is written first, the sidecar last, both atomically."""
    gallery = load_gallery(gallery_file)
    out = check_output(out, overwrite)
    sidecar = check_output(sidecar_path(out), overwrite, "--out's sidecar")
    if Path(gallery_file).expanduser().resolve() in (out.resolve(), sidecar.resolve()):
        raise GalleryError(f"--out {out} would replace the embeddings it is built from")
    index = retrieval.build_annoy_index(gallery.embeddings, METRIC, n_trees, seed)
    with files.atomic_path(out) as temporary:
        index.save(str(temporary))
    index.unload()
    record = {"format": FORMAT, "dimension": int(gallery.embeddings.shape[1]), "metric": METRIC,
              "n_trees": int(n_trees), "items": len(gallery.paths), "model": gallery.model,
              "root": gallery.root, "paths": gallery.paths, "index_bytes": out.stat().st_size,
              "embeddings": str(Path(gallery_file).expanduser().resolve())}  # fmt: skip
    files.write_json_atomic(sidecar, record)
    return out


@dataclass
class Searchable:
    """A gallery opened for search: the embeddings (exact) or a memory-mapped Annoy index."""

    path: Path
    model: dict[str, Any]
    dimension: int
    paths: list[str]
    root: str
    embeddings: np.ndarray | None = None
    index: Any = None

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, squared distances) of the `k` nearest items, k at most the gallery's size."""
        k = min(int(k), len(self.paths))
        if self.index is not None:
            return retrieval.query_annoy_index(self.index, query, k)
        return retrieval.exact_search(query, self.embeddings, k)


def open_gallery(path: str | Path) -> Searchable:
    """An ``.npz`` from `save_gallery` (exact search) or an index from `build_index` (Annoy,
    memory-mapped); an index without its sidecar, or that differs from it, is refused."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GalleryError(f"--gallery {path} is not a file; expected an .npz from `tripletlib "
                           "embed` or an index from `tripletlib index`")  # fmt: skip
    if path.suffix == ".npz":
        gallery = load_gallery(path)
        return Searchable(path, gallery.model, gallery.embeddings.shape[1], gallery.paths,
                          gallery.root, embeddings=gallery.embeddings)  # fmt: skip
    sidecar = sidecar_path(path)
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        dimension, items = int(record["dimension"]), int(record["items"])
        if record.get("format") != FORMAT or len(record["paths"]) != items:
            raise ValueError("not a tripletlib index record")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GalleryError(f"{path}: its sidecar {sidecar} is missing or unreadable ({error}); "
                           "expected an index written by `tripletlib index`") from None  # fmt: skip
    if path.stat().st_size != record["index_bytes"]:
        raise GalleryError(f"{path} is {path.stat().st_size} bytes but {sidecar} records "
                           f"{record['index_bytes']}; build the index again")  # fmt: skip
    import annoy

    index = annoy.AnnoyIndex(dimension, record["metric"])
    try:
        index.load(str(path))  # memory-mapped, not read into memory
    except OSError as error:
        raise GalleryError(f"cannot load the Annoy index {path} ({error})") from None
    if index.get_n_items() != items:
        raise GalleryError(f"{path} holds {index.get_n_items()} items but {sidecar} records "
                           f"{items}; build the index again")  # fmt: skip
    return Searchable(path, record["model"], dimension, record["paths"], record["root"],
                      index=index)  # fmt: skip


def check_model(searchable: Searchable, identity: dict[str, Any], dimension: int | None) -> None:
    """Refuse a gallery of another embedding dimension (when `dimension` is given) or of another
    model (weights digest)."""
    if dimension is not None and searchable.dimension != dimension:
        raise GalleryError(f"{searchable.path} holds {searchable.dimension}-dimensional "
                           f"embeddings; the model gives {dimension}")  # fmt: skip
    stored = searchable.model.get("weights_sha256")
    if stored != identity["weights_sha256"]:
        raise GalleryError(
            f"{searchable.path} was embedded by another model (weights {str(stored)[:12]}, "
            f"from {searchable.model.get('run')}); --model {identity['run']} has "
            f"{identity['weights_sha256'][:12]}: embed the gallery again with this model"
        )


def search(
    run_dir: str | Path, gallery: str | Path, query_image: str | Path, k: int = 10,
    embedder: Any = None,
) -> list[Hit]:
    """The `k` gallery images nearest to `query_image` by a run's embedder, nearest first."""
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise GalleryError(f"-k {k}; expected a positive integer")
    searchable = open_gallery(gallery)
    identity = model_identity(run_dir)
    recorded = searchable.model.get("embedding_dim")
    check_model(searchable, identity, None if recorded is None else int(recorded))
    embedder = runs.load_embedder(run_dir) if embedder is None else embedder  # checked first
    check_model(searchable, identity, int(embedder.outputs[0].shape[-1]))
    query = embed_image(run_dir, query_image, embedder)
    indices, distances = searchable.search(query, k)
    return [Hit(rank + 1, float(distance), Path(searchable.root) / searchable.paths[item])
            for rank, (item, distance) in enumerate(zip(indices[0], distances[0], strict=True))]


def search_figure(query_image: str | Path, hits: list[Hit], size: tuple[int, int] = (128, 64)):
    """The query beside its ranked gallery images (`viz.plot_search`), read at `size`."""
    from tripletlib import viz

    return viz.plot_search(
        _read(Path(query_image), size)[None], np.stack([_read(hit.path, size) for hit in hits]),
        [hit.distance for hit in hits], [hit.path.name for hit in hits],
    )  # fmt: skip
