"""Nearest-neighbour search in the embedding space (Section 3.3.2).

Distances are squared Euclidean, as in the thesis. `exact_search` is the brute-force ranked list;
`annoy_search` uses Spotify's Annoy (random-projection trees, ref. [53]) for approximate
neighbours. Annoy is imported only inside the functions that need it. `distance_matrix` is the
(query x gallery) matrix that evaluation ranks, from either search. `annoy_tradeoff` measures
Annoy's recall against exact search and its query time for a grid of `n_trees` / `search_k`.

Annoy's defaults here, `ANNOY_N_TREES` trees and `ANNOY_SEARCH_K` nodes inspected per query,
come from that measurement (`benchmarks/annoy_tradeoff.py`, `docs/benchmarks.md`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tripletlib import checks

ANNOY_METRICS = ("euclidean", "angular")
# The cheapest setting measured with recall@10 >= 0.95 against exact search at Market-1501's size
# (3,368 x 15,913 clustered 128-d unit vectors whose clusters overlap): 0.97, where Annoy's own
# search_k (-1: n_trees * k = 500 nodes) found 0.62. For the 100 neighbours evaluation asks for,
# 5000 is what -1 inspected. docs/benchmarks.md, "Retrieval: exact search versus Annoy".
ANNOY_N_TREES = 50
ANNOY_SEARCH_K = 5000


def squared_distances(queries: Any, gallery: Any, chunk_size: int = 4096) -> np.ndarray:
    """(Q, G) float32 squared Euclidean distances, ||q||^2 + ||g||^2 - 2 q.g, clipped at 0.

    Computed ``chunk_size`` query rows at a time, in place, so only the result is held in memory.
    """
    queries, gallery = _check_pair(queries, gallery)
    chunk_size = _positive_int("chunk_size", chunk_size)
    query_norms = np.einsum("ij,ij->i", queries, queries)
    gallery_norms = np.einsum("ij,ij->i", gallery, gallery)
    result = np.empty((queries.shape[0], gallery.shape[0]), dtype=np.float32)
    for start in range(0, queries.shape[0], chunk_size):
        stop = min(start + chunk_size, queries.shape[0])
        _squared_block(
            queries[start:stop],
            gallery,
            query_norms[start:stop],
            gallery_norms,
            out=result[start:stop],
        )
    return result


def exact_search(
    queries: Any,
    gallery: Any,
    k: int = 10,
    chunk_size: int = 1024,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest gallery rows per query: (indices (Q, k) int64, squared distances (Q, k)).

    Ascending distance; equal distances are ordered by gallery index.
    """
    queries, gallery = _check_pair(queries, gallery)
    k = _check_k(k, gallery.shape[0])
    chunk_size = _positive_int("chunk_size", chunk_size)
    gallery_norms = np.einsum("ij,ij->i", gallery, gallery)
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    distances = np.empty((queries.shape[0], k), dtype=np.float32)
    starts = range(0, queries.shape[0], chunk_size)
    for start in tqdm(starts, desc="exact search", unit="chunk", disable=not progress):
        chunk = queries[start : start + chunk_size]
        block = np.empty((chunk.shape[0], gallery.shape[0]), dtype=np.float32)
        _squared_block(chunk, gallery, np.einsum("ij,ij->i", chunk, chunk), gallery_norms, block)
        rows = slice(start, start + chunk.shape[0])
        indices[rows], distances[rows] = smallest_per_row(block, k)
    return indices, distances


def smallest_per_row(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest entries of each row of a 2-D array: (columns (rows, k) int64, values),
    ascending, equal values ordered by column."""
    if k < block.shape[1]:
        candidates = np.argpartition(block, k - 1, axis=1)[:, :k]
        # argpartition picks among columns tied at the k-th value; keep the lowest columns.
        kth = np.take_along_axis(block, candidates, axis=1).max(axis=1)
        for row in np.flatnonzero((block <= kth[:, None]).sum(axis=1) > k):
            candidates[row] = np.argsort(block[row], kind="stable")[:k]
    else:
        candidates = np.broadcast_to(np.arange(k), block.shape).copy()
    values = np.take_along_axis(block, candidates, axis=1)
    order = np.lexsort((candidates, values), axis=1)
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(values, order, axis=1)


def build_annoy_index(
    gallery: Any,
    metric: str = "euclidean",
    n_trees: int = ANNOY_N_TREES,
    seed: int = 0,
    n_jobs: int = 1,
) -> Any:
    """An `annoy.AnnoyIndex` over the gallery rows (item i = row i), built with ``n_trees`` trees.

    ``n_jobs=1`` keeps the trees a pure function of ``seed``; more threads build faster.
    """
    import annoy

    gallery = _check_matrix("gallery", gallery)
    if metric not in ANNOY_METRICS:
        raise ValueError(f"metric must be one of {ANNOY_METRICS}, got {metric!r}")
    n_trees = _positive_int("n_trees", n_trees)
    index = annoy.AnnoyIndex(gallery.shape[1], metric)
    index.set_seed(int(seed))
    for item, vector in enumerate(gallery):
        index.add_item(item, vector)
    index.build(n_trees, n_jobs=int(n_jobs))
    return index


def query_annoy_index(
    index: Any,
    queries: Any,
    k: int = 10,
    search_k: int = ANNOY_SEARCH_K,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k nearest items of a built index: (indices (Q, k) int64, squared distances).

    Annoy reports plain (Euclidean or angular) distances; they are squared here. ``search_k`` is
    how many nodes are inspected per query (default `ANNOY_SEARCH_K`); ``-1`` is Annoy's own
    ``n_trees * k``; larger is more accurate and slower (`annoy_tradeoff` measures both).
    """
    queries = _check_matrix("queries", queries)
    if queries.shape[1] != index.f:
        raise ValueError(
            f"queries have dimension {queries.shape[1]} but the Annoy index has {index.f}"
        )
    k = _check_k(k, index.get_n_items())
    search_k = _search_k(search_k)
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    distances = np.empty((queries.shape[0], k), dtype=np.float32)
    for row in tqdm(range(queries.shape[0]), desc="annoy search", disable=not progress):
        items, item_distances = index.get_nns_by_vector(
            queries[row], k, search_k=int(search_k), include_distances=True
        )
        if len(items) < k:
            raise ValueError(
                f"Annoy returned only {len(items)} of k={k} neighbours for query {row}; "
                "increase search_k or n_trees"
            )
        indices[row] = items
        distances[row] = np.square(np.asarray(item_distances, dtype=np.float32))
    return indices, distances


def annoy_search(
    queries: Any,
    gallery: Any,
    k: int = 10,
    metric: str = "euclidean",
    n_trees: int = ANNOY_N_TREES,
    search_k: int = ANNOY_SEARCH_K,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate nearest neighbours with Annoy (Section 3.3.2); same outputs as `exact_search`.

    Distances are squared (for ``metric="angular"`` on unit vectors they equal squared Euclidean).
    """
    queries, gallery = _check_pair(queries, gallery)
    index = build_annoy_index(gallery, metric=metric, n_trees=n_trees, seed=seed)
    return query_annoy_index(index, queries, k=k, search_k=search_k, progress=progress)


def annoy_tradeoff(
    queries: Any,
    gallery: Any,
    settings: Iterable[tuple[int, int]],
    k: int = 10,
    metric: str = "euclidean",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Annoy's accuracy against its cost: one row per ``(n_trees, search_k)`` in ``settings``.

    Each row holds ``n_trees``, ``search_k`` (as given; -1 is Annoy's ``n_trees * k``),
    ``nodes`` (the nodes inspected per query, ``search_k`` or ``n_trees * k``), ``recall``
    (`recall_at_k` of Annoy's k nearest against `exact_search`'s), ``build_seconds`` (the index,
    one thread; one index per distinct ``n_trees``, shared by its rows), ``query_ms`` (Annoy's
    milliseconds per query) and ``exact_ms`` (exact search's milliseconds per query, the same in
    every row). The recall is a function of the data, the settings and ``seed``; the times are
    one measurement on this machine.
    """
    queries, gallery = _check_pair(queries, gallery)
    k = _check_k(k, gallery.shape[0])
    settings = [(_positive_int("n_trees", trees), _search_k(nodes)) for trees, nodes in settings]
    if not settings:
        raise ValueError("settings is empty; expected (n_trees, search_k) pairs")
    started = time.perf_counter()
    exact_indices, _ = exact_search(queries, gallery, k=k)
    exact_ms = 1000 * (time.perf_counter() - started) / queries.shape[0]
    indexes: dict[int, tuple[Any, float]] = {}
    rows = []
    for n_trees, search_k in settings:
        if n_trees not in indexes:
            started = time.perf_counter()
            index = build_annoy_index(gallery, metric=metric, n_trees=n_trees, seed=seed)
            indexes[n_trees] = index, time.perf_counter() - started
        index, build_seconds = indexes[n_trees]
        started = time.perf_counter()
        indices, _ = query_annoy_index(index, queries, k=k, search_k=search_k)
        query_ms = 1000 * (time.perf_counter() - started) / queries.shape[0]
        rows.append(
            {
                "n_trees": n_trees,
                "search_k": search_k,
                "nodes": n_trees * k if search_k == -1 else search_k,
                "recall": recall_at_k(indices, exact_indices, k),
                "build_seconds": build_seconds,
                "query_ms": query_ms,
                "exact_ms": exact_ms,
            }
        )
    return rows


def clustered_unit_vectors(
    num_queries: int, num_gallery: int, dimension: int = 128, *,
    clusters: int = 751, spread: float = 0.3, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(queries, gallery) float32 unit vectors around ``clusters`` random centres, as a trained
    embedder would give people: each row is a centre (standard normal) plus ``spread`` times
    standard normal noise, L2-normalised. At 0.3 the clusters lie far apart; near 1 and above
    they overlap and a query's nearest neighbours come from several clusters. Seeded."""
    num_queries = _positive_int("num_queries", num_queries)
    num_gallery = _positive_int("num_gallery", num_gallery)
    if not spread >= 0:
        raise ValueError(f"spread must be >= 0, got {spread!r}")
    random = np.random.default_rng(seed)
    centres = random.normal(size=(_positive_int("clusters", clusters), dimension))

    def sample(count: int) -> np.ndarray:
        people = random.integers(0, len(centres), count)
        values = centres[people] + spread * random.normal(size=(count, dimension))
        return (values / np.linalg.norm(values, axis=1, keepdims=True)).astype(np.float32)

    return sample(num_queries), sample(num_gallery)


SEARCHES = ("exact", "annoy")
REMAINDER_SEED = 0  # the order of the gallery images Annoy does not return (annoy_distance_matrix)


def distance_matrix(
    queries: Any,
    gallery: Any,
    search: str = "exact",
    annoy_neighbours: int = 100,
    n_trees: int = ANNOY_N_TREES,
    search_k: int = ANNOY_SEARCH_K,
) -> np.ndarray:
    """(Q, G) squared distances to rank: exact (`squared_distances`) or Annoy's approximate list
    (`annoy_distance_matrix`, with ``n_trees`` and ``search_k``; ignored by exact search)."""
    if search not in SEARCHES:
        raise ValueError(f"search must be 'exact' or 'annoy', got {search!r}")
    if search == "exact":
        return squared_distances(queries, gallery)
    return annoy_distance_matrix(
        queries, gallery, annoy_neighbours, n_trees=n_trees, search_k=search_k
    )


def annoy_distance_matrix(
    query_embeddings: np.ndarray,
    gallery_embeddings: np.ndarray,
    neighbours: int,
    n_trees: int = ANNOY_N_TREES,
    search_k: int = ANNOY_SEARCH_K,
) -> np.ndarray:
    """A (Q, G) matrix: Annoy's squared distances for the neighbours it returns, then the rest.

    Annoy returns only the `neighbours` nearest gallery images of each query; the rest of the
    gallery is ranked after all of them, in one random order (`REMAINDER_SEED`, the same for every
    call) that does not depend on the gallery's file order: Annoy did not rank them, so its mAP
    counts the matches it missed as found at random places behind its list. Annoy's Rank-k (k <=
    neighbours) is that of its approximate list.
    """
    queries, gallery = _check_pair(query_embeddings, gallery_embeddings)
    neighbours = min(int(neighbours), gallery.shape[0])
    indices, distances = annoy_search(
        queries, gallery, k=neighbours, n_trees=n_trees, search_k=search_k
    )
    beyond = float(distances.max()) + 1.0
    place = np.random.default_rng(REMAINDER_SEED).permutation(gallery.shape[0])
    remainder = beyond + place.astype(np.float64) * 1e-6
    matrix = np.repeat(remainder[None, :], queries.shape[0], axis=0)
    found = indices >= 0
    rows = np.broadcast_to(np.arange(queries.shape[0])[:, None], indices.shape)
    matrix[rows[found], indices[found]] = distances[found]
    return matrix


def recall_at_k(approx_indices: Any, exact_indices: Any, k: int | None = None) -> float:
    """Mean fraction of each query's exact k nearest neighbours found among its approximate k."""
    approx_indices = np.asarray(approx_indices)
    exact_indices = np.asarray(exact_indices)
    if approx_indices.ndim != 2 or exact_indices.ndim != 2:
        raise ValueError(
            f"indices must be 2-D (queries, k), got {approx_indices.shape} and {exact_indices.shape}"
        )
    if approx_indices.shape[0] != exact_indices.shape[0] or approx_indices.shape[0] == 0:
        raise ValueError(
            f"approx_indices and exact_indices need the same, non-zero number of queries, got "
            f"{approx_indices.shape[0]} and {exact_indices.shape[0]}"
        )
    available = min(approx_indices.shape[1], exact_indices.shape[1])
    k = available if k is None else _positive_int("k", k)
    if k > available:
        raise ValueError(
            f"k={k} exceeds the neighbours given ({approx_indices.shape[1]} approx, "
            f"{exact_indices.shape[1]} exact)"
        )
    approx, exact = np.sort(approx_indices[:, :k], axis=1), np.sort(exact_indices[:, :k], axis=1)
    found = [
        np.intersect1d(a, e, assume_unique=True).size for a, e in zip(approx, exact, strict=True)
    ]
    return float(np.mean(found) / k)


def _squared_block(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_norms: np.ndarray,
    gallery_norms: np.ndarray,
    out: np.ndarray,
) -> None:
    np.matmul(queries, gallery.T, out=out)
    out *= -2.0
    out += query_norms[:, None]
    out += gallery_norms[None, :]
    np.maximum(out, 0.0, out=out)


def _positive_int(name: str, value: Any) -> int:
    return checks.integer(value, name, whole_float=True)


def _search_k(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or (value < 1 and value != -1):
        raise ValueError(f"search_k must be -1 (n_trees * k) or a positive integer, got {value!r}")
    return int(value)


def _check_k(k: Any, num_items: int) -> int:
    k = _positive_int("k", k)
    if k > num_items:
        raise ValueError(f"k={k} exceeds the gallery size {num_items}")
    return k


def _check_matrix(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array (rows, dimension), got {array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.argwhere(~finite)[0, 0])
        raise ValueError(
            f"{name} has {np.count_nonzero(~finite)} NaN or infinite values, first in row {row}"
        )
    return array


def _check_pair(queries: Any, gallery: Any) -> tuple[np.ndarray, np.ndarray]:
    queries = _check_matrix("queries", queries)
    gallery = _check_matrix("gallery", gallery)
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries have dimension {queries.shape[1]} but gallery has {gallery.shape[1]}"
        )
    return queries, gallery
