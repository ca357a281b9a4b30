"""Overlap-tile prediction of volumes ``(C, Z, Y, X)``: tiled == untiled for known predictors.

The tiler knows nothing about networks: identity, affine and box-filter predictors, whose untiled
result is known exactly, check the 3-D grid, valid-convolution margins, mirrored borders,
per-axis alignment and Gaussian blending.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from napari_unet.core.inference.tiling import (
    BLENDS,
    TileProgress,
    iter_tile_predict,
    plan_tiles,
    tile_predict,
)

MIX = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]], dtype=np.float32)


def crop3(tiles: np.ndarray, margin: int) -> np.ndarray:
    """Drop ``margin`` voxels on each side of the three spatial axes of ``(B, C, d, h, w)``."""
    d, h, w = tiles.shape[-3:]
    return tiles[..., margin : d - margin, margin : h - margin, margin : w - margin]


def affine(margin: int):
    """``2 * mix(tile) + 1`` on the center crop: (B, 2, d, h, w) -> (B, 3, d-2m, h-2m, w-2m)."""

    def predictor(tiles: np.ndarray) -> np.ndarray:
        assert tiles.ndim == 5
        return 2.0 * np.einsum("kc,bczyx->bkzyx", MIX, crop3(tiles, margin)) + 1.0

    return predictor


def box(margin: int):
    """A context-dependent predictor: mean over a (2m+1)^3 window, valid geometry."""

    def predictor(tiles: np.ndarray) -> np.ndarray:
        size = (1, 1, *(2 * margin + 1,) * 3)
        return crop3(ndimage.uniform_filter(tiles.astype(np.float64), size=size), margin)

    return predictor


SHAPES = [(5, 23, 31), (1, 9, 40), (13, 3, 17)]


@pytest.mark.parametrize(
    ("shape", "margin", "overlap", "blend"),
    list(itertools.product(SHAPES, [0, 2], [0, 3], BLENDS)),
)
def test_tiled_volume_equals_untiled_for_affine_predictor(rng, shape, margin, overlap, blend):
    image = rng.normal(size=(2, *shape)).astype(np.float32)
    result = tile_predict(
        image,
        affine(margin),
        out_channels=3,
        tile_shape=(8, 12, 14),
        margin=margin,
        overlap=overlap,
        batch_size=3,
        blend=blend,
    )
    assert result.shape == (3, *shape) and result.dtype == np.float32
    expected = 2.0 * np.einsum("kc,czyx->kzyx", MIX, image) + 1.0
    np.testing.assert_allclose(result, expected, atol=1e-5)


@pytest.mark.parametrize("overlap", [0, 4])
def test_volume_context_is_real_inside_and_mirrored_outside(rng, overlap):
    margin = 2
    image = rng.random((1, 11, 19, 26)).astype(np.float32)
    padded = np.pad(image, ((0, 0), *((margin, margin),) * 3), mode="reflect")
    reference = box(margin)(padded[None])[0]
    result = tile_predict(
        image, box(margin), out_channels=1, tile_shape=(9, 12, 12), margin=margin, overlap=overlap
    )
    plan = plan_tiles(image.shape, tile_shape=(9, 12, 12), margin=margin, spatial_dims=3)
    assert plan.n_tiles > 8  # really tiled along every axis
    np.testing.assert_allclose(result, reference, atol=1e-5)
    region = (slice(3, 9), slice(0, 10), slice(5, 26))
    part = tile_predict(
        image,
        box(margin),
        out_channels=1,
        tile_shape=(9, 12, 12),
        margin=margin,
        overlap=overlap,
        region=region,
    )
    assert part.shape == (1, 6, 10, 21)
    np.testing.assert_allclose(part, reference[(slice(None), *region)], atol=1e-5)


def test_thin_volume_is_mirrored_up_to_the_tile_the_predictor_needs(rng):
    """A Z of 3 below the period of 4 is predicted from a mirrored tile of 4, then cropped."""
    image = rng.random((1, 3, 20, 20)).astype(np.float32)
    seen = []

    def predictor(tiles):
        seen.append(tiles.shape)
        return tiles.copy()

    result = tile_predict(
        image, predictor, out_channels=1, tile_shape=(16, 32, 32), size_multiple=(4, 8, 8)
    )
    np.testing.assert_array_equal(result, image)
    assert seen == [(1, 1, 4, 24, 24)]


def test_anisotropic_alignment_per_axis(rng):
    """Origins align to each axis' own period; a phase-dependent predictor stays seamless."""
    image = rng.random((1, 14, 40, 37)).astype(np.float32)
    periods = (2, 8, 8)

    def phase(tiles):
        z = (np.arange(tiles.shape[2]) % periods[0]).astype(np.float32)
        y = (np.arange(tiles.shape[3]) % periods[1]).astype(np.float32)
        return tiles + z[:, None, None] + 10 * y[:, None]

    kwargs = {"tile_shape": (6, 16, 16), "overlap": 2, "size_multiple": periods}
    result = tile_predict(image, phase, out_channels=1, **kwargs)
    z = (np.arange(14) % 2).astype(np.float32)
    y = (np.arange(40) % 8).astype(np.float32)
    np.testing.assert_allclose(result, image + z[:, None, None] + 10 * y[:, None], atol=1e-5)
    plan = plan_tiles(image.shape, spatial_dims=3, **kwargs)
    for axis, period in zip(plan.axes, periods):
        assert all(origin % period == 0 for origin in axis.origins)
    assert len(plan.axes[0].origins) > 1


def test_gaussian_blending_of_a_tile_dependent_predictor_is_smooth(rng):
    """Tiles that disagree (a constant per tile) blend to a value between their extremes."""
    image = np.zeros((1, 12, 30, 30), np.float32)
    calls = iter(range(10_000))

    def per_tile_constant(tiles):
        return np.stack([np.full(tiles.shape[1:], float(next(calls))) for _ in tiles])

    result = tile_predict(
        image, per_tile_constant, out_channels=1, tile_shape=(8, 16, 16), overlap=4, batch_size=1
    )
    plan = plan_tiles(image.shape, tile_shape=(8, 16, 16), overlap=4, spatial_dims=3)
    assert result.min() >= 0 and result.max() <= plan.n_tiles - 1
    assert np.isfinite(result).all()


def test_volume_progress_and_cancel(rng):
    image = rng.random((1, 10, 20, 20)).astype(np.float32)
    generator = iter_tile_predict(
        image, lambda t: t.copy(), out_channels=1, tile_shape=(4, 8, 8), batch_size=2
    )
    first = next(generator)
    assert isinstance(first, TileProgress) and first.done == 2 and first.total > 2
    generator.close()  # cancel: nothing else runs


def test_plan_rejects_a_region_of_the_wrong_length():
    with pytest.raises(ValueError, match="region"):
        plan_tiles((8, 8, 8), tile_shape=8, region=(slice(0, 4), slice(None)), spatial_dims=3)
    with pytest.raises(ValueError, match="tile_shape"):
        plan_tiles((8, 8, 8), tile_shape=(8, 8), spatial_dims=3)
