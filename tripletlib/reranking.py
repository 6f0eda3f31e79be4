"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), NumPy only.

`k_reciprocal_distances` takes the squared Euclidean distances the library ranks with
(`retrieval.squared_distances`: query x gallery, query x query, gallery x gallery) and returns the
re-ranked (Q, G) distances. With ``d`` the input of one image ``p`` to all Q + G images, scaled
by its largest value (the authors' code), the paper's steps are:

- ``N(p, k)``: the k nearest images of ``p``, ``p`` itself first (the authors' code keeps k + 1);
- ``R(p, k) = {g in N(p, k) : p in N(g, k)}``, the k-reciprocal neighbours;
- ``R*(p, k)``: ``R(p, k)`` joined by ``R(q, k/2)`` of each ``q`` in it that shares more than
  two thirds of its images with ``R(p, k)`` (the paper writes "at least"; the authors' code,
  followed here, "more than"; ``k/2`` rounded half to even, as the code does);
- ``V_p[g] = exp(-d(p, g))`` for ``g`` in ``R*(p, k)``, else 0; the code divides by the sum;
- local query expansion: ``V_p`` replaced by the mean of ``V`` over ``N(p, k2)``;
- Jaccard distance ``d_J(p, g) = 1 - sum_j min(V_p[j], V_g[j]) / sum_j max(V_p[j], V_g[j])``;
- final distance ``d*(p, g) = (1 - lambda) d_J(p, g) + lambda d(p, g)``.

The authors' code and torchreid's ``re_ranking`` square their input first; this function equals
them called with plain Euclidean distances. Everything is vectorised over rows, the (Q + G)^2
matrix is never built: the neighbour lists are the k nearest of each row, ``V`` is sparse (at most
a few hundred images per row), and the Jaccard sums run over the images two rows share.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tripletlib import checks, retrieval

K1, K2, LAMBDA_VALUE = 20, 6, 0.3  # the paper's settings for Market-1501
SETTINGS = {"k1": K1, "k2": K2, "lambda_value": LAMBDA_VALUE}
_ROW_CHUNK = 1024
_QUERY_CHUNK = 256


def k_reciprocal_distances(
    query_gallery: Any,
    query_query: Any,
    gallery_gallery: Any,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA_VALUE,
) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from squared Euclidean (Q, G), (Q, Q) and (G, G) ones.

    ``k1`` is the paper's k (20 on Market-1501), ``k2`` the size of the local query expansion
    (6; 1 turns it off), ``lambda_value`` the weight of the original distance (0.3). ``k1 + 1``
    and ``k2`` may not exceed the Q + G images. Ties in a ranked list go to the lower index
    (queries first, then gallery), so the result is a pure function of the inputs.
    """
    qg, qq, gg = _check_inputs(query_gallery, query_query, gallery_gallery)
    num_queries, num_gallery = qg.shape
    total = num_queries + num_gallery
    k1, k2, lambda_value = _check_parameters(k1, k2, lambda_value, total)
    half = int(np.around(k1 / 2))
    blocks = _Blocks(qq, qg, gg)
    row_max = blocks.row_max()
    neighbours = blocks.nearest(max(k1 + 1, k2))
    cols, weights = _encode(blocks, neighbours, row_max, k1, half)
    rows, cols, values = _expand(cols, weights, neighbours[:, :k2], total)
    return _combine(rows, cols, values, qg, row_max[:num_queries], lambda_value)


class _Blocks:
    """Rows of the (Q + G)^2 matrix [[qq, qg], [qg^T, gg]] without building it."""

    def __init__(self, qq: np.ndarray, qg: np.ndarray, gg: np.ndarray) -> None:
        self.qq, self.qg, self.gg = qq, qg, gg
        self.num_queries, self.total = qq.shape[0], qq.shape[0] + gg.shape[0]

    def row_chunks(self):
        """Row ranges that stay within the query rows or within the gallery rows."""
        for begin, end in ((0, self.num_queries), (self.num_queries, self.total)):
            for start in range(begin, end, _ROW_CHUNK):
                yield start, min(start + _ROW_CHUNK, end)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Full rows ``start:stop`` (one side of the query / gallery border), a new array."""
        q = self.num_queries
        if stop <= q:
            return np.concatenate([self.qq[start:stop], self.qg[start:stop]], axis=1)
        return np.concatenate(
            [self.qg[:, start - q : stop - q].T, self.gg[start - q : stop - q]], 1
        )

    def values(self, start: int, stop: int, cols: np.ndarray) -> np.ndarray:
        """Entries ``(start + r, cols[r, j])``; columns out of range read as 0."""
        q, g = self.num_queries, self.gg.shape[0]
        rows = np.arange(start, stop)[:, None]
        is_query = cols < q
        query_col, gallery_col = np.minimum(cols, q - 1), np.clip(cols - q, 0, g - 1)
        if stop <= q:
            found = np.where(is_query, self.qq[rows, query_col], self.qg[rows, gallery_col])
        else:
            found = np.where(is_query, self.qg[query_col, rows - q], self.gg[rows - q, gallery_col])
        return np.where(cols < self.total, found, 0.0).astype(np.float32)

    def row_max(self) -> np.ndarray:
        """Largest entry of each row (1 where a row is all zeros, so that scaling is a no-op)."""
        largest = np.concatenate([
            np.maximum(self.qq.max(axis=1), self.qg.max(axis=1)),
            np.maximum(self.qg.max(axis=0), self.gg.max(axis=1)),
        ])  # fmt: skip
        return np.where(largest > 0, largest, 1.0).astype(np.float32)

    def nearest(self, width: int) -> np.ndarray:
        """(Q + G, width) int64: each row's ``width`` nearest columns, ascending, ties by index."""
        result = np.empty((self.total, width), dtype=np.int64)
        for start, stop in self.row_chunks():
            result[start:stop] = retrieval.smallest_per_row(self.rows(start, stop), width)[0]
        return result


def _reciprocal(neighbours: np.ndarray) -> np.ndarray:
    """Mask of ``R(p, k)`` within ``N(p, k)``: ``neighbours[p, j]`` has ``p`` in its own list."""
    own = np.arange(neighbours.shape[0])[:, None, None]
    return (neighbours[neighbours] == own).any(axis=-1)


def _encode(
    blocks: _Blocks, neighbours: np.ndarray, row_max: np.ndarray, k1: int, half: int
) -> tuple[np.ndarray, np.ndarray]:
    """``V`` (before the query expansion) as padded rows: columns (the sentinel Q + G where a
    slot is empty, columns ascending) and weights summing to 1 over ``R*(p, k1)``."""
    total = neighbours.shape[0]
    near, near_half = neighbours[:, : k1 + 1], neighbours[:, : half + 1]
    in_r, in_r_half = _reciprocal(near), _reciprocal(near_half)
    width = (k1 + 1) * (half + 2)
    cols = np.empty((total, width), dtype=np.int64)
    weights = np.empty((total, width), dtype=np.float32)
    for start, stop in blocks.row_chunks():
        own, own_mask = near[start:stop], in_r[start:stop]  # R(p, k1)
        theirs, their_mask = near_half[own], in_r_half[own]  # R(q, k1/2) of each q in N(p, k1)
        shared = (theirs[..., None] == own[:, None, None, :]) & own_mask[:, None, None, :]
        shared = (shared.any(axis=-1) & their_mask).sum(axis=-1)
        accepted = own_mask & (3 * shared > 2 * their_mask.sum(axis=-1))
        joined = np.concatenate([
            np.where(own_mask, own, total),
            np.where(accepted[..., None] & their_mask, theirs, total).reshape(len(own), -1),
        ], axis=1)  # fmt: skip
        joined.sort(axis=1)
        joined[:, 1:][joined[:, 1:] == joined[:, :-1]] = total  # each image once
        joined.sort(axis=1)
        kernel = np.exp(-blocks.values(start, stop, joined) / row_max[start:stop, None])
        kernel[joined == total] = 0.0
        cols[start:stop], weights[start:stop] = joined, kernel / kernel.sum(axis=1, keepdims=True)
    return cols, weights


def _expand(
    cols: np.ndarray, weights: np.ndarray, expansion: np.ndarray, total: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local query expansion: ``V_p`` <- mean of ``V_q`` over ``q`` in ``N(p, k2)``; returns ``V``
    as (row, column, value) triplets sorted by column, then row."""
    k2 = expansion.shape[1]
    keys, values = [], []
    for start in range(0, total, _ROW_CHUNK):
        stop = min(start + _ROW_CHUNK, total)
        rows = np.arange(start, stop)[:, None]
        if k2 == 1:
            chunk_cols, chunk_values = cols[start:stop], weights[start:stop]
        else:
            chunk_cols = cols[expansion[start:stop]].reshape(stop - start, -1)
            chunk_values = weights[expansion[start:stop]].reshape(stop - start, -1) / k2
        used = chunk_cols < total
        key = (chunk_cols * total + rows)[used]  # column-major: column first, then row
        unique, inverse = np.unique(key, return_inverse=True)
        keys.append(unique)
        values.append(np.bincount(inverse, weights=chunk_values[used]).astype(np.float32))
    key, value = np.concatenate(keys), np.concatenate(values)
    order = np.argsort(key, kind="stable")
    key, value = key[order], value[order]
    return key % total, key // total, value


def _combine(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    qg: np.ndarray,
    query_max: np.ndarray,
    lambda_value: float,
) -> np.ndarray:
    """``(1 - lambda) d_J + lambda d`` for every query and gallery image, ``d`` scaled per row.

    The sum of ``min(V_p[j], V_g[j])`` runs over the columns ``j`` where the query ``p`` has an
    entry, and within such a column over the gallery rows ``g`` that have one; each ``V`` row sums
    to 1, so the sum of the maxima is 2 minus that of the minima.
    """
    num_queries, num_gallery = qg.shape
    total = num_queries + num_gallery
    column_start = np.searchsorted(cols, np.arange(total + 1))
    # Within a column, rows ascend: the gallery rows (>= Q) come last.
    gallery_start = np.searchsorted(cols * total + rows, np.arange(total) * total + num_queries)
    is_query_entry = rows < num_queries
    query_rows, query_cols, query_values = (
        rows[is_query_entry],
        cols[is_query_entry],
        values[is_query_entry],
    )
    by_row = np.argsort(query_rows, kind="stable")
    query_rows, query_cols, query_values = (
        query_rows[by_row],
        query_cols[by_row],
        query_values[by_row],
    )
    row_start = np.searchsorted(query_rows, np.arange(num_queries + 1))
    result = np.empty(qg.shape, dtype=np.float32)
    for start in range(0, num_queries, _QUERY_CHUNK):
        stop = min(start + _QUERY_CHUNK, num_queries)
        entries = slice(row_start[start], row_start[stop])
        owner, column, own_value = query_rows[entries], query_cols[entries], query_values[entries]
        first, last = gallery_start[column], column_start[column + 1]
        counts = last - first
        offsets = np.cumsum(counts) - counts
        pairs = np.repeat(first - offsets, counts) + np.arange(counts.sum())
        minimum = np.minimum(np.repeat(own_value, counts), values[pairs])
        flat = np.repeat(owner - start, counts) * num_gallery + (rows[pairs] - num_queries)
        shared = np.bincount(flat, weights=minimum, minlength=(stop - start) * num_gallery)
        shared = shared.reshape(stop - start, num_gallery)
        jaccard = 1.0 - shared / (2.0 - shared)
        scaled = qg[start:stop] / query_max[start:stop, None]
        result[start:stop] = (1.0 - lambda_value) * jaccard + lambda_value * scaled
    return result


def _check_inputs(qg: Any, qq: Any, gg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("query_gallery", qg), ("query_query", qq), ("gallery_gallery", gg)):
        array = np.asarray(values)
        if array.ndim != 2 or 0 in array.shape:
            raise ValueError(f"{name} must be a non-empty 2-D distance matrix, got {array.shape}")
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise ValueError(f"{name} must hold real distances, got dtype {array.dtype}")
        array = np.asarray(array, dtype=np.float32)
        if not np.isfinite(array).all() or (array < 0).any():
            raise ValueError(f"{name} must hold finite distances >= 0 (squared Euclidean)")
        arrays.append(array)
    qg, qq, gg = arrays
    num_queries, num_gallery = qg.shape
    if qq.shape != (num_queries, num_queries):
        raise ValueError(
            f"query_query must be ({num_queries}, {num_queries}) for a query_gallery of "
            f"{qg.shape}, got {qq.shape}"
        )
    if gg.shape != (num_gallery, num_gallery):
        raise ValueError(
            f"gallery_gallery must be ({num_gallery}, {num_gallery}) for a query_gallery of "
            f"{qg.shape}, got {gg.shape}"
        )
    return qg, qq, gg


def _check_parameters(k1: Any, k2: Any, lambda_value: Any, total: int) -> tuple[int, int, float]:
    for name, value in (("k1", k1), ("k2", k2)):
        checks.integer(value, name)
    if k1 + 1 > total:
        raise ValueError(
            f"k1={k1} needs k1 + 1 = {k1 + 1} images, but queries and gallery hold {total}"
        )
    if k2 > total:
        raise ValueError(f"k2={k2} exceeds the {total} images of queries and gallery")
    if isinstance(lambda_value, bool) or not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
    return int(k1), int(k2), float(lambda_value)
