"""Tests for tripletlib.retrieval: squared distances, exact and Annoy search (Section 3.3.2)."""

import numpy as np
import pytest

from tripletlib.evaluation import evaluate
from tripletlib.retrieval import (
    ANNOY_N_TREES,
    ANNOY_SEARCH_K,
    annoy_distance_matrix,
    annoy_search,
    annoy_tradeoff,
    build_annoy_index,
    clustered_unit_vectors,
    exact_search,
    query_annoy_index,
    recall_at_k,
    squared_distances,
)


def brute_force(queries, gallery):
    difference = queries[:, None, :].astype(np.float64) - gallery[None, :, :]
    return (difference**2).sum(axis=2)


def clustered(seed, num_queries=40, num_gallery=400, dimension=16, num_clusters=20):
    random = np.random.default_rng(seed)
    centres = random.normal(size=(num_clusters, dimension)) * 3

    def sample(count):
        labels = random.integers(0, num_clusters, count)
        return (centres[labels] + 0.1 * random.normal(size=(count, dimension))).astype(np.float32)

    return sample(num_queries), sample(num_gallery)


def test_squared_distances_hand_values():
    queries = np.array([[0.0, 0.0], [1.0, 1.0]])
    gallery = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
    expected = [[25.0, 2.0, 0.0], [13.0, 0.0, 2.0]]
    result = squared_distances(queries, gallery)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, expected)


def test_squared_distances_match_brute_force_in_any_chunk_size():
    queries, gallery = clustered(0, num_queries=23, num_gallery=31)
    expected = brute_force(queries, gallery)
    for chunk_size in (1, 5, 4096):
        result = squared_distances(queries, gallery, chunk_size=chunk_size)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-3)


def test_squared_distances_never_negative():
    random = np.random.default_rng(1)
    vectors = (random.normal(size=(50, 64)) * 100).astype(np.float32)
    assert squared_distances(vectors, vectors).min() >= 0.0


def test_exact_search_equals_brute_force():
    random = np.random.default_rng(2)
    queries = random.normal(size=(30, 8)).astype(np.float32)
    gallery = random.normal(size=(200, 8)).astype(np.float32)
    indices, distances = exact_search(queries, gallery, k=7, chunk_size=4)
    expected = np.argsort(brute_force(queries, gallery), axis=1, kind="stable")[:, :7]
    assert indices.shape == (30, 7) and indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(
        distances, np.take_along_axis(brute_force(queries, gallery), indices, 1), rtol=1e-4
    )
    assert (np.diff(distances, axis=1) >= 0).all()


def test_exact_search_whole_gallery_and_ties_by_index():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    indices, distances = exact_search(np.zeros((1, 2)), gallery, k=4)
    # Three points tie at distance 1; they follow the gallery order after the exact match.
    np.testing.assert_array_equal(indices, [[3, 0, 1, 2]])
    np.testing.assert_array_equal(distances, [[0.0, 1.0, 1.0, 1.0]])


def test_annoy_recall_is_high_on_clustered_data():
    queries, gallery = clustered(3)
    exact_indices, _ = exact_search(queries, gallery, k=10)
    indices, distances = annoy_search(queries, gallery, k=10, n_trees=10, seed=0)
    assert indices.shape == (40, 10) and indices.dtype == np.int64
    assert recall_at_k(indices, exact_indices, 10) >= 0.95
    # Annoy's distances are squared here, so they equal the exact squared distances.
    expected = np.take_along_axis(brute_force(queries, gallery), indices, axis=1)
    np.testing.assert_allclose(distances, expected, rtol=1e-3, atol=1e-4)
    assert (np.diff(distances, axis=1) >= -1e-5).all()


def test_annoy_is_deterministic_for_a_seed():
    random = np.random.default_rng(4)
    queries = random.normal(size=(20, 12)).astype(np.float32)
    gallery = random.normal(size=(300, 12)).astype(np.float32)
    first = annoy_search(queries, gallery, k=5, n_trees=3, seed=11)
    second = annoy_search(queries, gallery, k=5, n_trees=3, seed=11)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_annoy_angular_on_unit_vectors_gives_squared_euclidean():
    queries, gallery = clustered(5, num_queries=10, num_gallery=100)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    indices, distances = annoy_search(queries, gallery, k=3, metric="angular", n_trees=5)
    expected = np.take_along_axis(brute_force(queries, gallery), indices, axis=1)
    np.testing.assert_allclose(distances, expected, rtol=1e-3, atol=1e-4)


def test_build_and_query_index_separately():
    queries, gallery = clustered(6, num_queries=5, num_gallery=50)
    index = build_annoy_index(gallery, n_trees=5, seed=1)
    assert index.get_n_items() == 50
    indices, _ = query_annoy_index(index, queries, k=2)
    np.testing.assert_array_equal(
        indices, annoy_search(queries, gallery, k=2, n_trees=5, seed=1)[0]
    )
    with pytest.raises(ValueError, match="dimension 3 but the Annoy index has 16"):
        query_annoy_index(index, np.zeros((1, 3)), k=2)


def test_annoy_distance_matrix_ranks_missed_items_after_its_list():
    random = np.random.default_rng(7)
    queries = random.normal(size=(6, 8)).astype(np.float32)
    gallery = random.normal(size=(60, 8)).astype(np.float32)
    matrix = annoy_distance_matrix(queries, gallery, neighbours=5)
    indices, _ = annoy_search(queries, gallery, k=5)
    ranked = np.argsort(matrix, axis=1, kind="stable")
    np.testing.assert_array_equal(ranked[:, :5], indices)  # Annoy's list first, in its order
    for row in range(len(queries)):
        missed = ranked[row, 5:]
        assert sorted(missed) == sorted(set(range(60)) - set(indices[row]))
        assert (np.diff(missed) < 0).any()  # not in gallery order


def test_annoy_metrics_do_not_depend_on_the_gallery_order():
    """Annoy returns 3 of each person's 10 gallery images; the 7 it misses used to follow in file
    order, so on a gallery sorted by person id low ids got an inflated AP (0.40 against 0.08)."""
    random = np.random.default_rng(8)
    centres = random.normal(size=(40, 16)).astype(np.float32) * 5
    gallery_pids = np.repeat(np.arange(1, 41), 10)  # sorted by person id
    gallery = centres[gallery_pids - 1] + 0.1 * random.normal(size=(400, 16)).astype(np.float32)
    query_pids = np.arange(1, 41)
    queries = centres + 0.1 * random.normal(size=(40, 16)).astype(np.float32)

    def annoy_ap(order):
        matrix = annoy_distance_matrix(queries, gallery[order], neighbours=3)
        cameras = np.zeros(40, int), np.ones(400, int)  # no same-camera junk
        return evaluate(matrix, query_pids, gallery_pids[order], *cameras, max_rank=10).per_query_ap

    # Found: 3 of 10 at ranks 1-3; the 7 missed at random places among the other 397, whatever the
    # file order: the first person's AP is no higher in the sorted gallery than in shuffled ones.
    shuffled = np.mean([annoy_ap(random.permutation(400)) for _ in range(5)], axis=0)
    in_order = annoy_ap(np.arange(400))
    assert 0.3 < shuffled.mean() < 0.36
    assert abs(in_order[:4].mean() - shuffled[:4].mean()) < 0.05  # file order gave 0.62 against 0.35


def test_recall_at_k_hand_values():
    approx = np.array([[1, 2, 3], [5, 6, 7]])
    exact = np.array([[3, 4, 1], [5, 6, 7]])
    assert recall_at_k(approx, exact) == pytest.approx((2 / 3 + 1) / 2)
    # k=1: {1} vs {3} and {5} vs {5}
    assert recall_at_k(approx, exact, k=1) == 0.5


@pytest.mark.parametrize(
    "queries, gallery, keywords, message",
    [
        (np.zeros((2, 3)), np.zeros((4, 5)), {}, "queries have dimension 3 but gallery has 5"),
        (np.full((2, 3), np.nan), np.zeros((4, 3)), {}, "queries has 6 NaN"),
        (np.zeros((2, 3)), np.zeros((0, 3)), {}, "gallery must be a non-empty 2-D"),
        (np.zeros(3), np.zeros((4, 3)), {}, "queries must be a non-empty 2-D"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"k": 5}, "k=5 exceeds the gallery size 4"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"k": 0}, "k must be an integer >= 1"),
        (np.zeros((2, 3)), np.zeros((4, 3)), {"k": 2, "chunk_size": 0}, "chunk_size"),
        (np.array([["a"]]), np.zeros((4, 1)), {}, "real numbers"),
    ],
)
def test_exact_search_rejects_bad_input(queries, gallery, keywords, message):
    with pytest.raises(ValueError, match=message):
        exact_search(queries, gallery, **keywords)


def test_squared_distances_and_annoy_reject_bad_input():
    with pytest.raises(ValueError, match="gallery has 1 NaN or infinite values, first in row 2"):
        squared_distances(np.zeros((1, 2)), np.array([[0, 0], [0, 0], [np.inf, 0]]))
    with pytest.raises(ValueError, match="metric must be one of"):
        annoy_search(np.zeros((1, 2)), np.zeros((3, 2)), k=1, metric="hamming")
    with pytest.raises(ValueError, match="n_trees"):
        build_annoy_index(np.zeros((3, 2)), n_trees=0)


def test_recall_at_k_rejects_bad_input():
    with pytest.raises(ValueError, match="same, non-zero number of queries"):
        recall_at_k(np.zeros((2, 3), dtype=int), np.zeros((3, 3), dtype=int))
    with pytest.raises(ValueError, match="k=4 exceeds"):
        recall_at_k(np.zeros((2, 3), dtype=int), np.zeros((2, 3), dtype=int), k=4)
    with pytest.raises(ValueError, match="2-D"):
        recall_at_k(np.zeros(3, dtype=int), np.zeros(3, dtype=int))


def test_exact_search_keeps_the_lowest_gallery_indices_on_a_tie_at_rank_k():
    gallery = np.zeros((50, 4), dtype=np.float32)  # every image at the same distance
    gallery[37] = 0.5  # one nearer: first, then the lowest indices of the 49 tied ones
    indices, _ = exact_search(np.full((2, 4), 0.5, dtype=np.float32), gallery, k=5)
    np.testing.assert_array_equal(indices, [[37, 0, 1, 2, 3]] * 2)


def test_annoy_tradeoff_recall_is_one_when_search_k_covers_every_leaf():
    random = np.random.default_rng(9)
    queries = random.normal(size=(30, 12)).astype(np.float32)  # unstructured: hard for trees
    gallery = random.normal(size=(300, 12)).astype(np.float32)
    settings = [(2, -1), (2, 5), (2, 2 * 300 * 4), (4, -1)]
    rows = annoy_tradeoff(queries, gallery, settings, k=5, seed=3)
    assert [(row["n_trees"], row["search_k"]) for row in rows] == settings
    assert [row["nodes"] for row in rows] == [10, 5, 2400, 20]  # -1 is n_trees * k
    for row in rows:
        assert 0.0 <= row["recall"] <= 1.0
        assert row["build_seconds"] >= 0 and row["query_ms"] > 0 and row["exact_ms"] > 0
    assert rows[2]["recall"] == 1.0  # every leaf inspected: Annoy is an exact search
    assert rows[0]["recall"] < 1.0  # Annoy's default misses some neighbours here
    assert rows[0]["build_seconds"] == rows[1]["build_seconds"]  # one index per n_trees
    exact_indices, _ = exact_search(queries, gallery, k=5)
    approx, _ = annoy_search(queries, gallery, k=5, n_trees=2, search_k=-1, seed=3)
    assert rows[0]["recall"] == recall_at_k(approx, exact_indices, 5)


def test_annoy_tradeoff_recall_is_a_function_of_the_seed():
    queries, gallery = clustered_unit_vectors(40, 500, dimension=16, clusters=20, spread=1.5)
    settings = [(3, -1), (10, 200)]
    first = [row["recall"] for row in annoy_tradeoff(queries, gallery, settings, seed=5)]
    second = [row["recall"] for row in annoy_tradeoff(queries, gallery, settings, seed=5)]
    assert first == second
    with pytest.raises(ValueError, match="settings is empty"):
        annoy_tradeoff(queries, gallery, [])
    with pytest.raises(ValueError, match="search_k must be -1"):
        annoy_tradeoff(queries, gallery, [(3, 0)])
    with pytest.raises(ValueError, match="n_trees"):
        annoy_tradeoff(queries, gallery, [(0, -1)])


def test_clustered_unit_vectors_are_seeded_unit_rows():
    queries, gallery = clustered_unit_vectors(7, 20, dimension=5, clusters=3, seed=2)
    assert queries.shape == (7, 5) and gallery.shape == (20, 5) and gallery.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(gallery, axis=1), 1.0, rtol=1e-6)
    again = clustered_unit_vectors(7, 20, dimension=5, clusters=3, seed=2)
    np.testing.assert_array_equal(gallery, again[1])
    assert not np.array_equal(gallery, clustered_unit_vectors(7, 20, 5, clusters=3, seed=3)[1])
    with pytest.raises(ValueError, match="spread"):
        clustered_unit_vectors(7, 20, spread=-1.0)


def test_annoy_settings_reach_the_distance_matrix():
    queries, gallery = clustered(10, num_queries=8, num_gallery=120)
    matrix = annoy_distance_matrix(queries, gallery, neighbours=5, n_trees=2, search_k=7)
    indices, _ = annoy_search(queries, gallery, k=5, n_trees=2, search_k=7)
    np.testing.assert_array_equal(np.argsort(matrix, axis=1, kind="stable")[:, :5], indices)
    default = annoy_search(queries, gallery, k=5)
    same = annoy_search(queries, gallery, k=5, n_trees=ANNOY_N_TREES, search_k=ANNOY_SEARCH_K)
    np.testing.assert_array_equal(default[0], same[0])
