"""Tests for tripletlib.evaluation: hand-computed cases (Section 4.1) and agreement with the loop."""

import json

import numpy as np
import pytest

from tripletlib.evaluation import average_precision, evaluate, evaluate_naive_loop

EVALUATORS = [evaluate, evaluate_naive_loop]
MODES = [
    (protocol, ap) for protocol in ("market", "naive") for ap in ("noninterpolated", "trapezoid")
]

# Fig. 4.2 style ranked list of ten with four true positives, at ranks 1, 3, 6 and 10.
FOUR_HITS = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 1], dtype=bool)


def test_average_precision_four_true_positives_eq_4_2():
    # Eq. 4.2: (1/1 + 2/3 + 3/6 + 4/10) / 4
    assert average_precision(FOUR_HITS) == pytest.approx((1 + 2 / 3 + 3 / 6 + 4 / 10) / 4)
    assert average_precision(FOUR_HITS) == pytest.approx(0.6416667, abs=1e-7)


def test_average_precision_textbook_example():
    # Relevant items at ranks 1, 2, 4, 7: (1 + 1 + 3/4 + 4/7) / 4 = 0.8304
    matches = np.zeros(10, dtype=bool)
    matches[[0, 1, 3, 6]] = True
    assert average_precision(matches) == pytest.approx(0.8303571, abs=1e-7)


def test_average_precision_at_k_truncates_but_divides_by_all_true_positives():
    # AP@5 of the four-hit list: (1/1 + 2/3) / 4
    assert average_precision(FOUR_HITS, k=5) == pytest.approx((1 + 2 / 3) / 4)
    assert average_precision(FOUR_HITS, k=100) == average_precision(FOUR_HITS)


def test_average_precision_trapezoid_compute_ap_m():
    # Trapezoids (previous precision + precision) / 2 at each hit, previous = 1 at rank 1:
    # (1 + 1)/2, (1/2 + 2/3)/2, (2/5 + 3/6)/2, (3/9 + 4/10)/2 -> sum 2.4, / 4 = 0.6
    assert average_precision(FOUR_HITS, ap="trapezoid") == pytest.approx(0.6)


def test_average_precision_perfect_and_single_last():
    assert average_precision(np.array([True, True, False])) == 1.0
    assert average_precision(np.array([False, False, False, True])) == 0.25
    # trapezoid: previous precision 0/3, precision 1/4 -> 0.125
    assert average_precision(np.array([False, False, False, True]), ap="trapezoid") == 0.125


@pytest.mark.parametrize(
    "matches, message",
    [
        (np.array([False, False]), "no true positive"),
        (np.array([1, 0, 1]), "bool"),
        (np.ones((2, 2), dtype=bool), "1-D"),
    ],
)
def test_average_precision_rejects_bad_lists(matches, message):
    with pytest.raises(ValueError, match=message):
        average_precision(matches)


def test_average_precision_rejects_bad_mode_and_k():
    with pytest.raises(ValueError, match="ap must be one of"):
        average_precision(FOUR_HITS, ap="interpolated")
    with pytest.raises(ValueError, match="k must be"):
        average_precision(FOUR_HITS, k=0)


def hand_case():
    """Two queries; gallery columns with a same-camera junk, a distractor and an id -1 junk.

    Query 0 (person 1, camera 1), ranked gallery: same camera (junk), distractor, id -1 (junk),
    camera 2 (match), person 2, camera 3 (match). Query 1 (person 2, camera 2): its only image is
    from camera 2, so it is skipped under the Market protocol.
    """
    distmat = np.array(
        [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]], dtype=np.float32
    )
    gallery_pids = np.array([1, 0, -1, 1, 2, 1])
    gallery_camids = np.array([1, 4, 5, 2, 2, 3])
    return distmat, np.array([1, 2]), gallery_pids, np.array([1, 2]), gallery_camids


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_market_protocol_hand_case(evaluator):
    result = evaluator(*hand_case(), max_rank=6)
    # Query 0 list after junk removal: distractor, match, person 2, match.
    assert result.num_valid_queries == 1
    assert result.num_skipped_queries == 1
    np.testing.assert_array_equal(result.cmc, [0, 1, 1, 1, 1, 1])
    assert result.rank1 == 0.0 and result.rank5 == 1.0
    assert result.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert result.per_query_ap[0] == pytest.approx(0.5)
    assert np.isnan(result.per_query_ap[1])


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_market_protocol_hand_case_trapezoid(evaluator):
    result = evaluator(*hand_case(), ap="trapezoid")
    # hits at positions 2 and 4: ((0/1 + 1/2)/2 + (1/3 + 2/4)/2) / 2
    assert result.mAP == pytest.approx((0.25 + (1 / 3 + 1 / 2) / 2) / 2)


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_naive_protocol_keeps_same_camera_matches(evaluator):
    result = evaluator(*hand_case(), max_rank=3, protocol="naive")
    # Query 0: same-camera match first -> hits at 1, 3, 5; query 1: hit at 2.
    assert result.num_valid_queries == 2 and result.num_skipped_queries == 0
    np.testing.assert_array_equal(result.cmc, [0.5, 1.0, 1.0])
    assert result.rank1 == 0.5
    np.testing.assert_allclose(result.per_query_ap, [(1 + 2 / 3 + 3 / 5) / 3, 1 / 2])
    assert result.mAP == pytest.approx(((1 + 2 / 3 + 3 / 5) / 3 + 1 / 2) / 2)


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_ties_are_broken_by_gallery_column(evaluator):
    # All distances equal: the ranked list is the gallery order with the junk removed.
    distmat = np.zeros((1, 4))
    result = evaluator(distmat, [1], [2, 1, 1, 1], [1], [1, 2, 1, 3], max_rank=3)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1])
    assert result.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_max_rank_beyond_gallery_and_below_five(evaluator):
    long = evaluator(*hand_case(), max_rank=20)
    assert long.cmc.shape == (20,) and long.cmc[-1] == 1.0
    short = evaluator(*hand_case(), max_rank=1)
    assert short.cmc.shape == (1,) and short.rank5 == 1.0


def random_case(seed, num_queries=40, num_gallery=60, num_people=8, num_cameras=3, ties=False):
    """Random ids with junk (-1), distractors (0), and queries whose person is absent."""
    random = np.random.default_rng(seed)
    gallery_pids = random.integers(-1, num_people + 1, num_gallery)
    query_pids = random.integers(1, num_people + 3, num_queries)  # people 9, 10 never in gallery
    query_camids = random.integers(1, num_cameras + 1, num_queries)
    gallery_camids = random.integers(1, num_cameras + 1, num_gallery)
    distmat = random.random((num_queries, num_gallery))
    distmat -= 0.5 * (query_pids[:, None] == gallery_pids[None, :])  # some structure
    if ties:
        distmat = np.round(distmat * 4)
    return distmat, query_pids, gallery_pids, query_camids, gallery_camids


def assert_identical(first, second):
    np.testing.assert_array_equal(first.cmc, second.cmc)
    np.testing.assert_array_equal(first.per_query_ap, second.per_query_ap)
    assert first.mAP == second.mAP
    assert (first.rank1, first.rank5) == (second.rank1, second.rank5)
    assert first.num_valid_queries == second.num_valid_queries
    assert first.num_skipped_queries == second.num_skipped_queries


@pytest.mark.parametrize("protocol, ap", MODES)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_evaluate_equals_loop_on_random_cases(protocol, ap, seed, ties):
    data = random_case(seed, ties=ties)
    fast = evaluate(*data, max_rank=10, protocol=protocol, ap=ap)
    loop = evaluate_naive_loop(*data, max_rank=10, protocol=protocol, ap=ap)
    assert_identical(fast, loop)
    assert fast.num_skipped_queries > 0  # the absent people 9 and 10
    assert 0 < fast.mAP < 1


def test_evaluate_equals_loop_across_query_chunks():
    data = random_case(7, num_queries=600, num_gallery=80, num_people=30)
    assert_identical(evaluate(*data), evaluate_naive_loop(*data))


def test_same_camera_matches_inflate_naive_protocol():
    data = random_case(3)
    assert evaluate(*data, protocol="naive").mAP > evaluate(*data, protocol="market").mAP


def test_perfect_ranking_scores_one():
    pids = np.array([1, 1, 2, 2, 3, 3])
    camids = np.array([1, 2, 1, 2, 1, 2])
    distmat = (pids[:, None] != pids[None, :]).astype(float)
    result = evaluate(distmat, pids, pids, camids, camids, max_rank=2)
    assert result.mAP == 1.0 and result.rank1 == 1.0
    np.testing.assert_array_equal(result.cmc, [1.0, 1.0])


def test_integer_distances_are_accepted():
    distmat, *ids = hand_case()
    result = evaluate((distmat * 10).astype(np.int64), *ids)
    assert result.mAP == pytest.approx(0.5)


def test_to_dict_is_json_ready():
    result = evaluate(*hand_case(), max_rank=3)
    values = result.to_dict(include_per_query_ap=True)
    assert json.loads(json.dumps(values)) == values
    assert values["cmc"] == [0.0, 1.0, 1.0]
    assert values["per_query_ap"] == [pytest.approx(0.5), None]
    assert type(values["mAP"]) is float and type(values["num_valid_queries"]) is int
    assert "per_query_ap" not in result.to_dict()


def test_result_arrays_are_read_only():
    result = evaluate(*hand_case())
    with pytest.raises(ValueError):
        result.cmc[0] = 1.0


def bad_input(**changes):
    distmat, query_pids, gallery_pids, query_camids, gallery_camids = hand_case()
    arguments = dict(
        distmat=distmat,
        query_pids=query_pids,
        gallery_pids=gallery_pids,
        query_camids=query_camids,
        gallery_camids=gallery_camids,
    )
    arguments.update(changes)
    return arguments


NAN_DISTANCES = np.where(np.eye(2, 6, dtype=bool), np.nan, hand_case()[0])


@pytest.mark.parametrize("evaluator", EVALUATORS)
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"query_pids": np.array([1])}, "query_pids must be 1-D with one entry per distmat row"),
        ({"gallery_pids": np.array([1, 2])}, r"gallery_pids .* distmat column \(6\)"),
        ({"gallery_camids": np.ones(7, dtype=int)}, "gallery_camids"),
        ({"query_camids": np.array([1.5, 2.0])}, "must hold integers"),
        ({"distmat": NAN_DISTANCES}, r"2 NaN or infinite entries, first at \(query 0"),
        ({"distmat": np.full((2, 6), np.inf)}, "infinite"),
        (
            {
                "distmat": np.zeros((2, 0)),
                "gallery_pids": np.array([], dtype=int),
                "gallery_camids": np.array([], dtype=int),
            },
            "at least one query and one gallery",
        ),
        ({"distmat": np.zeros(6)}, "2-D"),
        ({"max_rank": 0}, "max_rank must be an integer >= 1"),
        ({"max_rank": 2.5}, "max_rank"),
        ({"protocol": "cuhk03"}, "protocol must be one of"),
        ({"ap": "11-point"}, "ap must be one of"),
        ({"query_pids": np.array([1, 0])}, "query 1 has 0"),
        ({"query_pids": np.array([-1, 2])}, "query 0 has -1"),
    ],
)
def test_bad_input_raises_clear_value_error(evaluator, changes, message):
    with pytest.raises(ValueError, match=message):
        evaluator(**bad_input(**changes))


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_no_valid_query_raises(evaluator):
    with pytest.raises(ValueError, match="none of the 2 queries has a correct match"):
        evaluator(**bad_input(query_pids=np.array([7, 8])))
    with pytest.raises(ValueError, match="none of the 1 queries"):
        evaluator(np.zeros((1, 2)), [1], [-1, -1], [1], [1, 2])


def test_ranked_matches_drops_junk_and_flags_correct_matches():
    from tripletlib.evaluation import ranked_matches

    # one query (person 7, camera 1); gallery ordered by distance 0..4
    distmat = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])
    gallery_pids = np.array([7, -1, 3, 7, 0])  # same-camera 7 (junk), junk, wrong, right, distractor
    gallery_camids = np.array([1, 2, 2, 3, 4])
    indices, matches = ranked_matches(distmat, [7], gallery_pids, [1], gallery_camids, k=3)
    assert indices.tolist() == [[2, 3, 4]]
    assert matches.tolist() == [[False, True, False]]
    naive_indices, naive_matches = ranked_matches(
        distmat, [7], gallery_pids, [1], gallery_camids, k=3, protocol="naive"
    )
    assert naive_indices.tolist() == [[0, 2, 3]]
    assert naive_matches.tolist() == [[True, False, True]]


def test_ranked_matches_pads_short_lists():
    from tripletlib.evaluation import ranked_matches

    indices, matches = ranked_matches(np.array([[0.5, 0.1]]), [2], [5, 2], [1], [2, 3], k=4)
    assert indices.tolist() == [[1, 0, -1, -1]]
    assert matches.tolist() == [[True, False, False, False]]


def test_evaluate_embeddings_is_evaluate_on_squared_distances():
    from types import SimpleNamespace

    from tripletlib.evaluation import evaluate_embeddings
    from tripletlib.retrieval import squared_distances

    rng = np.random.default_rng(0)
    query_embeddings, gallery_embeddings = rng.normal(size=(6, 4)), rng.normal(size=(12, 4))
    query = SimpleNamespace(person_ids=np.arange(6) % 3 + 1, camera_ids=np.full(6, 1))
    gallery = SimpleNamespace(person_ids=np.arange(12) % 4 + 1, camera_ids=np.full(12, 2))
    result = evaluate_embeddings(query_embeddings, gallery_embeddings, query, gallery)
    expected = evaluate(
        squared_distances(query_embeddings, gallery_embeddings), query.person_ids,
        gallery.person_ids, query.camera_ids, gallery.camera_ids,
    )  # fmt: skip
    assert result.mAP == expected.mAP and np.array_equal(result.cmc, expected.cmc)
    with pytest.raises(ValueError, match="search"):
        evaluate_embeddings(query_embeddings, gallery_embeddings, query, gallery, search="fast")


def test_evaluate_embeddings_re_rank_is_evaluate_on_k_reciprocal_distances():
    from types import SimpleNamespace

    from tripletlib.evaluation import evaluate_embeddings
    from tripletlib.reranking import k_reciprocal_distances
    from tripletlib.retrieval import squared_distances

    rng = np.random.default_rng(1)
    query_embeddings, gallery_embeddings = rng.normal(size=(8, 4)), rng.normal(size=(24, 4))
    query = SimpleNamespace(person_ids=np.arange(8) % 4 + 1, camera_ids=np.full(8, 1))
    gallery = SimpleNamespace(person_ids=np.arange(24) % 4 + 1, camera_ids=np.full(24, 2))
    result = evaluate_embeddings(query_embeddings, gallery_embeddings, query, gallery, re_rank=True)
    distances = k_reciprocal_distances(
        squared_distances(query_embeddings, gallery_embeddings),
        squared_distances(query_embeddings, query_embeddings),
        squared_distances(gallery_embeddings, gallery_embeddings),
    )
    expected = evaluate(
        distances, query.person_ids, gallery.person_ids, query.camera_ids, gallery.camera_ids
    )
    plain = evaluate_embeddings(query_embeddings, gallery_embeddings, query, gallery)
    assert result.mAP == expected.mAP and np.array_equal(result.cmc, expected.cmc)
    assert result.mAP != plain.mAP
    with pytest.raises(ValueError, match="re_rank needs search='exact'.*got search='annoy'"):
        evaluate_embeddings(
            query_embeddings, gallery_embeddings, query, gallery, search="annoy", re_rank=True
        )


def test_evaluate_embeddings_passes_the_annoy_settings_through():
    from types import SimpleNamespace

    from tripletlib.evaluation import evaluate_embeddings
    from tripletlib.retrieval import annoy_distance_matrix

    rng = np.random.default_rng(1)
    query_embeddings, gallery_embeddings = rng.normal(size=(8, 6)), rng.normal(size=(200, 6))
    query = SimpleNamespace(person_ids=np.arange(8) % 4 + 1, camera_ids=np.full(8, 1))
    gallery = SimpleNamespace(person_ids=np.arange(200) % 5 + 1, camera_ids=np.full(200, 2))
    result = evaluate_embeddings(
        query_embeddings, gallery_embeddings, query, gallery, search="annoy", annoy_neighbours=20,
        annoy_trees=1, annoy_search_k=20,
    )  # fmt: skip
    matrix = annoy_distance_matrix(query_embeddings, gallery_embeddings, 20, n_trees=1, search_k=20)
    expected = evaluate(
        matrix, query.person_ids, gallery.person_ids, query.camera_ids, gallery.camera_ids
    )
    assert result.mAP == expected.mAP and np.array_equal(result.cmc, expected.cmc)
