"""Exact versus Annoy nearest-neighbour search at Market-1501 size (Section 3.3.2).

3,368 queries against 15,913 gallery embeddings of dimension 128, L2-normalised, in two flavours:
unstructured (uniform on the sphere, the hardest case for trees) and clustered (751 people, as
a trained embedder would give). Prints seconds for exact search, the Annoy build and the Annoy
queries, and Annoy's recall@10 against the exact result, measured in this one run.

    python benchmarks/retrieval_speed.py     # about 15 s on 2 CPU cores
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tripletlib.retrieval import (
    build_annoy_index,
    clustered_unit_vectors,
    exact_search,
    query_annoy_index,
    recall_at_k,
)


def unit_rows(values: np.ndarray) -> np.ndarray:
    return (values / np.linalg.norm(values, axis=1, keepdims=True)).astype(np.float32)


def make_embeddings(
    kind: str, num_queries: int, num_gallery: int, dimension: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(queries, gallery) unit vectors: ``"unstructured"`` or ``"clustered"`` (751 centres)."""
    if kind == "clustered":
        return clustered_unit_vectors(num_queries, num_gallery, dimension, seed=seed)
    random = np.random.default_rng(seed)
    return (
        unit_rows(random.normal(size=(num_queries, dimension))),
        unit_rows(random.normal(size=(num_gallery, dimension))),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--dimension", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n-trees", type=int, default=50)
    parser.add_argument(
        "--search-k", default="-1,5000", help="comma-separated; -1 = n_trees * k (Annoy default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    print(
        f"{arguments.queries} queries x {arguments.gallery} gallery, dimension "
        f"{arguments.dimension}, k={arguments.k}, Annoy n_trees={arguments.n_trees}"
    )
    print(
        f"{'data':<13} {'exact s':>8} {'annoy build s':>14} {'search_k':>9} "
        f"{'annoy query s':>14} {'recall@k':>8}"
    )
    for kind in ("unstructured", "clustered"):
        queries, gallery = make_embeddings(
            kind, arguments.queries, arguments.gallery, arguments.dimension, arguments.seed
        )
        start = time.perf_counter()
        exact_indices, _ = exact_search(queries, gallery, k=arguments.k)
        exact_seconds = time.perf_counter() - start
        start = time.perf_counter()
        index = build_annoy_index(gallery, n_trees=arguments.n_trees, seed=arguments.seed)
        build_seconds = time.perf_counter() - start
        for search_k in [int(value) for value in arguments.search_k.split(",")]:
            start = time.perf_counter()
            approx_indices, _ = query_annoy_index(index, queries, k=arguments.k, search_k=search_k)
            query_seconds = time.perf_counter() - start
            recall = recall_at_k(approx_indices, exact_indices, arguments.k)
            print(
                f"{kind:<13} {exact_seconds:8.2f} {build_seconds:14.2f} {search_k:9d} "
                f"{query_seconds:14.2f} {recall:8.3f}"
            )


if __name__ == "__main__":
    main()
