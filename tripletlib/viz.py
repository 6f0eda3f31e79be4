"""Figures of the thesis (Figs 3.1-3.3, 3.5, 4.4/4.6/4.9, 4.7) and two diagnostics (CMC, 2-D map).

Every function returns a `matplotlib.figure.Figure` built without `pyplot` (no global state, no
`plt.show()`); Jupyter displays it, `figure.savefig(path)` writes it. Pass ``dataset="synthetic"``
and the title says the figure comes from synthetic Market-shaped data and is not a thesis figure.
Images are uint8 ``(N, H, W, 3)`` RGB arrays (float arrays in [0, 255] are accepted and rounded).
Only NumPy, pandas and matplotlib are imported, so this module works with any Keras backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tripletlib import checks

SYNTHETIC_NOTE = "synthetic Market-shaped data — not a thesis figure"
QUERY_BORDER = "black"
CORRECT_BORDER = "green"
WRONG_BORDER = "red"
JUNK_OR_DISTRACTOR_IDS = (-1, 0)
PROJECTION_METHODS = ("pca",)


def _dataset_title(title: str, dataset: str | None) -> str:
    """Append the data source to a title; synthetic data is always labelled as such."""
    if dataset is None:
        return title
    if not isinstance(dataset, str) or not dataset.strip():
        raise ValueError(f"dataset must be a non-empty string or None, got {dataset!r}")
    if dataset.strip().lower() == "synthetic":
        return f"{title}\n({SYNTHETIC_NOTE})"
    return f"{title} ({dataset})"


def _as_images(images: Any, name: str) -> np.ndarray:
    """Return `images` as uint8 (N, H, W, 3); floats must lie in [0, 255] (not [0, 1])."""
    try:
        array = np.asarray(images)
    except ValueError as error:  # ragged list of differently sized images
        raise ValueError(f"{name}: images must all have the same shape ({error})") from error
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (N, height, width, 3), got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty; expected at least one image")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must be uint8 (or real numbers in [0, 255]), got {array.dtype}")
    low, high = float(np.min(array)), float(np.max(array))
    if low < 0 or high > 255:
        raise ValueError(f"{name} values must lie in [0, 255], got [{low:g}, {high:g}]")
    if np.issubdtype(array.dtype, np.floating) and high <= 1.0:
        raise ValueError(
            f"{name} looks like floats in [0, 1]; pass uint8 or float pixels in [0, 255]"
        )
    return np.rint(array).astype(np.uint8)


def _check_titles(titles: Sequence[str] | None, count: int, name: str) -> list[str] | None:
    if titles is None:
        return None
    titles = list(titles)
    if len(titles) != count:
        raise ValueError(f"{name} has {len(titles)} entries but there are {count} images")
    return [str(title) for title in titles]


def _show_image(
    axes: Any, image: np.ndarray, border: str | None = None, width: float = 4.0
) -> None:
    """Draw an image without ticks; a border is drawn on the axes' spines (hidden otherwise)."""
    axes.imshow(image, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        if border is None:
            spine.set_visible(False)
        else:
            spine.set_edgecolor(border)
            spine.set_linewidth(width)


def plot_identities_per_camera(
    metadata: pd.DataFrame,
    *,
    splits: Sequence[str] | None = None,
    dataset: str | None = None,
) -> Figure:
    """Bar chart of the number of distinct identities seen by each camera (Fig. 3.3, Sec. 3.1.1).

    `metadata` has the columns ``person_id, camera_id`` (and ``split`` when `splits` is given) of
    `data.load_market1501`. Junk (-1) and distractor (0) images are not identities and are left
    out; a camera holding only such images still gets a bar of height 0.
    """
    required = ["person_id", "camera_id"] + (["split"] if splits is not None else [])
    missing = [column for column in required if column not in metadata.columns]
    if missing:
        raise ValueError(f"metadata is missing column(s) {missing}; expected {required}")
    if splits is not None:
        unknown = sorted(set(splits) - set(metadata["split"].unique()))
        if unknown:
            raise ValueError(
                f"split(s) {unknown} not in metadata; it has {sorted(metadata['split'].unique())}"
            )
        metadata = metadata[metadata["split"].isin(list(splits))]
    if metadata.empty:
        raise ValueError("metadata has no rows to count")
    cameras = np.sort(metadata["camera_id"].unique())
    identities = metadata[~metadata["person_id"].isin(JUNK_OR_DISTRACTOR_IDS)]
    counts = identities.groupby("camera_id")["person_id"].nunique().reindex(cameras, fill_value=0)

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    bars = axes.bar([f"c{camera}" for camera in cameras], counts.to_numpy(), color="tab:blue")
    axes.bar_label(bars)
    axes.set_xlabel("camera")
    axes.set_ylabel("number of identities")
    split_note = "all splits" if splits is None else ", ".join(splits)
    axes.set_title(_dataset_title(f"Identities per camera ({split_note})", dataset))
    figure.tight_layout()
    return figure


def plot_sample_images(
    images: Any,
    titles: Sequence[str] | None = None,
    columns: int = 6,
    *,
    title: str = "Sample images",
    dataset: str | None = None,
) -> Figure:
    """Grid of sample images (Figs 3.1 and 3.2, Sec. 3.1.1); one axes per image, row by row."""
    images = _as_images(images, "images")
    titles = _check_titles(titles, len(images), "titles")
    columns = checks.integer(columns, "columns", whole_float=True)
    columns = min(int(columns), len(images))
    rows = -(-len(images) // columns)
    figure = Figure(figsize=(1.6 * columns, 3.0 * rows + 0.6))
    for index, image in enumerate(images):
        axes = figure.add_subplot(rows, columns, index + 1)
        _show_image(axes, image)
        if titles is not None:
            axes.set_title(titles[index], fontsize=8)
    figure.suptitle(_dataset_title(title, dataset))
    figure.tight_layout()
    return figure


def plot_triplets(
    anchor: Any,
    positive: Any,
    negative: Any,
    labels: Sequence[str] | None = None,
    *,
    distances: Any = None,
    margin: float | None = None,
    dataset: str | None = None,
) -> Figure:
    """Rows of anchor / positive / negative images (Fig. 3.5, Sec. 3.1.3).

    `labels` captions each row (e.g. "easy", "semi-hard", "hard"). `distances` is an optional
    ``(N, 2)`` array of (d(a,p), d(a,n)) added to the captions; with `margin` and no `labels`, the
    captions are computed by `sampling.classify_triplets` (Section 3.2.3).
    """
    anchor = _as_images(anchor, "anchor")
    positive = _as_images(positive, "positive")
    negative = _as_images(negative, "negative")
    count = len(anchor)
    if len(positive) != count or len(negative) != count:
        raise ValueError(
            f"anchor, positive and negative must have the same length, got "
            f"{count}, {len(positive)}, {len(negative)}"
        )
    labels = _check_titles(labels, count, "labels")
    if distances is not None:
        distances = np.asarray(distances, dtype=float)
        if distances.shape != (count, 2):
            raise ValueError(f"distances must have shape ({count}, 2), got {distances.shape}")
        if labels is None and margin is not None:
            from tripletlib.sampling import classify_triplets

            labels = classify_triplets(distances[:, 0], distances[:, 1], margin).tolist()
    figure = Figure(figsize=(4.5, 2.8 * count + 0.6))
    for row in range(count):
        for column, (name, images) in enumerate(
            (("anchor", anchor), ("positive", positive), ("negative", negative))
        ):
            axes = figure.add_subplot(count, 3, 3 * row + column + 1)
            _show_image(axes, images[row])
            if row == 0:
                axes.set_title(name, fontsize=9)
        caption = f"({chr(ord('a') + row % 26)})" + (
            f" {labels[row]}" if labels is not None else ""
        )
        if distances is not None:
            caption += f"\nd(a,p)={distances[row, 0]:.3f}\nd(a,n)={distances[row, 1]:.3f}"
        figure.axes[3 * row].set_ylabel(caption, fontsize=8)
    figure.suptitle(_dataset_title("Triplets: anchor, positive, negative", dataset))
    figure.tight_layout()
    return figure


def plot_ranked_lists(
    query_images: Any,
    gallery_images: Any,
    ranked_indices: Any,
    matches: Any,
    k: int = 10,
    titles: Sequence[str] | None = None,
    *,
    dataset: str | None = None,
    border_width: float = 4.0,
) -> Figure:
    """Each query beside its k nearest gallery images (Figs 4.4, 4.6 and 4.9, Sec. 4.2).

    The query has a black border, a correct match a green one and a wrong match a red one, as in
    the thesis. `ranked_indices[q, j]` is the gallery row ranked j+1 for query q; `matches[q, j]`
    says whether it has the query's identity. Both need at least `k` columns. Axes are labelled
    ``"query q"`` and ``"query q rank r"`` (see `Axes.get_label`).
    """
    queries = _as_images(query_images, "query_images")
    gallery = _as_images(gallery_images, "gallery_images")
    ranked = np.asarray(ranked_indices)
    matched = np.asarray(matches)
    k = checks.integer(k, "k", whole_float=True)
    k = int(k)
    if ranked.ndim != 2 or ranked.shape[0] != len(queries):
        raise ValueError(
            f"ranked_indices must have shape ({len(queries)}, >= {k}) for {len(queries)} queries, "
            f"got {ranked.shape}"
        )
    if ranked.shape[1] < k:
        raise ValueError(f"ranked_indices has {ranked.shape[1]} columns but k={k}")
    if matched.shape != ranked.shape:
        raise ValueError(f"matches has shape {matched.shape} but ranked_indices has {ranked.shape}")
    if not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked_indices must be integers, got {ranked.dtype}")
    if matched.dtype != bool and not np.isin(matched, (0, 1)).all():
        raise ValueError("matches must be booleans (or 0/1)")
    shown = ranked[:, :k]
    if shown.min() < 0 or shown.max() >= len(gallery):
        raise ValueError(
            f"ranked_indices must lie in [0, {len(gallery)}) for {len(gallery)} gallery images, "
            f"got [{shown.min()}, {shown.max()}]"
        )
    titles = _check_titles(titles, len(queries), "titles")

    rows, columns = len(queries), k + 1
    figure = Figure(figsize=(1.1 * columns, 2.3 * rows + 0.6))
    for query in range(rows):
        axes = figure.add_subplot(rows, columns, query * columns + 1, label=f"query {query}")
        _show_image(axes, queries[query], QUERY_BORDER, border_width)
        axes.set_title(titles[query] if titles is not None else "query", fontsize=8)
        for rank in range(k):
            axes = figure.add_subplot(
                rows, columns, query * columns + rank + 2, label=f"query {query} rank {rank + 1}"
            )
            border = CORRECT_BORDER if matched[query, rank] else WRONG_BORDER
            _show_image(axes, gallery[shown[query, rank]], border, border_width)
            if query == 0:
                axes.set_title(str(rank + 1), fontsize=8)
    figure.suptitle(
        _dataset_title(
            f"Ranked list{'s' if rows > 1 else ''}: query (black), correct (green), wrong (red)",
            dataset,
        )
    )
    figure.tight_layout()
    return figure


def plot_search(
    query_image: Any, gallery_images: Any, distances: Sequence[float], names: Sequence[str]
) -> Figure:
    """One query (black border) beside its ranked gallery images, each titled with its rank,
    squared distance and name: a search of images without identity labels."""
    query = _as_images(query_image, "query_image")[:1]
    gallery = _as_images(gallery_images, "gallery_images")
    if not len(distances) == len(names) == len(gallery):
        raise ValueError(f"{len(gallery)} images, {len(distances)} distances, {len(names)} names; "
                         "expected one of each per ranked image")  # fmt: skip
    columns = len(gallery) + 1
    figure = Figure(figsize=(1.3 * columns, 3.0))
    axes = figure.add_subplot(1, columns, 1, label="query")
    _show_image(axes, query[0], QUERY_BORDER, 4.0)
    axes.set_title("query", fontsize=8)
    for rank, (image, distance, name) in enumerate(zip(gallery, distances, names, strict=True)):
        axes = figure.add_subplot(1, columns, rank + 2, label=f"rank {rank + 1}")
        _show_image(axes, image, "grey", 2.0)
        axes.set_title(f"{rank + 1}: {distance:.3f}\n{name[:14]}", fontsize=7)
    figure.tight_layout()
    return figure


def plot_cmc(
    curves: Mapping[str, Any], max_rank: int = 20, *, dataset: str | None = None
) -> Figure:
    """Cumulative matching characteristic curves, one line per model (Sec. 4.1).

    Each value is a CMC array of fractions (``cmc[0]`` = Rank-1), or any object with a ``cmc``
    attribute such as `evaluation.EvaluationResult`. Plotted in percent over ranks 1..max_rank.
    """
    if not curves:
        raise ValueError("curves is empty; expected a dict name -> CMC array")
    max_rank = checks.integer(max_rank, "max_rank", whole_float=True)
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    ranks = np.arange(1, int(max_rank) + 1)
    for name, value in curves.items():
        cmc = np.asarray(getattr(value, "cmc", value), dtype=float).reshape(-1)
        if cmc.size < max_rank:
            raise ValueError(f"CMC curve {name!r} has {cmc.size} ranks but max_rank={max_rank}")
        cmc = cmc[: int(max_rank)]
        if np.isnan(cmc).any() or cmc.min() < 0 or cmc.max() > 1:
            raise ValueError(f"CMC curve {name!r} must hold fractions in [0, 1] (not percent)")
        if np.any(np.diff(cmc) < -1e-9):
            raise ValueError(f"CMC curve {name!r} decreases; a CMC curve is non-decreasing")
        axes.plot(
            ranks, 100 * cmc, marker="o", markersize=3, label=f"{name} (Rank-1 {100 * cmc[0]:.1f}%)"
        )
    axes.set_xlabel("rank")
    axes.set_ylabel("matching rate (%)")
    axes.set_xlim(1, max_rank)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title(_dataset_title("CMC curve", dataset))
    figure.tight_layout()
    return figure


def plot_loss_curves(
    margin: float = 0.2,
    positive_distances: Sequence[float] = (0.5, 1.2),
    beta: float = 4.0,
    max_distance: float = 4.0,
    points: int = 200,
) -> Figure:
    """Fig. 3.13 beside Eq. 3.3: each cost as a function of a squared distance in [0, D].

    Left: the triplet loss (`losses.triplet_costs`) against d(a,n) for each d(a,p) in
    `positive_distances`, flat at zero once d(a,n) >= d(a,p) + margin. Right: the two terms of
    the lossless triplet loss (`losses.lossless_triplet_costs`, Eq. 3.6), the associative one
    against x = d(a,p) and the contrastive one against x = d(a,n); neither is ever zero.
    """
    from keras import ops

    from tripletlib import losses

    if not max_distance > 0 or int(points) < 2:
        raise ValueError(f"need max_distance > 0 and points >= 2; got {max_distance!r}, {points!r}")
    distance = np.linspace(0.0, max_distance, int(points)).astype("float32")
    figure = Figure(figsize=(10, 3.5))
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for positive in positive_distances:
        costs = losses.triplet_costs(np.full_like(distance, positive), distance, margin)
        left.plot(distance, ops.convert_to_numpy(costs), label=f"d(a,p) = {positive}")
    left.set(xlabel="d(a,n)", ylabel="triplet loss", title=f"Eq 3.3 (margin {margin})")
    left.legend()
    # One sweep gives both curves: x is d(a,p) for the associative term and d(a,n) for the other.
    associative, contrastive = losses.lossless_triplet_costs(
        distance, distance, beta=beta, max_distance=max_distance
    )
    right.plot(distance, ops.convert_to_numpy(associative), label="associative term, x = d(a,p)")
    right.plot(distance, ops.convert_to_numpy(contrastive), label="contrastive term, x = d(a,n)")
    right.set(xlabel="x", ylim=(0, 6), title=f"Eq 3.6 (D = {max_distance:g}, beta = {beta:g})")
    right.legend()
    figure.tight_layout()
    return figure


def plot_learning_curves(
    histories: Mapping[str, pd.DataFrame], *, dataset: str | None = None
) -> Figure:
    """Training (and validation) loss per epoch, one panel per model (Fig. 4.7, Sec. 4.2.2).

    Each history is a DataFrame with columns ``epoch, loss`` and optionally ``val_loss``, such as
    the `history.csv` that Keras' CSVLogger writes for a run.
    """
    if not histories:
        raise ValueError("histories is empty; expected a dict name -> DataFrame")
    for name, history in histories.items():
        if not isinstance(history, pd.DataFrame):
            raise ValueError(f"history {name!r} must be a pandas DataFrame, got {type(history)}")
        missing = [column for column in ("epoch", "loss") if column not in history.columns]
        if missing:
            raise ValueError(
                f"history {name!r} is missing column(s) {missing}; has {list(history.columns)}"
            )
        if history.empty:
            raise ValueError(f"history {name!r} has no epochs")
    figure = Figure(figsize=(5 * len(histories), 3.8))
    for index, (name, history) in enumerate(histories.items()):
        axes = figure.add_subplot(1, len(histories), index + 1)
        axes.plot(history["epoch"], history["loss"], label="training loss")
        if "val_loss" in history.columns:
            axes.plot(history["epoch"], history["val_loss"], label="validation loss")
        axes.set_xlabel("epoch")
        axes.set_ylabel("loss")
        axes.set_title(f"({chr(ord('a') + index % 26)}) {name}", fontsize=10)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(_dataset_title("Learning curves", dataset))
    figure.tight_layout()
    return figure


def project_2d(embeddings: Any, method: str = "pca") -> np.ndarray:
    """Project ``(N, D)`` embeddings to ``(N, 2)``: PCA by NumPy SVD of the centred data.

    Each principal axis is signed so that its largest-magnitude loading is positive, which makes
    the result independent of the LAPACK build.
    """
    if method not in PROJECTION_METHODS:
        raise ValueError(f"method must be one of {PROJECTION_METHODS}, got {method!r}")
    points = np.asarray(embeddings, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2 or points.shape[1] < 2:
        raise ValueError(f"embeddings must have shape (N >= 2, D >= 2), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("embeddings contain NaN or infinite values")
    centred = points - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    largest = np.argmax(np.abs(axes), axis=1)
    axes = axes * np.sign(axes[np.arange(len(axes)), largest])[:, None]
    return centred @ axes.T


def plot_embedding_2d(
    embeddings: Any,
    labels: Any,
    method: str = "pca",
    seed: int = 0,
    *,
    max_points: int | None = None,
    dataset: str | None = None,
) -> Figure:
    """Scatter of a 2-D projection of the embedding space, coloured by identity.

    With `max_points`, a seeded random subset of that many points is projected and drawn (same seed
    -> same subset). The scatter's offsets equal `project_2d` of the points drawn.
    """
    points = np.asarray(embeddings)
    labels = np.asarray(labels).reshape(-1)
    if points.ndim != 2 or len(labels) != len(points):
        raise ValueError(
            f"embeddings {points.shape} and labels ({len(labels)}) must describe the same N points"
        )
    if max_points is not None:
        max_points = checks.integer(max_points, "max_points", 2, whole_float=True)
        if max_points < len(points):
            chosen = np.sort(
                np.random.default_rng(seed).choice(len(points), int(max_points), replace=False)
            )
            points, labels = points[chosen], labels[chosen]
    projected = project_2d(points, method=method)
    unique_labels, codes = np.unique(labels, return_inverse=True)
    figure = Figure(figsize=(6, 5))
    axes = figure.add_subplot()
    colours = 10 if len(unique_labels) <= 10 else 20  # distinct colours; beyond 20 they repeat
    scatter = axes.scatter(
        projected[:, 0],
        projected[:, 1],
        c=codes % colours,
        cmap=f"tab{colours}",
        vmin=0,
        vmax=colours - 1,
        s=12,
    )
    if len(unique_labels) <= 10:  # one colour per identity: label the legend with the ids
        handles, _ = scatter.legend_elements()
        axes.legend(handles, [str(label) for label in unique_labels], title="identity", fontsize=8)
    axes.set_xlabel(f"{method.upper()} 1")
    axes.set_ylabel(f"{method.upper()} 2")
    title = (
        f"Embedding space, {method.upper()} ({len(points)} points, {len(unique_labels)} identities)"
    )
    axes.set_title(_dataset_title(title, dataset))
    figure.tight_layout()
    return figure


def occlusion_figure(
    images: Any,
    maps_by_model: Mapping[str, Any],
    titles: Sequence[str] | None = None,
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
    dataset: str | None = None,
) -> Figure:
    """What each embedder looks at: rows = query images, columns = the image, then one
    occlusion-sensitivity overlay per model (`tripletlib.occlusion`, Zeiler and Fergus 2014).

    `maps_by_model` maps a column title ("untrained", "trained", ...) to one (H, W) map per image,
    e.g. ``occlusion_sensitivity(...).maps``. Each map is scaled to its own maximum (negative
    values, patches whose occlusion helped, are shown as 0), so models of different embedding
    scales can be compared by where they look, not by how much; `titles` label the rows.
    """
    images = _as_images(images, "images")
    count, height, width = images.shape[:3]
    if not isinstance(maps_by_model, Mapping) or not maps_by_model:
        raise ValueError("maps_by_model must be a non-empty dict of column title -> maps")
    maps = {}
    for name, model_maps in maps_by_model.items():
        array = np.asarray(model_maps, dtype=np.float64)
        if array.shape != (count, height, width):
            raise ValueError(
                f"maps_by_model[{name!r}] must hold {count} maps of {height}x{width} (one per "
                f"image), got shape {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"maps_by_model[{name!r}] holds NaN or infinite values")
        maps[str(name)] = array
    row_titles = _check_titles(titles, count, "titles")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    columns = 1 + len(maps)
    figure = Figure(figsize=(1.3 * columns + 0.4, 2.2 * count * height / (2 * width) + 0.6))
    grid = figure.subplots(count, columns, squeeze=False)
    for row in range(count):
        _show_image(grid[row, 0], images[row])
        if row_titles is not None:
            grid[row, 0].set_ylabel(row_titles[row], fontsize=8)
        for column, (name, model_maps) in enumerate(maps.items(), start=1):
            positive = np.clip(model_maps[row], 0.0, None)
            peak = positive.max()
            scaled = positive / peak if peak > 0 else positive
            _show_image(grid[row, column], images[row])
            grid[row, column].imshow(
                scaled, cmap=colormap, alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear"
            )
            if row == 0:
                grid[row, column].set_title(name, fontsize=9)
    grid[0, 0].set_title("image", fontsize=9)
    figure.suptitle(_dataset_title("Occlusion sensitivity", dataset), fontsize=10)
    figure.tight_layout()
    return figure


def plot_annoy_tradeoff(
    rows: Any,
    *,
    k: int = 10,
    panels: str | None = "size",
    highlight: tuple[int, int] | None = None,
    dataset: str | None = None,
) -> Figure:
    """Annoy's recall@k against exact search versus its query time (Sec. 3.3.2).

    `rows` are `retrieval.annoy_tradeoff`'s (a list of dicts or a DataFrame with ``n_trees,
    search_k, recall, query_ms``; ``exact_ms`` adds a dashed line at exact search's time). One line
    per ``n_trees``, its points in ``search_k`` order and labelled with it (-1, Annoy's own
    ``n_trees * k``, first); query time on a log axis. `highlight` ``(n_trees, search_k)`` rings
    that setting (e.g. the package's default). With a `panels` column in the rows (``size`` by
    default), one panel per value.
    """
    table = pd.DataFrame(list(rows) if not isinstance(rows, pd.DataFrame) else rows)
    required = ["n_trees", "search_k", "recall", "query_ms"]
    missing = [column for column in required if column not in table.columns]
    if table.empty or missing:
        raise ValueError(f"rows must be non-empty with columns {required}; missing {missing}")
    if table["recall"].isna().any() or not table["recall"].between(0, 1).all():
        raise ValueError("recall must hold fractions in [0, 1]")
    if not (table["query_ms"] > 0).all():
        raise ValueError("query_ms must be positive (milliseconds per query)")
    groups = (
        list(table.groupby(panels, sort=False))
        if panels is not None and panels in table.columns
        else [(None, table)]
    )
    figure = Figure(figsize=(5.2 * len(groups), 4))
    for index, (name, group) in enumerate(groups):
        axes = figure.add_subplot(1, len(groups), index + 1)
        for n_trees, line in group.groupby("n_trees", sort=True):
            # -1 means n_trees * k nodes, the fewest: it comes first
            line = line.assign(order=line["search_k"].where(line["search_k"] > 0, 0))
            line = line.sort_values("order")
            axes.plot(line["query_ms"], line["recall"], marker="o", label=f"n_trees = {n_trees}")
            for _, point in line.iterrows():
                axes.annotate(
                    f"{int(point['search_k'])}",
                    (point["query_ms"], point["recall"]),
                    textcoords="offset points", xytext=(3, -9), fontsize=6,
                )  # fmt: skip
        if highlight is not None:
            chosen = group[
                (group["n_trees"] == highlight[0]) & (group["search_k"] == highlight[1])
            ]
            axes.scatter(
                chosen["query_ms"], chosen["recall"], s=180, facecolors="none",
                edgecolors="black", zorder=3,
                label=f"n_trees = {highlight[0]}, search_k = {highlight[1]}",
            )  # fmt: skip
        if "exact_ms" in group.columns:
            axes.axvline(
                float(group["exact_ms"].median()), color="grey", linestyle="--",
                label="exact search",
            )  # fmt: skip
        axes.set_xscale("log")
        axes.set_xlabel("query time (ms per query)")
        axes.set_ylabel(f"recall@{k} against exact search")
        axes.set_ylim(min(0.95, float(group["recall"].min())) - 0.03, 1.01)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="lower right")
        if name is not None:
            axes.set_title(f"({chr(ord('a') + index % 26)}) {name}", fontsize=10)
    title = "Annoy: recall against query time, by n_trees / search_k"
    figure.suptitle(_dataset_title(title, dataset))
    figure.tight_layout()
    return figure
