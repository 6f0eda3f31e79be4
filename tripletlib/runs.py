"""Trained run folders (`tripletlib train --out DIR`): load the embedder, evaluate it again.

`evaluate_saved_model` is `tripletlib evaluate`: it embeds the query and gallery images of a dataset
with a trained embedder and computes Rank-k / CMC / mAP (Section 4.1) from exact search or from Annoy
(Section 3.3.2). Annoy returns only the `annoy_neighbours` nearest gallery images of each query; the
rest of the gallery is placed after them, in gallery order, so Annoy's Rank-k (k <= annoy_neighbours)
is that of its approximate list and its mAP counts matches Annoy did not return as found last.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tripletlib import config, data, evaluation, images, models, retrieval
from tripletlib.files import write_json_atomic


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a folder written by tripletlib train")
    return json.loads(path.read_text())


def run_profile(run_config: dict[str, Any]) -> config.Profile:
    return config.Profile(**run_config["profile"])


def load_embedder(run_dir: str | Path):
    """The trained embedder of a run folder: rebuilt from config.json, weights from the run."""
    from tripletlib.training import build_row_embedder

    run_dir = Path(run_dir)
    run_config = read_run_config(run_dir)
    weights = run_dir / "embedder.weights.h5"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist: the run in {run_dir} did not finish")
    # The trained weights replace the backbone's initial ones, so nothing is downloaded here.
    embedder = build_row_embedder(run_config["backbone"], run_profile(run_config), weights=None)
    embedder.load_weights(weights)
    return embedder


EMBEDDINGS_FILE = "embeddings.npz"


def update_digest(digest, named_arrays) -> None:
    """Feed `(name, array)` pairs to a hashlib digest: name, dtype, shape, then the bytes."""
    for name, values in named_arrays:
        values = np.ascontiguousarray(values)
        digest.update(f"{name}:{values.dtype}:{values.shape};".encode())
        digest.update(values.tobytes())


def embeddings_key(weights: Path, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of a weights file and of named image arrays (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(Path(weights).read_bytes())
    update_digest(digest, sorted(arrays.items()))
    return digest.hexdigest()


def store_embeddings(
    run_dir: str | Path, arrays: dict[str, np.ndarray], embeddings: dict[str, np.ndarray]
) -> Path:
    """Write `run_dir/embeddings.npz`: `embeddings[name]` of `arrays[name]` by the run's weights."""
    run_dir = Path(run_dir)
    if sorted(arrays) != sorted(embeddings):
        raise ValueError(f"embeddings for {sorted(embeddings)} but images for {sorted(arrays)}")
    for name, values in embeddings.items():
        if len(values) != len(arrays[name]):
            raise ValueError(
                f"{name}: {len(values)} embeddings for {len(arrays[name])} images in {run_dir}"
            )
    key = embeddings_key(run_dir / "embedder.weights.h5", arrays)
    path = run_dir / EMBEDDINGS_FILE
    temporary = path.with_name(path.stem + ".tmp.npz")
    np.savez(temporary, key=np.array(key), **{f"embeddings_{n}": v for n, v in embeddings.items()})
    temporary.replace(path)
    return path


def cached_embeddings(
    run_dir: str | Path, arrays: dict[str, np.ndarray], batch_size: int = 128
) -> dict[str, np.ndarray]:
    """Embeddings of each image array in `arrays` by a run's trained embedder, kept on disk.

    Stored in `run_dir/embeddings.npz` (by `train_row` for the test split, or here) under a key of
    the weights file and of the images (`embeddings_key`): the book's notebooks embed a row's
    query and gallery once, not once each. A key that differs (retrained weights, other images)
    recomputes and replaces the file.
    """
    run_dir = Path(run_dir)
    weights = run_dir / "embedder.weights.h5"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist: the run in {run_dir} did not finish")
    path = run_dir / EMBEDDINGS_FILE
    if path.is_file():
        with np.load(path) as stored:
            names = {f"embeddings_{name}" for name in arrays}
            if names <= set(stored.files) and str(stored["key"]) == embeddings_key(weights, arrays):
                return {name: stored[f"embeddings_{name}"] for name in arrays}
    embedder = load_embedder(run_dir)
    result = {
        name: models.embed_images(embedder, values, batch_size) for name, values in arrays.items()
    }
    store_embeddings(run_dir, arrays, result)
    return result


def evaluate_saved_model(
    run_dir: str | Path,
    data_root: str | Path,
    search: str = "exact",
    protocol: str = "market",
    annoy_neighbours: int = 100,
    progress: bool = True,
    save: bool = True,
) -> dict[str, Any]:
    """Metrics of a trained run on `data_root`'s query and gallery; with `save` also written beside
    the model (`save_evaluation`; ``metrics["path"]``). The command line prints before it saves."""
    if search not in ("exact", "annoy"):
        raise ValueError(f"search must be 'exact' or 'annoy', got {search!r}")
    run_dir = Path(run_dir)
    profile = run_profile(read_run_config(run_dir))
    embedder = load_embedder(run_dir)
    metadata = data.load_market1501(data_root, splits=("gallery", "query"))
    split_embeddings = {}
    for split in ("query", "gallery"):
        rows = metadata[metadata["split"] == split].reset_index(drop=True)
        pixels = images.load_image_array(
            rows, profile.image_height, profile.image_width,
            cache_dir=run_dir.parent / ".cache", progress=progress,
        )
        split_embeddings[split] = (rows, models.embed_images(embedder, pixels, progress=progress))
    (query_rows, query_embeddings), (gallery_rows, gallery_embeddings) = (
        split_embeddings["query"], split_embeddings["gallery"]
    )
    started = time.perf_counter()
    if search == "exact":
        distances = retrieval.squared_distances(query_embeddings, gallery_embeddings)
    else:
        distances = annoy_distance_matrix(query_embeddings, gallery_embeddings, annoy_neighbours)
    search_seconds = time.perf_counter() - started
    result = evaluation.evaluate(
        distances,
        query_rows["person_id"].to_numpy(),
        gallery_rows["person_id"].to_numpy(),
        query_rows["camera_id"].to_numpy(),
        gallery_rows["camera_id"].to_numpy(),
        protocol=protocol,
    )
    metrics = result.to_dict()
    metrics.update(
        search=search,
        protocol=protocol,
        search_seconds=round(search_seconds, 3),
        dataset=config.dataset_kind(data_root),
        data_root=str(Path(data_root).resolve()),
    )
    if save:
        metrics["path"] = str(save_evaluation(run_dir, metrics))
    return metrics


def save_evaluation(run_dir: str | Path, metrics: dict[str, Any]) -> Path:
    """Write `evaluate_saved_model`'s metrics to ``run_dir/evaluation_<search>_<protocol>.json``."""
    path = Path(run_dir) / f"evaluation_{metrics['search']}_{metrics['protocol']}.json"
    values = {key: value for key, value in metrics.items() if key != "path"}
    return write_json_atomic(path, values, sort_keys=False)


def annoy_distance_matrix(
    query_embeddings: np.ndarray, gallery_embeddings: np.ndarray, neighbours: int
) -> np.ndarray:
    """A (Q, G) matrix: Annoy's squared distances for the neighbours it returns, then the rest."""
    neighbours = min(int(neighbours), gallery_embeddings.shape[0])
    indices, distances = retrieval.annoy_search(query_embeddings, gallery_embeddings, k=neighbours)
    beyond = float(distances.max()) + 1.0
    order_penalty = np.arange(gallery_embeddings.shape[0], dtype=np.float64) * 1e-9
    matrix = np.broadcast_to(beyond + order_penalty, (len(query_embeddings), len(order_penalty)))
    matrix = matrix.copy()
    rows = np.arange(len(query_embeddings))[:, None]
    found = indices >= 0
    matrix[np.broadcast_to(rows, indices.shape)[found], indices[found]] = distances[found]
    return matrix
