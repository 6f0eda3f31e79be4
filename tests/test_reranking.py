"""k-reciprocal re-ranking against a plain loop written from the paper's steps (Zhong et al. 2017)."""

import numpy as np
import pytest

from tripletlib import retrieval
from tripletlib.reranking import k_reciprocal_distances


def _points(num_queries, num_gallery, dimension=8, seed=0, people=4):
    """Unit vectors around a few centres (people), so neighbourhoods are not all alike."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, dimension))
    labels = rng.integers(0, people, size=num_queries + num_gallery)
    points = centres[labels] + 0.6 * rng.normal(size=(labels.size, dimension))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points[:num_queries].astype(np.float32), points[num_queries:].astype(np.float32)


def _blocks(queries, gallery):
    """Symmetric squared distances (query x gallery, query x query, gallery x gallery)."""
    full = retrieval.squared_distances(np.vstack([queries, gallery]), np.vstack([queries, gallery]))
    full = (full + full.T) / 2
    np.fill_diagonal(full, 0.0)
    q = len(queries)
    return full[:q, q:], full[:q, :q], full[q:, q:]


def _loop_reference(qg, qq, gg, k1, k2, lambda_value):
    """One image at a time, with Python sets, straight from the paper's definitions."""
    q = qg.shape[0]
    full = np.block([[qq, qg], [qg.T, gg]]).astype(np.float64)
    n = full.shape[0]
    d = full / full.max(axis=1, keepdims=True)  # each row scaled by its largest distance
    order = [sorted(range(n), key=lambda j, i=i: (full[i, j], j)) for i in range(n)]

    def nearest(p, k):  # N(p, k): p itself and its k nearest
        return order[p][: k + 1]

    def reciprocal(p, k):  # R(p, k)
        return {g for g in nearest(p, k) if p in nearest(g, k)}

    half = int(np.around(k1 / 2))
    encoding = np.zeros((n, n))
    for p in range(n):
        r_p = reciprocal(p, k1)
        expanded = set(r_p)
        for candidate in r_p:
            r_c = reciprocal(candidate, half)
            if len(r_c & r_p) > 2 / 3 * len(r_c):
                expanded |= r_c
        for g in expanded:
            encoding[p, g] = np.exp(-d[p, g])
        encoding[p] /= encoding[p].sum()
    expanded_encoding = np.array([encoding[order[p][:k2]].mean(axis=0) for p in range(n)])
    result = np.zeros_like(qg, dtype=np.float64)
    for p in range(q):
        for g in range(qg.shape[1]):
            v_p, v_g = expanded_encoding[p], expanded_encoding[q + g]
            jaccard = 1 - np.minimum(v_p, v_g).sum() / np.maximum(v_p, v_g).sum()
            result[p, g] = (1 - lambda_value) * jaccard + lambda_value * d[p, q + g]
    return result


@pytest.mark.parametrize(
    ("num_queries", "num_gallery", "k1", "k2", "lambda_value"),
    [(6, 30, 20, 6, 0.3), (5, 17, 4, 3, 0.5), (3, 12, 5, 1, 0.0), (4, 9, 3, 2, 0.3)],
)
def test_agrees_with_a_loop_over_the_papers_definitions(
    num_queries, num_gallery, k1, k2, lambda_value
):
    qg, qq, gg = _blocks(*_points(num_queries, num_gallery, seed=num_gallery))
    result = k_reciprocal_distances(qg, qq, gg, k1=k1, k2=k2, lambda_value=lambda_value)
    expected = _loop_reference(qg, qq, gg, k1, k2, lambda_value)
    assert result.shape == (num_queries, num_gallery) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_lambda_one_keeps_each_querys_ranked_list():
    qg, qq, gg = _blocks(*_points(5, 40, seed=1))
    result = k_reciprocal_distances(qg, qq, gg, k1=6, k2=3, lambda_value=1.0)
    np.testing.assert_array_equal(
        np.argsort(result, axis=1, kind="stable"), np.argsort(qg, axis=1, kind="stable")
    )


def test_deterministic_and_changes_the_order():
    qg, qq, gg = _blocks(*_points(8, 60, seed=2))
    first = k_reciprocal_distances(qg, qq, gg, k1=8, k2=3)
    np.testing.assert_array_equal(first, k_reciprocal_distances(qg.copy(), qq, gg, k1=8, k2=3))
    assert not np.array_equal(np.argsort(first, axis=1), np.argsort(qg, axis=1))


def test_jaccard_part_is_a_distance_in_zero_one():
    qg, qq, gg = _blocks(*_points(4, 30, seed=3))
    jaccard = k_reciprocal_distances(qg, qq, gg, k1=6, k2=2, lambda_value=0.0)
    assert (jaccard >= -1e-6).all() and (jaccard <= 1 + 1e-6).all()


def test_refuses_k1_larger_than_the_set_and_bad_values():
    qg, qq, gg = _blocks(*_points(3, 10, seed=4))
    with pytest.raises(ValueError, match=r"k1=13 needs k1 \+ 1 = 14 images, but .* 13"):
        k_reciprocal_distances(qg, qq, gg, k1=13)
    k_reciprocal_distances(qg, qq, gg, k1=12, k2=2)  # k1 + 1 = all 13 images: allowed
    for kwargs, message in (
        ({"k1": 0}, "k1 must be an integer >= 1, got 0"),
        ({"k1": 2.5}, "k1 must be an integer >= 1, got 2.5"),
        ({"k1": 4, "k2": 14}, "k2=14 exceeds the 13 images"),
        ({"k1": 4, "lambda_value": 1.5}, r"lambda_value must be in \[0, 1\], got 1.5"),
    ):
        with pytest.raises(ValueError, match=message):
            k_reciprocal_distances(qg, qq, gg, **kwargs)


def test_refuses_bad_shapes_and_values():
    qg, qq, gg = _blocks(*_points(3, 10, seed=5))
    with pytest.raises(ValueError, match=r"query_query must be \(3, 3\) .* got \(2, 2\)"):
        k_reciprocal_distances(qg, qq[:2, :2], gg, k1=4)
    with pytest.raises(ValueError, match=r"gallery_gallery must be \(10, 10\)"):
        k_reciprocal_distances(qg, qq, gg[:9], k1=4)
    with pytest.raises(ValueError, match="query_gallery must be a non-empty 2-D"):
        k_reciprocal_distances(qg[0], qq, gg, k1=4)
    with pytest.raises(ValueError, match="finite distances >= 0"):
        k_reciprocal_distances(-qg, qq, gg, k1=4)
