"""Tests for tripletlib.viz: every figure comes back with the right axes, borders, lines and labels."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tripletlib import viz  # noqa: E402


def tiny_images(count, seed=0, height=32, width=16):
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def border_colours(axes):
    colours = {to_rgba(spine.get_edgecolor()) for spine in axes.spines.values()}
    assert len(colours) == 1, "all four sides of a border have one colour"
    return colours.pop()


def all_text(figure):
    return " ".join(text.get_text() for text in figure.findobj(matplotlib.text.Text))


def test_identities_per_camera_counts_distinct_ids_without_junk_or_distractors():
    metadata = pd.DataFrame(
        {
            "person_id": [1, 1, 1, 2, 3, -1, 0, 0, 2, 5],
            "camera_id": [1, 1, 2, 1, 3, 4, 4, 1, 2, 2],
            "split": ["train"] * 5 + ["gallery"] * 4 + ["query"],
        }
    )
    figure = viz.plot_identities_per_camera(metadata)
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    heights = [patch.get_height() for patch in figure.axes[0].patches]
    # c1: ids {1, 2}; c2: {1, 2, 5}; c3: {3}; c4 holds only junk/distractors -> a bar of 0
    assert heights == [2, 3, 1, 0]
    labels = [tick.get_text() for tick in figure.axes[0].get_xticklabels()]
    assert labels == ["c1", "c2", "c3", "c4"]

    train_only = viz.plot_identities_per_camera(metadata, splits=["train"])
    assert [patch.get_height() for patch in train_only.axes[0].patches] == [2, 1, 1]
    with pytest.raises(ValueError, match="camera_id"):
        viz.plot_identities_per_camera(metadata.drop(columns="camera_id"))
    with pytest.raises(ValueError, match="validation"):
        viz.plot_identities_per_camera(metadata, splits=["validation"])


def test_synthetic_figures_say_so_and_other_datasets_are_named():
    metadata = pd.DataFrame({"person_id": [1, 2], "camera_id": [1, 2]})
    synthetic = viz.plot_identities_per_camera(metadata, dataset="synthetic")
    assert viz.SYNTHETIC_NOTE in all_text(synthetic)
    market = viz.plot_sample_images(tiny_images(2), dataset="Market-1501")
    assert "(Market-1501)" in all_text(market) and viz.SYNTHETIC_NOTE not in all_text(market)
    unlabelled = viz.plot_cmc({"a": np.linspace(0.5, 1.0, 20)})
    assert "synthetic" not in all_text(unlabelled)
    learning = viz.plot_learning_curves(
        {"run": pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.5]})}, dataset="synthetic"
    )
    assert viz.SYNTHETIC_NOTE in all_text(learning)
    with pytest.raises(ValueError, match="dataset"):
        viz.plot_cmc({"a": np.ones(20)}, dataset="")


def test_sample_images_grid_has_one_axes_per_image_with_titles():
    images = tiny_images(5)
    figure = viz.plot_sample_images(images, titles=list("abcde"), columns=3)
    assert len(figure.axes) == 5
    assert [axes.get_title() for axes in figure.axes] == list("abcde")
    assert figure.axes[3].get_subplotspec().rowspan.start == 1  # the 4th image starts row 2
    np.testing.assert_array_equal(figure.axes[2].images[0].get_array(), images[2])
    # float pixels in [0, 255] (what the samplers yield) are rounded to uint8
    floats = viz.plot_sample_images(images.astype(np.float32))
    np.testing.assert_array_equal(floats.axes[0].images[0].get_array(), images[0])

    with pytest.raises(ValueError, match="titles has 2 entries but there are 5 images"):
        viz.plot_sample_images(images, titles=["a", "b"])
    with pytest.raises(ValueError, match=r"\(N, height, width, 3\)"):
        viz.plot_sample_images(images[..., 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        viz.plot_sample_images(images / 255.0)
    with pytest.raises(ValueError, match="columns"):
        viz.plot_sample_images(images, columns=0)


def test_triplets_figure_has_three_columns_and_captions():
    anchor, positive, negative = tiny_images(3, 1), tiny_images(3, 2), tiny_images(3, 3)
    figure = viz.plot_triplets(
        anchor, positive, negative, distances=[[0.1, 2.0], [0.5, 0.6], [1.0, 0.3]], margin=0.2
    )
    assert len(figure.axes) == 9
    assert [axes.get_title() for axes in figure.axes[:3]] == ["anchor", "positive", "negative"]
    captions = [figure.axes[3 * row].get_ylabel() for row in range(3)]
    assert captions[0].startswith("(a) easy") and "d(a,n)=2.000" in captions[0]
    assert captions[1].startswith("(b) semi-hard")
    assert captions[2].startswith("(c) hard")
    np.testing.assert_array_equal(figure.axes[5].images[0].get_array(), negative[1])

    given = viz.plot_triplets(anchor, positive, negative, labels=["x", "y", "z"])
    assert given.axes[6].get_ylabel() == "(c) z"
    with pytest.raises(ValueError, match="same length"):
        viz.plot_triplets(anchor, positive[:2], negative)
    with pytest.raises(ValueError, match=r"distances must have shape \(3, 2\)"):
        viz.plot_triplets(anchor, positive, negative, distances=[0.1, 0.2, 0.3])


def test_ranked_list_borders_are_black_green_red_as_matches_say():
    queries, gallery = tiny_images(2, 4), tiny_images(6, 5)
    ranked = np.array([[3, 0, 5, 1], [2, 4, 1, 0]])
    matches = np.array([[True, False, False, True], [False, True, True, False]])
    figure = viz.plot_ranked_lists(queries, gallery, ranked, matches, k=3, titles=["q0", "q1"])
    assert len(figure.axes) == 2 * (3 + 1)
    by_label = {axes.get_label(): axes for axes in figure.axes}
    for query in range(2):
        assert border_colours(by_label[f"query {query}"]) == to_rgba("black")
        for rank in range(3):
            expected = "green" if matches[query, rank] else "red"
            gallery_axes = by_label[f"query {query} rank {rank + 1}"]
            assert border_colours(gallery_axes) == to_rgba(expected)
            np.testing.assert_array_equal(
                gallery_axes.images[0].get_array(), gallery[ranked[query, rank]]
            )
    assert by_label["query 1"].get_title() == "q1"
    assert figure._suptitle.get_text().startswith("Ranked lists:")
    single = viz.plot_ranked_lists(queries[:1], gallery, ranked[:1], matches[:1], k=3)
    assert single._suptitle.get_text().startswith("Ranked list:")  # one query, one list


@pytest.mark.parametrize(
    ("ranked", "matches", "k", "message"),
    [
        (np.zeros((3, 4), int), np.zeros((3, 4), bool), 3, r"shape \(2, >= 3\)"),
        (np.zeros((2, 2), int), np.zeros((2, 2), bool), 3, "2 columns but k=3"),
        (np.zeros((2, 4), int), np.zeros((2, 3), bool), 3, "matches has shape"),
        (np.full((2, 4), 6), np.zeros((2, 4), bool), 3, r"\[0, 6\)"),
        (np.zeros((2, 4)), np.zeros((2, 4), bool), 3, "integers"),
    ],
)
def test_ranked_lists_reject_inconsistent_input(ranked, matches, k, message):
    with pytest.raises(ValueError, match=message):
        viz.plot_ranked_lists(tiny_images(2), tiny_images(6), ranked, matches, k=k)


def test_cmc_draws_one_line_per_curve_in_percent():
    class Result:  # anything with a .cmc attribute, like evaluation.EvaluationResult
        cmc = np.linspace(0.2, 0.9, 50)

    curves = {"first": np.linspace(0.5, 1.0, 30), "second": Result()}
    figure = viz.plot_cmc(curves, max_rank=20)
    lines = figure.axes[0].get_lines()
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_xdata(), np.arange(1, 21))
    np.testing.assert_allclose(lines[1].get_ydata(), 100 * Result.cmc[:20])
    assert "Rank-1 50.0%" in lines[0].get_label()

    with pytest.raises(ValueError, match="'short' has 5 ranks but max_rank=20"):
        viz.plot_cmc({"short": np.ones(5)})
    with pytest.raises(ValueError, match="not percent"):
        viz.plot_cmc({"percent": np.linspace(50, 100, 20)})
    with pytest.raises(ValueError, match="non-decreasing"):
        viz.plot_cmc({"down": np.linspace(1.0, 0.5, 20)})
    with pytest.raises(ValueError, match="empty"):
        viz.plot_cmc({})


def test_learning_curves_one_panel_per_model_with_validation_when_present():
    histories = {
        "triplet loss": pd.DataFrame(
            {"epoch": [0, 1, 2], "loss": [0.5, 0.1, 0.0], "val_loss": [0.6, 0.3, 0.2]}
        ),
        "lossless triplet loss": pd.DataFrame({"epoch": [0, 1, 2], "loss": [9.0, 8.0, 7.5]}),
    }
    figure = viz.plot_learning_curves(histories)
    assert len(figure.axes) == 2
    assert [len(axes.get_lines()) for axes in figure.axes] == [2, 1]
    assert figure.axes[0].get_title() == "(a) triplet loss"
    np.testing.assert_array_equal(figure.axes[1].get_lines()[0].get_ydata(), [9.0, 8.0, 7.5])
    with pytest.raises(ValueError, match=r"'bad' is missing column\(s\) \['loss'\]"):
        viz.plot_learning_curves({"bad": pd.DataFrame({"epoch": [0]})})


def test_pca_projection_is_hand_derivable_and_deterministic():
    # centred points on the x axis (variance 2) and y axis (variance 0.5): PCA keeps them
    embeddings = np.array([[2.0, 0, 0], [-2, 0, 0], [0, 1, 0], [0, -1, 0]]) + 5.0
    projected = viz.project_2d(embeddings)
    np.testing.assert_allclose(projected, [[2, 0], [-2, 0], [0, 1], [0, -1]], atol=1e-12)
    # a flipped data set keeps the sign convention (largest loading positive)
    np.testing.assert_allclose(viz.project_2d(-embeddings), -projected, atol=1e-12)

    points = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    labels = np.repeat(np.arange(8), 5)
    first = viz.plot_embedding_2d(points, labels, seed=3)
    second = viz.plot_embedding_2d(points, labels, seed=3)
    offsets = first.axes[0].collections[0].get_offsets()
    np.testing.assert_array_equal(offsets, second.axes[0].collections[0].get_offsets())
    np.testing.assert_allclose(offsets, viz.project_2d(points), rtol=1e-6)
    assert len(first.axes[0].get_legend().get_texts()) == 8


def test_embedding_subsample_is_seeded_and_bad_input_is_rejected():
    points = np.random.default_rng(1).normal(size=(30, 4))
    labels = np.arange(30) % 3
    one = viz.plot_embedding_2d(points, labels, seed=7, max_points=10)
    same = viz.plot_embedding_2d(points, labels, seed=7, max_points=10)
    other = viz.plot_embedding_2d(points, labels, seed=8, max_points=10)
    offsets = [figure.axes[0].collections[0].get_offsets() for figure in (one, same, other)]
    assert offsets[0].shape == (10, 2)
    np.testing.assert_array_equal(offsets[0], offsets[1])
    assert not np.array_equal(offsets[0], offsets[2])

    with pytest.raises(ValueError, match="same N points"):
        viz.plot_embedding_2d(points, labels[:-1])
    with pytest.raises(ValueError, match="method must be one of"):
        viz.plot_embedding_2d(points, labels, method="tsne")
    with pytest.raises(ValueError, match=r"D >= 2"):
        viz.project_2d(points[:, :1])


def test_annoy_tradeoff_draws_one_labelled_line_per_n_trees():
    rows = [
        {"size": size, "n_trees": trees, "search_k": search_k, "recall": recall, "query_ms": ms,
         "exact_ms": 0.5}
        for size in ("book", "market")
        for trees, search_k, recall, ms in [
            (10, 2000, 0.9, 0.3), (10, -1, 0.6, 0.1), (50, -1, 0.8, 0.2), (50, 2000, 0.97, 0.4)
        ]
    ]  # fmt: skip
    figure = viz.plot_annoy_tradeoff(rows, highlight=(50, 2000), dataset="synthetic")
    assert len(figure.axes) == 2 and figure.axes[1].get_title() == "(b) market"
    lines = [line for line in figure.axes[0].get_lines() if line.get_label() != "exact search"]
    assert [line.get_label() for line in lines] == ["n_trees = 10", "n_trees = 50"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [0.1, 0.3])  # -1 (fewest nodes) first
    np.testing.assert_array_equal(lines[0].get_ydata(), [0.6, 0.9])
    assert figure.axes[0].get_xscale() == "log"
    assert "-1" in all_text(figure) and "2000" in all_text(figure)  # each point's search_k
    [ring] = figure.axes[0].collections  # the highlighted setting
    np.testing.assert_array_equal(ring.get_offsets(), [[0.4, 0.97]])
    assert "n_trees = 50, search_k = 2000" in all_text(figure)
    assert viz.SYNTHETIC_NOTE in all_text(figure)
    single = viz.plot_annoy_tradeoff(pd.DataFrame(rows[:4]).drop(columns=["size", "exact_ms"]))
    assert len(single.axes) == 1 and len(single.axes[0].get_lines()) == 2

    with pytest.raises(ValueError, match="missing"):
        viz.plot_annoy_tradeoff([{"n_trees": 10}])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        viz.plot_annoy_tradeoff([{**rows[0], "recall": 97.0}])
