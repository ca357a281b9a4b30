"""Overlap-tile prediction: tiled == untiled for predictors whose untiled result is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from napari_unet.core.inference.tiling import (
    BLENDS,
    TileProgress,
    add_tile,
    axis_pieces,
    fill_tile,
    iter_tile_predict,
    plan_tiles,
    tile_predict,
)

#: Channel-mixing linear map C=2 -> K=3.
MIX = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]], dtype=np.float32)


def crop(tiles: np.ndarray, margin: int) -> np.ndarray:
    """The valid-convolution geometry: drop ``margin`` pixels on each side."""
    h, w = tiles.shape[-2:]
    return tiles[..., margin : h - margin, margin : w - margin]


def affine(margin: int):
    """Predictor ``2 * mix(tile) + 1`` on the center crop (B, 2, h, w) -> (B, 3, h-2m, w-2m)."""

    def predictor(tiles: np.ndarray) -> np.ndarray:
        return 2.0 * np.einsum("kc,bchw->bkhw", MIX, crop(tiles, margin)) + 1.0

    return predictor


def affine_reference(image: np.ndarray) -> np.ndarray:
    return 2.0 * np.einsum("kc,chw->khw", MIX, image) + 1.0


def box(margin: int):
    """A context-dependent predictor: mean over a (2m+1)^2 window, valid geometry."""

    def predictor(tiles: np.ndarray) -> np.ndarray:
        size = (1, 1, 2 * margin + 1, 2 * margin + 1)
        return crop(ndimage.uniform_filter(tiles.astype(np.float64), size=size), margin)

    return predictor


def box_reference(image: np.ndarray, margin: int) -> np.ndarray:
    """Box filter over the whole image with mirrored context (what the overlap-tile gives)."""
    padded = np.pad(image, ((0, 0), (margin, margin), (margin, margin)), mode="reflect")
    return box(margin)(padded[None])[0]


SHAPES = [(97, 131), (5, 300), (1, 1), (64, 64), (33, 7)]


@pytest.mark.parametrize(
    ("shape", "margin", "overlap", "blend", "batch_size"),
    list(itertools.product(SHAPES, [0, 3], [0, 5], BLENDS, [1, 3])),
)
def test_tiled_equals_untiled_for_affine_predictor(rng, shape, margin, overlap, blend, batch_size):
    image = rng.normal(size=(2, *shape)).astype(np.float32)
    probabilities = tile_predict(
        image,
        affine(margin),
        out_channels=3,
        tile_shape=(24, 30),
        margin=margin,
        overlap=overlap,
        batch_size=batch_size,
        blend=blend,
    )
    assert probabilities.shape == (3, *shape)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, affine_reference(image), atol=1e-5)


@pytest.mark.parametrize("size_multiple", [1, 4, 8])
def test_identity_with_size_multiple_and_tiles_larger_than_image(rng, size_multiple):
    image = rng.random((1, 19, 45)).astype(np.float32)
    for tile in [(16, 16), (200, 300)]:
        result = tile_predict(
            image,
            lambda tiles: tiles.copy(),
            out_channels=1,
            tile_shape=tile,
            overlap=4,
            size_multiple=size_multiple,
        )
        np.testing.assert_allclose(result, image, atol=1e-6)


@pytest.mark.parametrize("margin", [1, 4])
@pytest.mark.parametrize("overlap", [0, 6])
def test_context_is_real_image_inside_and_mirrored_outside(rng, margin, overlap):
    image = rng.random((1, 41, 57)).astype(np.float32)
    reference = box_reference(image, margin)
    result = tile_predict(
        image, box(margin), out_channels=1, tile_shape=20, margin=margin, overlap=overlap
    )
    np.testing.assert_allclose(result, reference, atol=1e-5)
    region = (slice(7, 30), slice(20, 57))
    part = tile_predict(
        image,
        box(margin),
        out_channels=1,
        tile_shape=20,
        margin=margin,
        overlap=overlap,
        region=region,
        batch_size=3,
    )
    assert part.shape == (1, 23, 37)
    np.testing.assert_allclose(part, reference[(slice(None), *region)], atol=1e-5)


def test_single_tile_input_is_the_mirror_padded_image(rng):
    image = rng.random((2, 9, 12)).astype(np.float32)
    seen = []

    def predictor(tiles):
        seen.append(tiles.copy())
        return crop(tiles, 3)

    result = tile_predict(image, predictor, out_channels=2, tile_shape=64, margin=3)
    np.testing.assert_array_equal(result, image)
    (tiles,) = seen
    assert tiles.shape == (1, 2, 15, 18)
    padded = np.pad(image, ((0, 0), (3, 3), (3, 3)), mode="reflect")
    np.testing.assert_array_equal(tiles[0], padded)


def test_tile_origins_are_aligned_to_the_size_multiple(rng):
    """A predictor that is only equivariant to shifts by 8 still gives one seamless result."""
    image = rng.random((1, 50, 70)).astype(np.float32)
    margin, multiple = 2, 8

    def phase_predictor(tiles):
        # Adds the (input-relative) row phase: depends on where the tile starts modulo 8.
        rows = (np.arange(tiles.shape[2]) % multiple).astype(np.float32)
        return crop(tiles + rows[None, None, :, None], margin)

    result = tile_predict(
        image,
        phase_predictor,
        out_channels=1,
        tile_shape=(20, 20),
        margin=margin,
        overlap=3,
        size_multiple=multiple,
    )
    # Output row y of a tile at an aligned origin g is input row y - g + margin: phase (y + m) % 8.
    rows = ((np.arange(50) + margin) % multiple).astype(np.float32)
    expected = image + rows[None, :, None]
    np.testing.assert_allclose(result, expected, atol=1e-5)
    plan = plan_tiles(image.shape, tile_shape=20, margin=margin, overlap=3, size_multiple=8)
    assert all(origin % multiple == 0 for origin in plan.y.origins + plan.x.origins)


def test_plan_covers_region_with_requested_step():
    # 40 rows with overlap 8 need 3 tiles for 100 rows: balanced to 39 rows each (step 31).
    plan = plan_tiles((100, 64), tile_shape=(40, 32), overlap=8)
    assert plan.input_shape == (39, 27)
    assert plan.y.origins == (0, 31, 61)
    assert plan.x.origins == (0, 19, 37)
    assert plan.n_tiles == 9
    assert len(list(plan.tiles())) == 9
    exact = plan_tiles((100, 100), tile_shape=30, margin=5, overlap=0)
    assert exact.output_shape == (20, 20)
    assert exact.y.origins == (0, 20, 40, 60, 80)  # overlap 0 with a margin partitions
    # The benchmark's case: 2048 px, tiles of at most 512, overlap 32, period 16.
    big = plan_tiles((2048, 2048), tile_shape=512, overlap=32, size_multiple=16)
    assert big.n_tiles == 25 and big.input_shape == (448, 448)
    assert big.y.origins == (0, 416, 832, 1248, 1600)
    small = plan_tiles((10, 300), tile_shape=64, size_multiple=16)
    assert small.input_shape == (16, 64)
    region = plan_tiles((100, 100), tile_shape=64, region=(slice(10, 20), slice(None)))
    assert region.region_shape == (10, 100)
    assert region.input_shape == (10, 50)  # two balanced tiles of 50 columns


def test_plan_rejects_bad_geometry():
    with pytest.raises(ValueError, match="margin"):
        plan_tiles((64, 64), tile_shape=10, margin=5)
    with pytest.raises(ValueError, match="overlap"):
        plan_tiles((64, 64), tile_shape=16, overlap=16)
    with pytest.raises(ValueError, match="region"):
        plan_tiles((64, 64), tile_shape=16, region=(slice(5, 5), slice(None)))
    with pytest.raises(ValueError, match="region"):
        plan_tiles((64, 64), tile_shape=16, region=(slice(0, 10, 2), slice(None)))


def test_progress_cancel_and_preallocated_float16_output(rng):
    image = rng.random((2, 40, 40)).astype(np.float32)
    calls = []

    def predictor(tiles):
        calls.append(len(tiles))
        return affine(0)(tiles)

    out = np.full((3, 40, 40), np.nan, dtype=np.float16)
    generator = iter_tile_predict(
        image, predictor, out_channels=3, tile_shape=16, batch_size=3, out=out
    )
    records = []
    while True:
        try:
            records.append(next(generator))
        except StopIteration as stop:
            result = stop.value
            break
    assert result is out
    total = plan_tiles(image.shape, tile_shape=16).n_tiles
    assert records[-1] == TileProgress(done=total, total=total)
    assert [r.done for r in records] == list(itertools.accumulate(calls))
    np.testing.assert_allclose(out, affine_reference(image), atol=2e-2)

    calls.clear()
    cancelled = iter_tile_predict(image, predictor, out_channels=3, tile_shape=16, batch_size=2)
    first = next(cancelled)
    cancelled.close()
    assert first == TileProgress(done=2, total=total)
    assert calls == [2]


def test_bad_predictor_output_and_out_array(rng):
    image = rng.random((1, 20, 20)).astype(np.float32)
    with pytest.raises(ValueError, match="predictor returned shape"):
        tile_predict(image, lambda t: t[:, :, 1:], out_channels=1, tile_shape=8)
    with pytest.raises(ValueError, match="out must be"):
        tile_predict(
            image, lambda t: t, out_channels=1, tile_shape=8, out=np.zeros((1, 5, 5), np.float32)
        )
    with pytest.raises(ValueError, match="blend"):
        tile_predict(image, lambda t: t, out_channels=1, tile_shape=8, blend="cosine")


def test_non_float_input_is_cast_per_tile(rng):
    image = rng.integers(0, 60000, size=(1, 30, 31), dtype=np.uint16)
    result = tile_predict(image, lambda t: t.copy(), out_channels=1, tile_shape=16, overlap=2)
    np.testing.assert_allclose(result, image.astype(np.float32), rtol=1e-6)


def test_a_window_of_tiles_gives_exactly_the_crop_of_the_whole(rng):
    """fill_tile/add_tile on a window (the distributed block path) == the whole slice's crop."""
    image = rng.random((2, 45, 58)).astype(np.float32)
    predictor, margin = affine(3), 3
    plan = plan_tiles(image.shape, tile_shape=(20, 24), margin=margin, overlap=5)
    whole = tile_predict(image, predictor, out_channels=3, tile_shape=(20, 24), margin=3, overlap=5)
    ys, xs = axis_pieces(plan.y, margin, "gaussian"), axis_pieces(plan.x, margin, "gaussian")
    (ry0, ry1), (rx0, rx1) = (21, 40), (27, 51)
    ys = [p for p in ys if p.target.start < ry1 and p.target.stop > ry0]
    xs = [p for p in xs if p.target.start < rx1 and p.target.stop > rx0]
    wy, wx = min(p.source.start for p in ys), min(p.source.start for p in xs)
    assert wy > 0 and wx > 0  # a true window, not the whole slice
    window = image[:, wy:, wx:]
    out = np.zeros((3, ry1 - ry0, rx1 - rx0), np.float32)
    batch = np.empty((1, 2, *plan.input_shape), np.float32)
    for py, px in itertools.product(ys, xs):
        fill_tile(batch[0], window, py, px, lambda d, t: np.copyto(d, t), origin=(wy, wx))
        add_tile(out, predictor(batch)[0], py, px, origin=(ry0, rx0))
    assert np.array_equal(out, whole[:, ry0:ry1, rx0:rx1])
