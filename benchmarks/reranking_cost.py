"""The cost of k-reciprocal re-ranking at Market-1501 size (Zhong et al., CVPR 2017).

3,368 queries and 15,913 gallery embeddings of dimension 128, L2-normalised, clustered around 750
people seen by six cameras (seeded). Prints the seconds of the three exact distance matrices, of
the re-ranking (k1=20, k2=6, lambda=0.3) and of the evaluation, the peak memory the re-ranking
allocated beyond its inputs (tracemalloc) and the process's peak resident memory, and Rank-1 / mAP
without and with re-ranking under the Market protocol, measured in this one run. With
``--torchreid FILE`` (torchreid's ``reid/utils/rerank.py``, never a dependency) it also compares
the result with torchreid's ``re_ranking`` on a subset.

    python benchmarks/reranking_cost.py     # about 2 minutes and 4 GB on 2 CPU cores
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import time
import tracemalloc

import numpy as np

from tripletlib.evaluation import evaluate
from tripletlib.reranking import k_reciprocal_distances
from tripletlib.retrieval import squared_distances


def clustered_people(
    num_queries: int, num_gallery: int, dimension: int, noise: float, seed: int, people: int = 750
):
    """(query, gallery) embeddings with person and camera ids: unit vectors around one centre per
    person; every query's person is in the gallery."""
    random = np.random.default_rng(seed)
    centres = random.normal(size=(people, dimension))
    query_ids = random.integers(0, people, num_queries)
    gallery_ids = np.concatenate([query_ids, random.integers(0, people, num_gallery)])[:num_gallery]
    random.shuffle(gallery_ids)

    def sample(ids: np.ndarray) -> np.ndarray:
        values = centres[ids] + noise * random.normal(size=(len(ids), dimension))
        return (values / np.linalg.norm(values, axis=1, keepdims=True)).astype(np.float32)

    query_cameras = random.integers(1, 7, num_queries)
    gallery_cameras = random.integers(1, 7, num_gallery)
    return (sample(query_ids), query_ids + 1, query_cameras), (
        sample(gallery_ids), gallery_ids + 1, gallery_cameras,
    )  # fmt: skip


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def compare_with_torchreid(path: str, qg, qq, gg, size: int) -> None:
    """torchreid's ``re_ranking`` squares its input: it gets the plain Euclidean distances."""
    spec = importlib.util.spec_from_file_location("torchreid_rerank", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    queries, gallery = size // 5, size - size // 5
    qg, qq, gg = qg[:queries, :gallery], qq[:queries, :queries], gg[:gallery, :gallery]
    ours, our_seconds = timed(k_reciprocal_distances, qg, qq, gg)
    theirs, their_seconds = timed(module.re_ranking, np.sqrt(qg), np.sqrt(qq), np.sqrt(gg))
    same_order = np.mean(np.argsort(ours, axis=1)[:, :10] == np.argsort(theirs, axis=1)[:, :10])
    print(
        f"torchreid re_ranking on {queries} x {gallery}: max |difference| "
        f"{np.abs(ours - theirs).max():.2e}, same top-10 order {100 * same_order:.1f} %, "
        f"seconds ours {our_seconds:.2f} / torchreid {their_seconds:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--dimension", type=int, default=128)
    parser.add_argument("--noise", type=float, default=1.6, help="spread around each centre")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torchreid", help="torchreid's rerank.py, to compare on a subset")
    parser.add_argument("--torchreid-size", type=int, default=2000, help="images in that subset")
    arguments = parser.parse_args()
    query, gallery = clustered_people(
        arguments.queries, arguments.gallery, arguments.dimension, arguments.noise, arguments.seed
    )
    print(
        f"{arguments.queries} queries x {arguments.gallery} gallery, dimension "
        f"{arguments.dimension}, 750 people, noise {arguments.noise}, seed {arguments.seed}"
    )
    qg, qg_seconds = timed(squared_distances, query[0], gallery[0])
    (qq, gg), other_seconds = timed(
        lambda: (squared_distances(query[0], query[0]), squared_distances(gallery[0], gallery[0]))
    )
    print(f"distances: query x gallery {qg_seconds:.2f} s, query x query and gallery x gallery "
          f"{other_seconds:.2f} s (gallery x gallery {gg.nbytes / 2**30:.2f} GiB)")  # fmt: skip
    ids = (query[1], gallery[1], query[2], gallery[2])
    plain, plain_seconds = timed(evaluate, qg, *ids)
    tracemalloc.start()
    re_ranked_distances, re_rank_seconds = timed(k_reciprocal_distances, qg, qq, gg)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    re_ranked, re_ranked_seconds = timed(evaluate, re_ranked_distances, *ids)
    print(f"re-ranking (k1=20, k2=6, lambda=0.3): {re_rank_seconds:.1f} s, peak allocated "
          f"{peak / 2**30:.2f} GiB beyond its inputs")  # fmt: skip
    print(f"evaluate: {plain_seconds:.2f} s plain, {re_ranked_seconds:.2f} s re-ranked")
    print(f"process peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    for name, result in (("plain", plain), ("re-ranked", re_ranked)):
        print(f"{name:>10}: Rank-1 {100 * result.rank1:.1f} %, Rank-5 {100 * result.rank5:.1f} %, "
              f"mAP {100 * result.mAP:.1f} % over {result.num_valid_queries} queries")  # fmt: skip
    if arguments.torchreid:
        compare_with_torchreid(arguments.torchreid, qg, qq, gg, arguments.torchreid_size)


if __name__ == "__main__":
    main()
