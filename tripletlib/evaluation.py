"""Rank-k / CMC and mAP for person re-identification (Section 4.1, Eqs. 4.1-4.3).

`evaluate` follows the Market-1501 protocol (torchreid's ``eval_market1501``): for each query,
gallery images of the same person seen by the same camera are junk and removed from its ranked
list, gallery images with person id -1 are junk for every query, and distractors (id 0) stay as
wrong matches. A query left without a correct match is skipped and counted.

Ranked lists break distance ties by gallery column (a stable sort), and sums over a ranked list are
taken in rank order, so `evaluate` and the reference loop `evaluate_naive_loop` agree bit for bit.

`evaluate_embeddings` is the one evaluation path of the package (training, `tripletlib evaluate`,
the notebooks): query and gallery embeddings -> distances (exact or Annoy, optionally k-reciprocal
re-ranked, `tripletlib.reranking`) -> `evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tripletlib import checks, reranking, retrieval
from tripletlib.data import JUNK_ID

PROTOCOLS = ("market", "naive")
AP_MODES = ("noninterpolated", "trapezoid")
_QUERY_CHUNK = 256


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Metrics of one distance matrix; fractions in [0, 1] (Eqs. 4.1-4.3).

    ``cmc[k]`` is the fraction of valid queries with a correct match within the first ``k + 1``
    ranks. ``per_query_ap`` holds one AP per query, NaN for a skipped query.
    """

    cmc: np.ndarray
    mAP: float
    rank1: float
    rank5: float
    num_valid_queries: int
    num_skipped_queries: int
    per_query_ap: np.ndarray

    def to_dict(self, include_per_query_ap: bool = False) -> dict[str, Any]:
        """Plain floats, ints and lists for JSON; skipped queries' AP become ``None``."""
        result: dict[str, Any] = {
            "rank1": float(self.rank1),
            "rank5": float(self.rank5),
            "mAP": float(self.mAP),
            "cmc": [float(value) for value in self.cmc],
            "num_valid_queries": int(self.num_valid_queries),
            "num_skipped_queries": int(self.num_skipped_queries),
        }
        if include_per_query_ap:
            result["per_query_ap"] = [
                None if np.isnan(value) else float(value) for value in self.per_query_ap
            ]
        return result


def average_precision(matches: Any, ap: str = "noninterpolated", k: int | None = None) -> float:
    """AP of one ranked list (junk already removed); ``matches[i]`` is True for a correct match.

    ``"noninterpolated"`` is Eq. 4.2: the precision at each true positive, summed and divided by
    the total number of true positives (Fig. 4.2); ``k`` truncates the sum (AP@k). ``"trapezoid"``
    is the official Market-1501 ``compute_AP.m``: trapezoids between consecutive precision points.
    """
    matches = np.asarray(matches)
    if matches.ndim != 1 or matches.dtype != bool:
        raise ValueError(
            f"matches must be a 1-D bool array (the ranked list), got {matches.dtype} {matches.shape}"
        )
    _check_choice("ap", ap, AP_MODES)
    if not matches.any():
        raise ValueError("matches has no true positive; the AP of such a list is undefined")
    checks.integer(k, "k", allow_none=True, whole_float=True)
    hits = np.cumsum(matches)
    positions = np.arange(1, matches.size + 1)
    precision = hits / positions
    if ap == "noninterpolated":
        terms = np.where(matches, precision, 0.0)
    else:
        previous = np.ones(matches.size)
        previous[1:] = hits[:-1] / positions[:-1]
        terms = np.where(matches, (previous + precision) / 2, 0.0)
    if k is not None:
        terms = terms[: int(k)]
    return float(np.cumsum(terms)[-1] / hits[-1])


def evaluate(
    distmat: Any,
    query_pids: Any,
    gallery_pids: Any,
    query_camids: Any,
    gallery_camids: Any,
    max_rank: int = 50,
    protocol: str = "market",
    ap: str = "noninterpolated",
) -> EvaluationResult:
    """CMC, Rank-1/5 and mAP of a (queries, gallery) distance matrix (Section 4.1).

    ``protocol="naive"`` keeps same-camera matches (only id -1 is junk) to show how much they
    inflate the metrics. Fast: per query it ranks only its own person's gallery images, sorting
    just the distances up to the farthest of them; same numbers as `evaluate_naive_loop`.
    """
    distances, query_pids, gallery_pids, query_camids, gallery_camids = _validate(
        distmat, query_pids, gallery_pids, query_camids, gallery_camids, max_rank, protocol, ap
    )
    max_rank = int(max_rank)
    num_queries = distances.shape[0]
    first_rank = np.full(num_queries, -1, dtype=np.int64)
    per_query_ap = np.full(num_queries, np.nan)
    kept_columns = np.flatnonzero(gallery_pids != JUNK_ID)
    all_kept = kept_columns.size == gallery_pids.size
    if kept_columns.size:
        kept_pids, kept_camids = gallery_pids[kept_columns], gallery_camids[kept_columns]
        by_person = np.argsort(kept_pids, kind="stable")
        starts = np.searchsorted(kept_pids[by_person], query_pids, side="left")
        counts = np.searchsorted(kept_pids[by_person], query_pids, side="right") - starts
        for start in range(0, num_queries, _QUERY_CHUNK):
            rows = slice(start, min(start + _QUERY_CHUNK, num_queries))
            first_rank[rows], per_query_ap[rows] = _evaluate_chunk(
                distances[rows] if all_kept else distances[rows][:, kept_columns],
                query_camids[rows],
                by_person,
                starts[rows],
                counts[rows],
                kept_camids,
                protocol,
                ap,
            )
    valid = first_rank >= 0
    _check_some_valid(valid)
    cmc = np.cumsum(np.bincount(first_rank[valid], minlength=max_rank)[:max_rank])
    num_valid = int(valid.sum())
    return EvaluationResult(
        cmc=_read_only(cmc / num_valid),
        mAP=float(np.mean(per_query_ap[valid])),
        rank1=float(np.count_nonzero(first_rank[valid] < 1) / num_valid),
        rank5=float(np.count_nonzero(first_rank[valid] < 5) / num_valid),
        num_valid_queries=num_valid,
        num_skipped_queries=num_queries - num_valid,
        per_query_ap=_read_only(per_query_ap),
    )


def evaluate_embeddings(
    query_embeddings: np.ndarray,
    gallery_embeddings: np.ndarray,
    query: Any,
    gallery: Any,
    protocol: str = "market",
    ap: str = "noninterpolated",
    search: str = "exact",
    annoy_neighbours: int = 100,
    annoy_trees: int = retrieval.ANNOY_N_TREES,
    annoy_search_k: int = retrieval.ANNOY_SEARCH_K,
    re_rank: bool = False,
) -> EvaluationResult:
    """Rank-k / CMC / mAP of embeddings of a query and a gallery `data.Split` (or anything with
    `person_ids` and `camera_ids`): squared distances from `retrieval.distance_matrix` (exact
    search, or Annoy's `annoy_neighbours` nearest from an index of `annoy_trees` trees searched
    with `annoy_search_k`, Section 3.3.2), then `evaluate`.

    ``re_rank=True`` ranks by `re_ranked_distances` instead (k-reciprocal re-ranking with the
    paper's k1=20, k2=6, lambda=0.3): exact search only."""
    if re_rank:
        if search != "exact":
            raise ValueError(
                f"re_rank needs search='exact' (it re-ranks every gallery image from the full "
                f"query, gallery and query-gallery distances), got search={search!r}"
            )
        distances = re_ranked_distances(query_embeddings, gallery_embeddings)
    else:
        distances = retrieval.distance_matrix(
            query_embeddings, gallery_embeddings, search, annoy_neighbours,
            n_trees=annoy_trees, search_k=annoy_search_k,
        )  # fmt: skip
    return evaluate(
        distances, query.person_ids, gallery.person_ids, query.camera_ids, gallery.camera_ids,
        protocol=protocol, ap=ap,
    )  # fmt: skip


def re_ranked_distances(
    query_embeddings: Any, gallery_embeddings: Any, **options: Any
) -> np.ndarray:
    """(Q, G) k-reciprocal re-ranked distances (`reranking.k_reciprocal_distances`, `options`
    its k1, k2, lambda_value) from the exact squared distances of the embeddings."""
    return reranking.k_reciprocal_distances(
        retrieval.squared_distances(query_embeddings, gallery_embeddings),
        retrieval.squared_distances(query_embeddings, query_embeddings),
        retrieval.squared_distances(gallery_embeddings, gallery_embeddings),
        **options,
    )


def _evaluate_chunk(
    distances: np.ndarray,
    query_camids: np.ndarray,
    by_person: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    kept_camids: np.ndarray,
    protocol: str,
    ap: str,
) -> tuple[np.ndarray, np.ndarray]:
    """First-match rank and AP for a chunk of queries (rows of ``distances``, junk ids removed).

    Each query ranks only its own person's gallery images: the rank of such an image among all
    kept columns comes from a binary search among the sorted distances no larger than the
    farthest of them; the same-camera junk ranked before it is then subtracted.
    """
    num_rows, num_columns = distances.shape
    width = max(int(counts.max()), 1)
    in_block = np.arange(width) < counts[:, None]
    position = np.minimum(starts[:, None] + np.arange(width), num_columns - 1)
    columns = by_person[position]  # ascending within a row's block
    row_index = np.arange(num_rows)[:, None]
    block_distances = np.where(in_block, distances[row_index, columns], np.inf)
    # Order each block by (distance, column): a stable sort, as columns are already ascending.
    order = np.argsort(block_distances, axis=1, kind="stable")
    block_distances = np.take_along_axis(block_distances, order, axis=1)
    columns = np.take_along_axis(columns, order, axis=1)
    in_block = np.take_along_axis(in_block, order, axis=1)
    if protocol == "market":
        same_camera = kept_camids[columns] == query_camids[:, None]
        junk = in_block & same_camera
        match = in_block & ~same_camera
    else:
        junk = np.zeros_like(in_block)
        match = in_block
    # Entries after a query's farthest correct match cannot change its metrics.
    needed = np.where(match.any(axis=1), width - np.argmax(match[:, ::-1], axis=1), 0)
    ranked_before = np.zeros((num_rows, width), dtype=np.int64)
    for row in range(num_rows):
        count = int(needed[row])
        if count == 0:
            continue
        targets = block_distances[row, :count]  # ascending; only closer columns matter
        values = distances[row]
        closer = np.sort(values[values <= targets[-1]])
        below = np.searchsorted(closer, targets, side="left")
        tied = np.searchsorted(closer, targets, side="right") - below > 1
        for entry in np.flatnonzero(tied):  # equal distances: earlier columns rank first
            below[entry] += np.count_nonzero(values[: columns[row, entry]] == targets[entry])
        ranked_before[row, :count] = below
    valid_rank = ranked_before - (np.cumsum(junk, axis=1) - junk)
    hit_number = np.cumsum(match, axis=1)
    precision = np.divide(hit_number, valid_rank + 1, out=np.zeros(match.shape), where=match)
    if ap == "noninterpolated":
        terms = precision
    else:
        previous = np.divide(
            hit_number - 1, valid_rank, out=np.ones(match.shape), where=match & (valid_rank > 0)
        )
        terms = np.where(match, (previous + precision) / 2, 0.0)
    num_relevant = hit_number[:, -1]
    has_match = num_relevant > 0
    per_query_ap = np.full(num_rows, np.nan)
    per_query_ap[has_match] = np.cumsum(terms, axis=1)[has_match, -1] / num_relevant[has_match]
    first_rank = np.where(match, valid_rank, num_columns).min(axis=1)
    return np.where(has_match, first_rank, -1), per_query_ap


def evaluate_naive_loop(
    distmat: Any,
    query_pids: Any,
    gallery_pids: Any,
    query_camids: Any,
    gallery_camids: Any,
    max_rank: int = 50,
    protocol: str = "market",
    ap: str = "noninterpolated",
) -> EvaluationResult:
    """Reference implementation of `evaluate`: per query, sort, mask junk, cumulative sums."""
    distances, query_pids, gallery_pids, query_camids, gallery_camids = _validate(
        distmat, query_pids, gallery_pids, query_camids, gallery_camids, max_rank, protocol, ap
    )
    max_rank = int(max_rank)
    cmc_counts = np.zeros(max_rank, dtype=np.int64)
    rank1_count = rank5_count = 0
    per_query_ap = np.full(distances.shape[0], np.nan)
    for query in range(distances.shape[0]):
        order = np.argsort(distances[query], kind="stable")
        pids, camids = gallery_pids[order], gallery_camids[order]
        junk = _junk_mask(pids, camids, query_pids[query], query_camids[query], protocol)
        matches = pids[~junk] == query_pids[query]
        if not matches.any():
            continue
        first_rank = int(np.argmax(matches))
        cmc_counts += np.arange(max_rank) >= first_rank
        rank1_count += first_rank < 1
        rank5_count += first_rank < 5
        per_query_ap[query] = average_precision(matches, ap)
    valid = ~np.isnan(per_query_ap)
    _check_some_valid(valid)
    num_valid = int(valid.sum())
    return EvaluationResult(
        cmc=_read_only(cmc_counts / num_valid),
        mAP=float(np.mean(per_query_ap[valid])),
        rank1=rank1_count / num_valid,
        rank5=rank5_count / num_valid,
        num_valid_queries=num_valid,
        num_skipped_queries=int((~valid).sum()),
        per_query_ap=_read_only(per_query_ap),
    )


def ranked_matches(
    distmat: Any,
    query_pids: Any,
    gallery_pids: Any,
    query_camids: Any,
    gallery_camids: Any,
    k: int = 10,
    protocol: str = "market",
) -> tuple[np.ndarray, np.ndarray]:
    """The top-k gallery columns of each query with junk removed, and whether each is correct.

    This is the ranked list the metrics are computed on (Figs 4.4, 4.6, 4.9): `indices` (Q, k) are
    gallery columns, `matches` (Q, k) is True where the gallery image shows the query's person.
    Lists shorter than k (a tiny gallery) are padded with index -1 and match False.
    """
    distances, query_pids, gallery_pids, query_camids, gallery_camids = _validate(
        distmat, query_pids, gallery_pids, query_camids, gallery_camids, 1, protocol,
        "noninterpolated",
    )
    k = checks.integer(k, "k", whole_float=True)
    indices = np.full((distances.shape[0], k), -1, dtype=np.int64)
    matches = np.zeros((distances.shape[0], k), dtype=bool)
    for query in range(distances.shape[0]):
        order = np.argsort(distances[query], kind="stable")
        pids, camids = gallery_pids[order], gallery_camids[order]
        junk = _junk_mask(pids, camids, query_pids[query], query_camids[query], protocol)
        kept = order[~junk][:k]
        indices[query, : kept.size] = kept
        matches[query, : kept.size] = gallery_pids[kept] == query_pids[query]
    return indices, matches


def _junk_mask(
    pids: np.ndarray, camids: np.ndarray, query_pid: int, query_camid: int, protocol: str
) -> np.ndarray:
    """Gallery entries removed from a query's list: id -1, and (market) same person, same camera."""
    junk = pids == JUNK_ID
    if protocol == "market":
        junk |= (pids == query_pid) & (camids == query_camid)
    return junk


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_some_valid(valid: np.ndarray) -> None:
    if not valid.any():
        raise ValueError(
            f"none of the {valid.size} queries has a correct match left in the gallery (same "
            "person, and a different camera under protocol 'market'); check the person ids"
        )


def _id_array(name: str, values: Any, length: int, length_name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(
            f"{name} must be 1-D with one entry per {length_name} ({length}), got shape "
            f"{array.shape}"
        )
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _validate(
    distmat: Any,
    query_pids: Any,
    gallery_pids: Any,
    query_camids: Any,
    gallery_camids: Any,
    max_rank: int,
    protocol: str,
    ap: str,
) -> tuple[np.ndarray, ...]:
    distances = np.asarray(distmat)
    if distances.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries, gallery), got shape {distances.shape}")
    if distances.shape[0] == 0 or distances.shape[1] == 0:
        raise ValueError(
            f"distmat needs at least one query and one gallery column: {distances.shape}"
        )
    if not (
        np.issubdtype(distances.dtype, np.floating) or np.issubdtype(distances.dtype, np.integer)
    ):
        raise ValueError(f"distmat must hold real numbers, got dtype {distances.dtype}")
    if not np.issubdtype(distances.dtype, np.floating):
        distances = distances.astype(np.float64)
    finite = np.isfinite(distances)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise ValueError(
            f"distmat has {np.count_nonzero(~finite)} NaN or infinite entries, first at "
            f"(query {row}, gallery {column}): {distances[row, column]}"
        )
    num_queries, num_gallery = distances.shape
    query_pids = _id_array("query_pids", query_pids, num_queries, "distmat row")
    gallery_pids = _id_array("gallery_pids", gallery_pids, num_gallery, "distmat column")
    query_camids = _id_array("query_camids", query_camids, num_queries, "distmat row")
    gallery_camids = _id_array("gallery_camids", gallery_camids, num_gallery, "distmat column")
    if (query_pids < 1).any():
        index = int(np.argmax(query_pids < 1))
        raise ValueError(
            f"query_pids must be person ids >= 1 (0 = distractor, -1 = junk cannot be queries); "
            f"query {index} has {query_pids[index]}"
        )
    checks.integer(max_rank, "max_rank", whole_float=True)
    _check_choice("protocol", protocol, PROTOCOLS)
    _check_choice("ap", ap, AP_MODES)
    return distances, query_pids, gallery_pids, query_camids, gallery_camids
