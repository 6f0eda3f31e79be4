"""Mining: offline hard negatives between the two training iterations (Sections 3.2.3 and 4.2.3),
and what online mining sees in a batch (`batch_triplet_shares`).

After the first iteration on random triplets the thesis embeds every training image, looks up its
10 nearest neighbours in the embedding space and notes the neighbours of a wrong identity: those
are the anchor's hard negatives, from which 30 % of the second iteration's triplets draw their
negative (`sampling.TripletDataset(hard_negatives=..., hard_fraction=0.3)`).

The search here is exact (`retrieval.exact_search`, squared Euclidean distances), over the
training images themselves, with each image excluded from its own neighbour list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tripletlib import checks, retrieval, sampling


@dataclass(frozen=True)
class MiningStats:
    """What one mining pass found (for the book and `mining.json`)."""

    anchors: int  # images searched (every training image is an anchor)
    neighbours: int  # neighbours looked at per anchor
    anchors_with_hard_negatives: int  # anchors with at least one wrong identity among them
    hard_negatives: int  # wrong-identity neighbours over all anchors
    mean_hard_negatives_per_anchor: float  # hard_negatives / anchors
    hard_negative_fraction: float  # hard_negatives / (anchors * neighbours)

    def to_dict(self) -> dict[str, int | float]:
        return dict(self.__dict__)


def _check_inputs(embeddings, person_ids, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.dtype.kind not in "fiu":
        raise ValueError(
            f"embeddings must be a numeric 2-D array (N, D); got shape {embeddings.shape} "
            f"and dtype {embeddings.dtype}"
        )
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("embeddings hold NaN or infinite values; did the training diverge?")
    person_ids = np.asarray(person_ids)
    if person_ids.ndim != 1 or person_ids.dtype.kind not in "iu":
        raise ValueError(
            f"person_ids must be a 1-D integer array; got shape {person_ids.shape} "
            f"and dtype {person_ids.dtype}"
        )
    if len(person_ids) != len(embeddings):
        raise ValueError(
            f"person_ids has {len(person_ids)} entries but embeddings has {len(embeddings)} rows"
        )
    checks.integer(neighbours, "neighbours")
    if not 1 <= neighbours < len(embeddings):
        raise ValueError(
            f"neighbours must be between 1 and the number of other images "
            f"({len(embeddings) - 1}); got {neighbours}"
        )
    return embeddings.astype(np.float32), person_ids.astype(np.int64)


def nearest_neighbours(embeddings, neighbours: int = 10) -> np.ndarray:
    """Rows `(N, neighbours)` of each image's nearest other images, nearest first (self excluded).

    The search asks for one neighbour more than needed and removes the image itself wherever it
    appears in its list (with duplicate embeddings it need not come first); when it does not
    appear at all (a tie pushed it out) the farthest of the extra results is dropped instead.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    count = len(embeddings)
    rows, _ = retrieval.exact_search(embeddings, embeddings, neighbours + 1)
    rows = np.asarray(rows, dtype=np.int64)
    is_self = rows == np.arange(count)[:, None]
    # Keep the first `neighbours` non-self entries of each row.
    keep = ~is_self & (np.cumsum(~is_self, axis=1) <= neighbours)
    return rows[keep].reshape(count, neighbours)


def mine_hard_negatives(embeddings, person_ids, neighbours: int = 10) -> dict[int, np.ndarray]:
    """Hard negatives of every training image (Section 4.2.3).

    For each row, its `neighbours` nearest other images (exact squared-Euclidean search, self
    excluded); the ones of a different identity are that anchor's hard negatives, nearest first.
    Returns `{anchor row: int64 array of negative rows}`, with only the anchors that have at
    least one hard negative (an anchor whose neighbours all share its identity is left out).
    """
    embeddings, person_ids = _check_inputs(embeddings, person_ids, neighbours)
    neighbour_rows = nearest_neighbours(embeddings, neighbours)
    wrong_identity = person_ids[neighbour_rows] != person_ids[:, None]
    return {
        int(anchor): neighbour_rows[anchor][wrong_identity[anchor]]
        for anchor in np.flatnonzero(wrong_identity.any(axis=1))
    }


def mining_stats(
    hard_negatives: dict[int, np.ndarray], anchors: int, neighbours: int
) -> MiningStats:
    """Counts for a `mine_hard_negatives` result over `anchors` images and `neighbours` each."""
    if anchors < 1 or neighbours < 1:
        raise ValueError(f"anchors and neighbours must be >= 1; got {anchors} and {neighbours}")
    total = int(sum(len(rows) for rows in hard_negatives.values()))
    if total > anchors * neighbours:
        raise ValueError(
            f"{total} hard negatives cannot come from {anchors} anchors x {neighbours} neighbours"
        )
    return MiningStats(
        anchors=int(anchors),
        neighbours=int(neighbours),
        anchors_with_hard_negatives=sum(1 for rows in hard_negatives.values() if len(rows)),
        hard_negatives=total,
        mean_hard_negatives_per_anchor=total / anchors,
        hard_negative_fraction=total / (anchors * neighbours),
    )


def batch_triplet_shares(embeddings, person_ids, margin: float = 0.2) -> dict[str, float | int]:
    """What online mining sees in one P x K batch (Section 3.2.3): of every valid triplet (anchor
    and positive of one person, a negative of another; anchor != positive), the share that is
    *active* (positive triplet loss, Eq. 3.3: what the batch-all loss averages over), and the
    shares of hard, semi-hard and easy triplets (`sampling.classify_triplets`), from squared
    distances of `embeddings` (N, D). A network whose embedding puts every person apart has no
    active triplet left: batch-all then learns nothing from the batch."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    person_ids = np.asarray(person_ids)
    if embeddings.ndim != 2 or person_ids.shape != (len(embeddings),):
        raise ValueError(
            f"embeddings must be (N, D) with one person id each; got {embeddings.shape} and "
            f"{person_ids.shape} person ids"
        )
    squared = np.sum(embeddings**2, axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * embeddings @ embeddings.T, 0)
    same = person_ids[:, None] == person_ids[None, :]
    positive_pairs = same & ~np.eye(len(person_ids), dtype=bool)
    anchors, positives = np.nonzero(positive_pairs)
    negatives = ~same[anchors]  # (pairs, N)
    if not len(anchors) or not negatives.any():
        raise ValueError("the batch needs two images of one person and one of another")
    d_ap = np.broadcast_to(distances[anchors, positives][:, None], negatives.shape)[negatives]
    d_an = distances[anchors][negatives]
    labels = sampling.classify_triplets(d_ap, d_an, margin)
    total = int(labels.size)
    return {
        "triplets": total,
        "active": float(np.mean(d_ap - d_an + margin > 0)),
        **{kind: float(np.mean(labels == kind)) for kind in sampling.TRIPLET_CATEGORIES},
    }
