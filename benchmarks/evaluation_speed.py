"""Time `evaluate` against the reference loop on Market-1501-sized synthetic data.

Market-1501 test split as torchreid loads it: 3,368 queries, 15,913 gallery images (13,120 of
751 people plus 2,793 distractors with id 0), 6 cameras. Distances are squared Euclidean between
noisy per-person centres, so there is structure but not a perfect ranking. Both implementations
run in this one process on the same matrix; the script fails if any number differs.

    python benchmarks/evaluation_speed.py              # about 10 s on 2 CPU cores
    python benchmarks/evaluation_speed.py --all-modes  # also trapezoid AP and the naive protocol
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tripletlib.evaluation import EvaluationResult, evaluate, evaluate_naive_loop
from tripletlib.retrieval import squared_distances


def make_market_like(
    seed: int = 0,
    num_queries: int = 3368,
    num_gallery: int = 15913,
    num_people: int = 751,
    num_distractors: int = 2793,
    num_cameras: int = 6,
    dimension: int = 64,
    noise: float = 1.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distance matrix and ids: (distmat, query_pids, gallery_pids, query_camids, gallery_camids)."""
    random = np.random.default_rng(seed)
    people = np.arange(1, num_people + 1)
    centres = random.normal(size=(num_people + 1, dimension)).astype(np.float32)
    num_person_images = num_gallery - num_distractors
    gallery_pids = np.concatenate(
        [people, people, random.choice(people, num_person_images - 2 * num_people)]
    )
    gallery_pids = np.concatenate([gallery_pids, np.zeros(num_distractors, dtype=np.int64)])
    query_pids = random.choice(people, num_queries)
    gallery_camids = random.integers(1, num_cameras + 1, num_gallery)
    query_camids = random.integers(1, num_cameras + 1, num_queries)

    def embed(pids: np.ndarray) -> np.ndarray:
        noise_values = random.normal(scale=noise, size=(pids.size, dimension))
        return centres[pids] + noise_values.astype(np.float32)

    distmat = squared_distances(embed(query_pids), embed(gallery_pids))
    return distmat, query_pids, gallery_pids, query_camids, gallery_camids


def identical(first: EvaluationResult, second: EvaluationResult) -> bool:
    """True when every number of the two results is bit-for-bit equal."""
    return (
        np.array_equal(first.cmc, second.cmc)
        and np.array_equal(first.per_query_ap, second.per_query_ap, equal_nan=True)
        and first.mAP == second.mAP
        and first.rank1 == second.rank1
        and first.rank5 == second.rank5
        and first.num_valid_queries == second.num_valid_queries
        and first.num_skipped_queries == second.num_skipped_queries
    )


def timed(function, *arguments, **keywords) -> tuple[EvaluationResult, float]:
    start = time.perf_counter()
    result = function(*arguments, **keywords)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--noise", type=float, default=1.2, help="larger = harder ranking")
    parser.add_argument("--all-modes", action="store_true", help="also trapezoid and naive")
    arguments = parser.parse_args()
    data = make_market_like(
        arguments.seed, arguments.queries, arguments.gallery, noise=arguments.noise
    )
    print(f"distmat {data[0].shape} {data[0].dtype}, {np.unique(data[2]).size} gallery ids")
    modes = [("market", "noninterpolated")]
    if arguments.all_modes:
        modes += [("market", "trapezoid"), ("naive", "noninterpolated"), ("naive", "trapezoid")]
    all_identical = True
    print(
        f"{'protocol':<9} {'ap':<16} {'loop s':>7} {'fast s':>7} {'speed-up':>8}  "
        f"{'Rank-1':>6} {'mAP':>6} skipped identical"
    )
    for protocol, ap in modes:
        loop, loop_seconds = timed(evaluate_naive_loop, *data, protocol=protocol, ap=ap)
        fast, fast_seconds = timed(evaluate, *data, protocol=protocol, ap=ap)
        same = identical(loop, fast)
        all_identical &= same
        print(
            f"{protocol:<9} {ap:<16} {loop_seconds:7.2f} {fast_seconds:7.2f} "
            f"{loop_seconds / fast_seconds:7.1f}x  {100 * fast.rank1:6.1f} {100 * fast.mAP:6.1f} "
            f"{fast.num_skipped_queries:7d} {same}"
        )
    if not all_identical:
        raise SystemExit("evaluate and evaluate_naive_loop disagree")


if __name__ == "__main__":
    main()
