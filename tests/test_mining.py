"""Offline hard-negative mining (Sections 3.2.3, 4.2.3) on hand-built embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from tripletlib import mining
from tripletlib.mining import MiningStats, mine_hard_negatives, mining_stats, nearest_neighbours

# Six images on a line; identities 1, 1, 2, 2, 3, 3. Squared distances from row 0:
# 0.01 (row 1), 0.0625 (row 2), 1 (row 3), 1.1025 (row 4), 9 (row 5).
LINE = np.array([[0.0], [0.1], [0.25], [1.0], [1.05], [3.0]], dtype=np.float32)
LINE_IDS = np.array([1, 1, 2, 2, 3, 3])


def as_lists(hard_negatives: dict[int, np.ndarray]) -> dict[int, list[int]]:
    return {anchor: rows.tolist() for anchor, rows in hard_negatives.items()}


def test_two_neighbours_by_hand():
    # Nearest two of each row (worked out from the distances above), wrong identities kept:
    # 0 -> [1, 2] -> [2]; 1 -> [0, 2] -> [2]; 2 -> [1, 0] -> [1, 0]; 3 -> [4, 2] -> [4];
    # 4 -> [3, 2] -> [3, 2]; 5 -> [4, 3] -> [3].
    mined = mine_hard_negatives(LINE, LINE_IDS, neighbours=2)
    assert as_lists(mined) == {0: [2], 1: [2], 2: [1, 0], 3: [4], 4: [3, 2], 5: [3]}
    assert all(rows.dtype == np.int64 for rows in mined.values())


def test_anchors_without_hard_negatives_are_left_out():
    # One neighbour each: 0 -> 1, 1 -> 0 and 5 -> 4 share the identity; 2 -> 1, 3 -> 4, 4 -> 3 do not.
    assert as_lists(mine_hard_negatives(LINE, LINE_IDS, neighbours=1)) == {2: [1], 3: [4], 4: [3]}


def test_self_is_excluded_even_when_it_is_not_first():
    # Rows 0 and 1 coincide: the search lists row 0 before row 1 for both (ties by index).
    embeddings = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0]], dtype=np.float32)
    assert nearest_neighbours(embeddings, 1).tolist() == [[1], [0], [0]]
    mined = mine_hard_negatives(embeddings, np.array([1, 2, 1]), neighbours=1)
    assert as_lists(mined) == {0: [1], 1: [0]}


def test_matches_brute_force_on_random_embeddings():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(40, 4)).astype(np.float32)
    person_ids = rng.integers(1, 8, size=40)
    distances = ((embeddings[:, None, :] - embeddings[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    expected = {}
    for anchor in range(40):
        nearest = np.argsort(distances[anchor], kind="stable")[:5]
        wrong = nearest[person_ids[nearest] != person_ids[anchor]]
        if len(wrong):
            expected[anchor] = wrong.tolist()
    assert as_lists(mine_hard_negatives(embeddings, person_ids, neighbours=5)) == expected


def test_stats_by_hand():
    stats = mining_stats(mine_hard_negatives(LINE, LINE_IDS, neighbours=2), 6, 2)
    # 1 + 1 + 2 + 1 + 2 + 1 = 8 hard negatives among 6 x 2 neighbours.
    assert stats == MiningStats(
        anchors=6,
        neighbours=2,
        anchors_with_hard_negatives=6,
        hard_negatives=8,
        mean_hard_negatives_per_anchor=8 / 6,
        hard_negative_fraction=8 / 12,
    )
    assert stats.to_dict()["hard_negatives"] == 8


def test_stats_reject_impossible_counts():
    with pytest.raises(ValueError, match="cannot come from"):
        mining_stats({0: np.arange(3)}, anchors=1, neighbours=2)


@pytest.mark.parametrize(
    ("embeddings", "person_ids", "neighbours", "message"),
    [
        (LINE, LINE_IDS, 6, "neighbours must be between 1 and"),
        (LINE, LINE_IDS, 0, "neighbours must be an integer >= 1, got 0"),
        (LINE, LINE_IDS, 2.0, "neighbours must be an integer >= 1"),
        (LINE, LINE_IDS[:5], 2, "person_ids has 5 entries"),
        (LINE[:, 0], LINE_IDS, 2, "2-D array"),
        (np.full((6, 1), np.nan), LINE_IDS, 2, "NaN"),
        (LINE, LINE_IDS.astype(float), 2, "integer"),
    ],
)
def test_bad_input_raises(embeddings, person_ids, neighbours, message):
    with pytest.raises(ValueError, match=message):
        mine_hard_negatives(embeddings, person_ids, neighbours)


def test_batch_triplet_shares_by_hand():
    # Two people on a line: 0 at x=0 and x=0.1, 1 at x=1 and x=1.05. Every negative is far:
    # no active triplet at margin 0.2; at margin 2 every triplet is active (semi-hard).
    embeddings = np.array([[0.0], [0.1], [1.0], [1.05]])
    person_ids = np.array([0, 0, 1, 1])
    shares = mining.batch_triplet_shares(embeddings, person_ids, margin=0.2)
    assert shares["triplets"] == 8  # 4 ordered positive pairs x 2 negatives
    assert shares["active"] == 0.0 and shares["easy"] == 1.0
    assert mining.batch_triplet_shares(embeddings, person_ids, margin=2.0)["active"] == 1.0
    # Swap one image: person 0 at 0 and 1.05, person 1 at 1.0 and 0.1: hard triplets appear.
    mixed = mining.batch_triplet_shares(embeddings, np.array([0, 1, 1, 0]), margin=0.2)
    assert mixed["hard"] > 0 and mixed["active"] >= mixed["hard"]
    assert mixed["easy"] + mixed["semi-hard"] + mixed["hard"] == pytest.approx(1.0)


def test_batch_triplet_shares_needs_a_positive_and_a_negative():
    with pytest.raises(ValueError, match="two images of one person"):
        mining.batch_triplet_shares(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="one person id each"):
        mining.batch_triplet_shares(np.zeros((3, 2)), np.array([0, 1]))
