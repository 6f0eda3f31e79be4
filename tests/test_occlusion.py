"""Occlusion sensitivity against embedders whose answer is known (runs on every Keras backend)."""

from __future__ import annotations

import keras
import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from tripletlib import occlusion, viz

matplotlib.use("Agg")

HEIGHT, WIDTH = 16, 8


def top_left_embedder() -> keras.Model:
    """Embeds the top-left quarter's pixels as they are (8 x 4 x 3 = 96 numbers); sees nothing else."""
    inputs = keras.Input(shape=(HEIGHT, WIDTH, 3))
    quarter = keras.layers.Cropping2D(((0, HEIGHT // 2), (0, WIDTH // 2)))(inputs)
    return keras.Model(inputs, keras.layers.Flatten()(quarter), name="top_left")


@pytest.fixture(scope="module")
def embedder():
    return top_left_embedder()


def flat(value, count=1):
    return np.full((count, HEIGHT, WIDTH, 3), value, dtype=np.uint8)


def test_patch_starts_cover_the_edge():
    np.testing.assert_array_equal(occlusion.patch_starts(16, 4, 4), [0, 4, 8, 12])
    np.testing.assert_array_equal(occlusion.patch_starts(16, 4, 5), [0, 5, 10, 12])
    np.testing.assert_array_equal(occlusion.patch_starts(4, 4, 2), [0])
    with pytest.raises(ValueError, match="a patch of 5 does not fit in 4 pixels"):
        occlusion.patch_starts(4, 5, 1)


def test_non_overlapping_patches_give_the_hand_derived_map(embedder):
    # A flat image of 10 occluded by black 4 x 2 patches: a patch inside the quarter changes
    # 4 * 2 * 3 = 24 embedded numbers by 10, a squared distance of 2,400; elsewhere nothing.
    result = occlusion.occlusion_sensitivity(
        embedder, flat(10, count=2), patch_size=(4, 2), stride=(4, 2), fill=0
    )
    expected_grid = np.zeros((2, 4, 4), np.float32)
    expected_grid[:, :2, :2] = 2400.0
    np.testing.assert_allclose(result.grid, expected_grid, rtol=1e-6)
    expected_map = np.zeros((2, HEIGHT, WIDTH), np.float32)
    expected_map[:, :8, :4] = 2400.0
    np.testing.assert_allclose(result.maps, expected_map, rtol=1e-6)
    assert result.grid.dtype == result.maps.dtype == np.float32
    np.testing.assert_array_equal(result.row_starts, [0, 4, 8, 12])
    np.testing.assert_array_equal(result.column_starts, [0, 2, 4, 6])
    assert result.patch_size == (4, 2)


def test_overlapping_patches_are_zero_where_they_miss_the_quarter(embedder):
    image = np.random.default_rng(0).integers(1, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    result = occlusion.occlusion_sensitivity(
        embedder, image, patch_size=(4, 2), stride=(2, 1), fill="grey", batch_size=5
    )
    assert result.grid.shape == (7, 7) and result.maps.shape == (HEIGHT, WIDTH)  # one image in
    touches = (result.row_starts[:, None] < 8) & (result.column_starts[None, :] < 4)
    assert np.all(result.grid[~touches] == 0)
    assert np.all(result.grid[touches] > 0)
    # a pixel's value is the mean of the patches covering it: zero where none touches the quarter
    assert np.all(result.maps[10:] == 0) and np.all(result.maps[:, 5:] == 0)
    assert np.all(result.maps[:8, :4] > 0)
    # the batch size changes nothing
    again = occlusion.occlusion_sensitivity(
        embedder, image, patch_size=(4, 2), stride=(2, 1), fill="grey", batch_size=64
    )
    np.testing.assert_allclose(again.grid, result.grid, rtol=1e-6)


def test_mean_fill_of_a_flat_image_changes_nothing(embedder):
    result = occlusion.occlusion_sensitivity(embedder, flat(77), patch_size=(4, 4), stride=(4, 4))
    np.testing.assert_array_equal(result.grid, 0.0)


def test_targets_score_the_change_of_the_distance_to_the_true_match(embedder):
    # Target: a black image, at squared distance 96 * 10^2 = 9,600 from the flat image of 10.
    # A black patch in the quarter hides 24 of the 96 numbers: the distance falls by 2,400.
    as_images = occlusion.occlusion_sensitivity(
        embedder, flat(10), patch_size=(4, 2), stride=(4, 2), fill=0, targets=flat(0)
    )
    expected = np.zeros((1, 4, 4), np.float32)
    expected[:, :2, :2] = -2400.0
    np.testing.assert_allclose(as_images.grid, expected, rtol=1e-6)
    as_embeddings = occlusion.occlusion_sensitivity(
        embedder, flat(10), patch_size=(4, 2), stride=(4, 2), fill=0, targets=np.zeros((1, 96))
    )
    np.testing.assert_allclose(as_embeddings.grid, expected, rtol=1e-6)


def test_upsample_grid_averages_the_covering_patches():
    grid = np.array([[[1.0, 2.0], [3.0, 4.0]]])  # 2 x 2 patches of 2 x 2 on a 3 x 3 image
    upsampled = occlusion.upsample_grid(grid, (3, 3), (2, 2), (1, 1))
    expected = [[1.0, 1.5, 2.0], [2.0, 2.5, 3.0], [3.0, 3.5, 4.0]]
    np.testing.assert_allclose(upsampled[0], expected)
    assert upsampled.dtype == np.float32
    with pytest.raises(ValueError, match=r"grid must have shape \(N, 2, 2\)"):
        occlusion.upsample_grid(grid[:, :1], (3, 3), (2, 2), (1, 1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"patch_size": (20, 2)}, "a patch of 20 does not fit in 16 pixels"),
        ({"patch_size": 4}, "patch_size must be two positive integers"),
        ({"stride": (0, 1)}, "stride must be two positive integers"),
        ({"fill": "black"}, "fill must be one of"),
        ({"fill": (0, 300, 0)}, r"RGB triple in \[0, 255\]"),
        ({"fill": (0, 0)}, "fill must be"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"targets": np.zeros((2, 96))}, "targets must be 1 embeddings"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_them(embedder, options, message):
    with pytest.raises(ValueError, match=message):
        occlusion.occlusion_sensitivity(embedder, flat(10), **options)


def test_images_of_the_wrong_shape_are_rejected(embedder):
    with pytest.raises(ValueError, match="images must have shape"):
        occlusion.occlusion_sensitivity(embedder, np.zeros((HEIGHT, WIDTH)))
    with pytest.raises(ValueError, match="to match the embedder"):
        occlusion.occlusion_sensitivity(embedder, np.zeros((1, 8, 8, 3), np.uint8))


def test_occlusion_figure_has_a_row_per_query_and_a_column_per_model(embedder):
    images = np.random.default_rng(1).integers(1, 256, (2, HEIGHT, WIDTH, 3), dtype=np.uint8)
    trained = occlusion.occlusion_sensitivity(embedder, images, patch_size=(4, 2), stride=(4, 2))
    untrained = np.full((2, HEIGHT, WIDTH), -1.0)  # nothing but negative: drawn as all zero
    figure = viz.occlusion_figure(
        images, {"untrained": untrained, "trained": trained.maps}, titles=["q1", "q2"],
        dataset="synthetic",
    )  # fmt: skip
    assert isinstance(figure, Figure)
    axes = figure.axes
    assert len(axes) == 2 * 3
    assert [a.get_title() for a in axes[:3]] == ["image", "untrained", "trained"]
    assert [axes[0].get_ylabel(), axes[3].get_ylabel()] == ["q1", "q2"]
    assert "synthetic" in figure._suptitle.get_text()
    # each overlay is its map scaled to its own maximum, drawn over the image
    image_layer, overlay = axes[5].get_images()
    np.testing.assert_array_equal(image_layer.get_array(), images[1])
    np.testing.assert_allclose(overlay.get_array(), trained.maps[1] / trained.maps[1].max())
    np.testing.assert_array_equal(axes[4].get_images()[1].get_array(), 0.0)


@pytest.mark.parametrize(
    ("maps", "titles", "message"),
    [
        ({}, None, "non-empty dict"),
        ({"trained": np.zeros((1, HEIGHT, WIDTH))}, None, r"must hold 2 maps of 16x8"),
        ({"trained": np.full((2, HEIGHT, WIDTH), np.nan)}, None, "NaN"),
        ({"trained": np.zeros((2, HEIGHT, WIDTH))}, ["only one"], "titles has 1 entries"),
    ],
)
def test_occlusion_figure_rejects_inconsistent_input(maps, titles, message):
    images = np.zeros((2, HEIGHT, WIDTH, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        viz.occlusion_figure(images, maps, titles=titles)
