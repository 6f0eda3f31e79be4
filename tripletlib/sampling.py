"""Batch samplers for training (Sections 3.1.4 and 3.2.3) as Keras ``PyDataset`` objects.

Every sampler of the package lives here: ``TripletDataset`` (offline mining), ``PKDataset``
(online mining), ``ImageBatches`` (unlabelled images, for the label-free start) and
``FixedEpoch`` (validation batches that stay those of epoch 0). ``classify_triplets`` is the one
easy / semi-hard / hard rule of Section 3.2.3.

Every batch is a pure function of ``(seed, epoch, batch index)``: it is drawn with
``np.random.default_rng([seed, epoch, index])``. Reading a batch twice, from any worker thread or
process, or after resuming at an epoch with ``set_epoch``, gives the same batch.

The datasets read rows of an in-memory image array ``uint8 (N, H, W, 3)`` (a memory-mapped
``.npy`` works) and return float32 pixels in [0, 255]; models do their own preprocessing. Junk
(-1) and distractor (0) identities are not training identities: the caller filters them out, and
the datasets raise ``ValueError`` if any are present.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import keras
import numpy as np

from tripletlib import checks

TRIPLET_CATEGORIES = ("easy", "semi-hard", "hard")


def _as_images(images: np.ndarray) -> np.ndarray:
    if not hasattr(images, "ndim") or not hasattr(images, "shape"):
        raise ValueError(f"images must be a NumPy array (N, H, W, 3), got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {tuple(images.shape)}.")
    if images.dtype.kind not in "uif":
        raise ValueError(f"images must hold numeric pixels, got dtype {images.dtype}.")
    if images.shape[0] == 0:
        raise ValueError("images is empty (N = 0).")
    return images


def _as_ids(values, name: str, length: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}.")
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}.")
    if len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries but images has {length} rows.")
    return array.astype(np.int64)


def _check_training_ids(person_ids: np.ndarray) -> None:
    bad_rows = np.flatnonzero(person_ids <= 0)
    if len(bad_rows):
        shown = ", ".join(f"row {r}: {person_ids[r]}" for r in bad_rows[:5])
        raise ValueError(
            f"person_ids holds {len(bad_rows)} junk (-1) or distractor (0) ids ({shown}"
            f"{', ...' if len(bad_rows) > 5 else ''}); filter them out before sampling "
            "(training identities are >= 1)."
        )


def _check_positive_int(value, name: str, allow_none: bool = False) -> None:
    checks.integer(value, name, allow_none=allow_none)


def _check_seed(seed) -> None:
    checks.integer(seed, "seed", 0)


# Keras reads a PyDataset through tf.data under the TensorFlow backend. With one worker (Keras'
# default) it adds `prefetch(AUTOTUNE)`, and destroying that pipeline at the end of `fit` waits for
# tf.data's autotuning thread, which sleeps up to 60 s between rounds, so the same fit took a minute
# longer at random (docs/benchmarks.md, "The wait at the end of fit"). With more than one worker Keras
# feeds the batches from its own threads and turns tf.data's autotuning off. Batches are pure
# functions of (seed, epoch, index), so the threads change no batch.
#
# Only under TensorFlow, though (`loader_workers`). The JAX (and torch) trainers build the model
# from one batch before the first epoch: that starts Keras' OrderedEnqueuer, which submits the
# epoch's batches to its threads, and the `on_epoch_end` that follows stops it, keeping the
# batches read but not yet consumed for "the next run". Every later epoch then serves those stale
# batches first and stops after `len(dataset)`, so it reads batches of the previous epoch (how many
# depends on thread timing) and a resumed `fit` reads other batches than an uninterrupted one.
# Without the enqueuer (one worker) Keras reads `dataset[i]` in order in the main thread, and
# there is no tf.data autotuning to avoid outside TensorFlow.
LOADER_WORKERS = 2


def loader_workers() -> int:
    """Keras worker threads of the library's datasets: ``LOADER_WORKERS`` under the TensorFlow
    backend, 1 (Keras' default, no ``OrderedEnqueuer``) under the others."""
    return LOADER_WORKERS if keras.backend.backend() == "tensorflow" else 1


class Batches(keras.utils.PyDataset):
    """A Keras ``PyDataset`` read by ``loader_workers()`` threads unless ``workers`` is given."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("workers", loader_workers())
        super().__init__(**kwargs)


class _EpochDataset(Batches):
    """Shared epoch bookkeeping: ``set_epoch``, ``on_epoch_end`` and ``__len__``."""

    def __init__(self, seed: int, steps_per_epoch: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = int(seed)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the following batches those of ``epoch`` (e.g. when resuming training)."""
        self.epoch = checks.integer(epoch, "epoch", 0)

    def on_epoch_end(self) -> None:
        """Called by Keras after each epoch: advance to the next epoch's batches."""
        self.epoch += 1

    def _rng(self, index: int) -> np.random.Generator:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"batch index must be an int, got {index!r}.")
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range [0, {len(self)}).")
        return np.random.default_rng([self.seed, self.epoch, int(index)])


class TripletDataset(_EpochDataset):
    """Random (anchor, positive, negative) triplets: the triplet data generator of Section 3.1.4.

    Each batch draws ``batch_size`` anchors uniformly from the images (without replacement within
    the batch when there are enough). For each anchor:

    - positive: a uniformly chosen image of the same identity from ANOTHER camera. Rule for an
      identity seen by one camera only: the positive is another image of that identity from the
      same camera. An identity with a single image is never an anchor (it has no positive) but
      can be a negative.
    - negative: a uniformly chosen image of any other identity, from any camera.

    Offline hard mining, second iteration (Section 4.2.3): ``hard_negatives`` maps anchor rows
    to arrays of negative rows (e.g. wrong identities among the anchor's 10 nearest neighbours).
    The first ``hard_per_batch = floor(hard_fraction * batch_size + 0.5)`` triplets of each batch
    (the thesis: 30 %) use an anchor drawn from those keys and a negative drawn from its list;
    the rest are random triplets as above. Keys whose identity has a single image cannot be
    anchors: they are skipped with a warning and listed in ``skipped_hard_anchor_rows``.

    ``__getitem__(i)`` returns ``((anchor, positive, negative), y)``: float32 pixel arrays
    ``(B, H, W, 3)`` and a dummy target ``y`` of zeros ``(B,)``.
    """

    def __init__(
        self,
        images: np.ndarray,
        person_ids,
        camera_ids,
        batch_size: int = 32,
        steps_per_epoch: int | None = None,
        seed: int = 0,
        hard_negatives: Mapping[int, np.ndarray] | None = None,
        hard_fraction: float = 0.0,
        **kwargs,
    ) -> None:
        self.images = _as_images(images)
        count = self.images.shape[0]
        self.person_ids = _as_ids(person_ids, "person_ids", count)
        self.camera_ids = _as_ids(camera_ids, "camera_ids", count)
        _check_training_ids(self.person_ids)
        _check_positive_int(batch_size, "batch_size")
        _check_positive_int(steps_per_epoch, "steps_per_epoch", allow_none=True)
        _check_seed(seed)
        if steps_per_epoch is None:
            steps_per_epoch = math.ceil(count / batch_size)
        super().__init__(seed=seed, steps_per_epoch=steps_per_epoch, **kwargs)
        self.batch_size = int(batch_size)
        self._index_rows()
        self._set_hard_negatives(hard_negatives, hard_fraction)

    def _index_rows(self) -> None:
        """Sort rows by (person, camera) so that every exclusion is one contiguous block."""
        self._order = np.lexsort((self.camera_ids, self.person_ids))
        sorted_persons = self.person_ids[self._order]
        sorted_cameras = self.camera_ids[self._order]
        person_change = np.r_[True, sorted_persons[1:] != sorted_persons[:-1]]
        camera_change = person_change | np.r_[True, sorted_cameras[1:] != sorted_cameras[:-1]]
        count = len(self._order)

        def blocks(starts_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            starts = np.flatnonzero(starts_mask)
            ends = np.r_[starts[1:], count]
            block_of = np.cumsum(starts_mask) - 1
            return starts[block_of], ends[block_of]

        person_start, person_end = blocks(person_change)
        camera_start, camera_end = blocks(camera_change)
        # Per row (original order): its position in the sorted order and its blocks.
        self._position = np.empty(count, dtype=np.int64)
        self._position[self._order] = np.arange(count)
        self._person_start = np.empty(count, dtype=np.int64)
        self._person_end = np.empty(count, dtype=np.int64)
        self._camera_start = np.empty(count, dtype=np.int64)
        self._camera_end = np.empty(count, dtype=np.int64)
        self._person_start[self._order] = person_start
        self._person_end[self._order] = person_end
        self._camera_start[self._order] = camera_start
        self._camera_end[self._order] = camera_end

        person_size = self._person_end - self._person_start
        if person_size.min() == count:
            raise ValueError(
                f"no valid triplet: all {count} images show one identity "
                f"({self.person_ids[0]}), so there is no negative."
            )
        self.anchor_rows = np.flatnonzero(person_size >= 2)
        if len(self.anchor_rows) == 0:
            raise ValueError(
                f"no valid triplet: each of the {count} identities has a single image, so no "
                "anchor has a positive."
            )

    def _set_hard_negatives(self, hard_negatives, hard_fraction: float) -> None:
        if not 0.0 <= hard_fraction <= 1.0:
            raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction!r}.")
        self.hard_fraction = float(hard_fraction)
        self.hard_per_batch = math.floor(self.hard_fraction * self.batch_size + 0.5)
        self.hard_anchor_rows = np.empty(0, dtype=np.int64)
        self.hard_negatives: dict[int, np.ndarray] = {}
        self.skipped_hard_anchor_rows = np.empty(0, dtype=np.int64)
        if self.hard_fraction > 0 and self.hard_per_batch == 0:
            raise ValueError(
                f"hard_fraction={hard_fraction} of batch_size={self.batch_size} rounds to 0 hard "
                "triplets per batch; raise hard_fraction or batch_size."
            )
        if hard_negatives is None or len(hard_negatives) == 0:
            if self.hard_per_batch > 0:
                raise ValueError(
                    f"hard_fraction={hard_fraction} asks for {self.hard_per_batch} hard triplets "
                    "per batch but no hard_negatives were given."
                )
            return
        if self.hard_fraction == 0.0:
            raise ValueError("hard_negatives were given but hard_fraction is 0.0; pass e.g. 0.3.")
        count = len(self.person_ids)
        anchors_with_positive = set(self.anchor_rows.tolist())
        skipped = []
        for anchor, negatives in hard_negatives.items():
            anchor_row = int(anchor)
            if not 0 <= anchor_row < count:
                raise ValueError(f"hard_negatives key {anchor!r} is not a row in [0, {count}).")
            if anchor_row not in anchors_with_positive:
                skipped.append(anchor_row)
                continue
            rows = np.asarray(negatives)
            if rows.ndim != 1 or len(rows) == 0 or rows.dtype.kind not in "iu":
                raise ValueError(
                    f"hard_negatives[{anchor_row}] must be a non-empty 1-D int array of rows, "
                    f"got {negatives!r}."
                )
            if rows.min() < 0 or rows.max() >= count:
                raise ValueError(f"hard_negatives[{anchor_row}] has rows outside [0, {count}).")
            same = rows[self.person_ids[rows] == self.person_ids[anchor_row]]
            if len(same):
                raise ValueError(
                    f"hard_negatives[{anchor_row}] holds rows {same[:5].tolist()} of the "
                    f"anchor's own identity {self.person_ids[anchor_row]}; negatives must differ."
                )
            self.hard_negatives[anchor_row] = rows.astype(np.int64)
        self.skipped_hard_anchor_rows = np.array(sorted(skipped), dtype=np.int64)
        if skipped:
            warnings.warn(
                f"hard_negatives: skipped {len(skipped)} anchor rows (e.g. {sorted(skipped)[:5]}) "
                "whose identity has a single image, so they have no positive.",
                stacklevel=3,
            )
        if not self.hard_negatives:
            raise ValueError("hard_negatives holds no usable anchor (each has a single image).")
        self.hard_anchor_rows = np.array(sorted(self.hard_negatives), dtype=np.int64)

    def _positives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        person_start = self._person_start[anchors]
        person_size = self._person_end[anchors] - person_start
        camera_start = self._camera_start[anchors]
        camera_size = self._camera_end[anchors] - camera_start
        one_camera = camera_size == person_size
        # Another camera: skip the anchor's camera block. One camera: skip the anchor itself.
        skip_start = np.where(one_camera, self._position[anchors], camera_start)
        skip_size = np.where(one_camera, 1, camera_size)
        offsets = rng.integers(0, person_size - skip_size)
        positions = person_start + offsets
        positions = positions + np.where(positions >= skip_start, skip_size, 0)
        return self._order[positions]

    def _random_negatives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        person_start = self._person_start[anchors]
        person_size = self._person_end[anchors] - person_start
        positions = rng.integers(0, len(self._order) - person_size)
        positions = positions + np.where(positions >= person_start, person_size, 0)
        return self._order[positions]

    def triplet_indices(self, index: int) -> np.ndarray:
        """Rows ``(B, 3)`` of (anchor, positive, negative) for batch ``index`` of this epoch."""
        rng = self._rng(index)
        hard_count = self.hard_per_batch
        random_count = self.batch_size - hard_count
        hard_anchors = rng.choice(
            self.hard_anchor_rows,
            size=hard_count,
            replace=len(self.hard_anchor_rows) < hard_count,
        )
        hard_negatives = np.array(
            [
                self.hard_negatives[int(a)][rng.integers(len(self.hard_negatives[int(a)]))]
                for a in hard_anchors
            ],
            dtype=np.int64,
        )
        random_anchors = rng.choice(
            self.anchor_rows, size=random_count, replace=len(self.anchor_rows) < random_count
        )
        random_negatives = self._random_negatives(random_anchors, rng)
        anchors = np.concatenate([hard_anchors, random_anchors]).astype(np.int64)
        positives = self._positives(anchors, rng)
        negatives = np.concatenate([hard_negatives, random_negatives])
        return np.stack([anchors, positives, negatives], axis=1)

    def __getitem__(self, index: int):
        rows = self.triplet_indices(index)
        anchor, positive, negative = (self.images[rows[:, j]].astype(np.float32) for j in range(3))
        return (anchor, positive, negative), np.zeros(len(rows), dtype=np.float32)


class PKDataset(_EpochDataset):
    """P identities x K images per batch for online mining (Section 3.2.3; thesis: P = K = 8).

    Each batch draws P distinct identities uniformly, then K distinct images of each. An identity
    with fewer than K images contributes all of them, topped up with repeats drawn with
    replacement (an identity with one image gives K copies of it). Rows come grouped by
    identity. ``__getitem__(i)`` returns ``(images float32 (P*K, H, W, 3), labels int32 (P*K,))``.
    """

    def __init__(
        self,
        images: np.ndarray,
        person_ids,
        p: int = 8,
        k: int = 8,
        steps_per_epoch: int | None = None,
        seed: int = 0,
        **kwargs,
    ) -> None:
        self.images = _as_images(images)
        count = self.images.shape[0]
        self.person_ids = _as_ids(person_ids, "person_ids", count)
        _check_training_ids(self.person_ids)
        for value, name in ((p, "p"), (k, "k")):
            _check_positive_int(value, name)
            if value < 2:
                raise ValueError(
                    f"{name} must be at least 2 (a batch needs negatives and positives), "
                    f"got {value}."
                )
        _check_positive_int(steps_per_epoch, "steps_per_epoch", allow_none=True)
        _check_seed(seed)
        self.identities, inverse = np.unique(self.person_ids, return_inverse=True)
        if p > len(self.identities):
            raise ValueError(f"p={p} is larger than the {len(self.identities)} identities.")
        if steps_per_epoch is None:
            steps_per_epoch = math.ceil(count / (p * k))
        super().__init__(seed=seed, steps_per_epoch=steps_per_epoch, **kwargs)
        self.p = int(p)
        self.k = int(k)
        self._rows_of = [np.flatnonzero(inverse == i) for i in range(len(self.identities))]

    def batch_indices(self, index: int) -> np.ndarray:
        """Image rows ``(P*K,)`` of batch ``index`` of this epoch, grouped by identity."""
        rng = self._rng(index)
        chosen = rng.choice(len(self.identities), size=self.p, replace=False)
        batch = []
        for identity in chosen:
            rows = self._rows_of[identity]
            if len(rows) >= self.k:
                batch.append(rng.choice(rows, size=self.k, replace=False))
            else:
                extra = rng.choice(rows, size=self.k - len(rows), replace=True)
                batch.append(np.concatenate([rng.permutation(rows), extra]))
        return np.concatenate(batch).astype(np.int64)

    def __getitem__(self, index: int):
        rows = self.batch_indices(index)
        return self.images[rows].astype(np.float32), self.person_ids[rows].astype(np.int32)


class _DeviceBatches(Batches):
    """What the device-resident samplers share: a host sampler `source` whose epochs and rows
    they follow, and its uint8 images uploaded once as ``device_images``
    (``keras.ops.convert_to_tensor(source.images)`` when not given); `gather` takes rows of them
    on the device as float32 pixels."""

    images_name = "the source's images"  # how the shape error names the source's images

    def __init__(self, source, device_images=None, **kwargs) -> None:
        super().__init__(**kwargs)
        if device_images is None:
            device_images = keras.ops.convert_to_tensor(source.images)
        if tuple(device_images.shape) != tuple(source.images.shape):
            raise ValueError(
                f"device_images has shape {tuple(device_images.shape)}, {self.images_name} "
                f"{tuple(source.images.shape)}."
            )
        self.source = source
        self.device_images = device_images

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        """Make the following batches those of ``epoch`` (see the source's `set_epoch`)."""
        self.source.set_epoch(epoch)

    def on_epoch_end(self) -> None:
        self.source.on_epoch_end()

    def gather(self, rows: np.ndarray):
        """One ``keras.ops.take`` of ``rows`` of the device images, cast to float32."""
        order = keras.ops.convert_to_tensor(rows, dtype="int32")
        return keras.ops.cast(keras.ops.take(self.device_images, order, axis=0), "float32")


class DeviceTripletDataset(_DeviceBatches):
    """The batches of a `TripletDataset` (same seed, same rows) gathered from images on the device.

    ``device_images`` is the dataset's uint8 image array after ``keras.ops.convert_to_tensor``
    (made from ``triplets.images`` when not given), so it is uploaded once; per step only the
    ``(B, 3)`` rows of ``TripletDataset.triplet_indices`` cross from the host, one
    ``keras.ops.take`` gathers the 3B images and casts them to float32 pixels on the device.
    Batches, ``set_epoch`` and ``on_epoch_end`` are those of ``triplets``. (Under TensorFlow
    Keras' PyDataset adapter still routes batches through tf.data on the host.)
    """

    images_name = "the triplets' images"

    def __init__(self, triplets: TripletDataset, device_images=None, **kwargs) -> None:
        if not isinstance(triplets, TripletDataset):
            raise ValueError(f"triplets must be a TripletDataset, got {type(triplets).__name__}.")
        super().__init__(triplets, device_images, **kwargs)
        self.targets = keras.ops.zeros((triplets.batch_size,), dtype="float32")

    @property
    def triplets(self) -> TripletDataset:
        return self.source

    def __getitem__(self, index: int):
        rows = self.triplets.triplet_indices(index)  # (B, 3): anchor, positive, negative
        anchor, positive, negative = keras.ops.split(self.gather(rows.T.reshape(-1)), 3, axis=0)
        return (anchor, positive, negative), self.targets


class DevicePKDataset(_DeviceBatches):
    """The batches of a `PKDataset` (same seed, same rows) gathered from images on the device.

    The online-mining counterpart of `DeviceTripletDataset` (Section 3.2.3's P x K batches):
    ``device_images`` (``keras.ops.convert_to_tensor(pk.images)`` when not given) is uploaded
    once, per step only the ``(P*K,)`` rows of ``PKDataset.batch_indices`` cross from the host,
    and one ``keras.ops.take`` gathers the images as float32 pixels; labels are int32 person ids.
    """

    images_name = "the P x K dataset's images"

    def __init__(self, pk: PKDataset, device_images=None, **kwargs) -> None:
        if not isinstance(pk, PKDataset):
            raise ValueError(f"pk must be a PKDataset, got {type(pk).__name__}.")
        super().__init__(pk, device_images, **kwargs)

    @property
    def pk(self) -> PKDataset:
        return self.source

    def __getitem__(self, index: int):
        rows = self.pk.batch_indices(index)
        labels = keras.ops.convert_to_tensor(self.pk.person_ids[rows].astype(np.int32))
        return self.gather(rows), labels


class ImageBatches(Batches):
    """`steps` batches of `(images float32 (B, H, W, 3), zeros (B,))` without labels.

    Batch i holds `batch_size` distinct images drawn with `np.random.default_rng([seed, i])`: a
    pure function of (seed, i). The zeros are Keras' unused targets (label-free training).
    """

    def __init__(self, images, batch_size: int, steps: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.images = np.asarray(images) if not hasattr(images, "shape") else images
        if self.images.ndim != 4 or len(self.images) < 2:
            raise ValueError(
                f"images must be (N, H, W, 3) with N >= 2; got {tuple(self.images.shape)}"
            )
        for value, name in ((batch_size, "batch_size"), (steps, "steps")):
            checks.integer(value, name)
        _check_seed(seed)
        self.batch_size = min(batch_size, len(self.images))
        self.steps, self.seed = steps, seed

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        rows = np.sort(rng.choice(len(self.images), size=self.batch_size, replace=False))
        return self.images[rows].astype(np.float32), np.zeros(len(rows), np.float32)


class FixedEpoch(Batches):
    """Always the batches of epoch 0 of `dataset`, so that validation losses of all epochs compare."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.dataset = dataset
        dataset.set_epoch(0)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]


def classify_triplets(d_ap, d_an, margin: float) -> np.ndarray:
    """Label triplets "easy", "semi-hard" or "hard" from squared distances (Section 3.2.3).

    The thesis' definitions (after FaceNet): hard ``d_an < d_ap``; semi-hard
    ``d_ap < d_an < d_ap + margin`` (positive loss although the negative is farther); easy: zero
    loss (Eq. 3.3), ``d_an >= d_ap + margin``. A tie ``d_an == d_ap`` is not semi-hard by that
    strict definition, so it counts as hard (the negative is no farther than the positive), at
    margin 0 too. Arrays broadcast; returns a string array of the broadcast shape.
    """
    d_ap = np.asarray(d_ap, dtype=np.float64)
    d_an = np.asarray(d_an, dtype=np.float64)
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}.")
    try:
        d_ap, d_an = np.broadcast_arrays(d_ap, d_an)
    except ValueError as error:
        raise ValueError(
            f"d_ap {d_ap.shape} and d_an {d_an.shape} do not broadcast together."
        ) from error
    if not (np.all(np.isfinite(d_ap)) and np.all(np.isfinite(d_an))):
        raise ValueError("d_ap and d_an must be finite (no NaN or inf).")
    if np.any(d_ap < 0) or np.any(d_an < 0):
        raise ValueError("d_ap and d_an are squared distances and must be >= 0.")
    labels = np.full(d_ap.shape, "semi-hard", dtype="<U9")
    labels[d_an >= d_ap + margin] = "easy"
    labels[d_an <= d_ap] = "hard"  # last: at margin 0 a tie has zero loss and is still hard
    return labels
