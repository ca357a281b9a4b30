"""Overlap-tile prediction for any array -> array predictor (knows nothing about networks).

Images are ``(C, Y, X)`` or ``(C, Z, Y, X)`` (any number of spatial axes): every rule below is
per axis, and a tile is the product of one piece per axis.

Geometry (per axis; ``m`` = ``margin``, the context a valid-convolution net eats on each side):

- Output tiles of ``tile - 2m`` pixels lie on a grid with step ``output_tile - overlap``; the last
  tile ends at (or just past) the end of the region. Each input tile is its output tile plus ``m``
  pixels of context on each side; context outside the image is filled by mirroring the image
  (the U-Net paper's overlap-tile strategy), context inside the image is the real image, also
  around a ``region``.
- Tile origins are aligned to multiples of ``size_multiple`` in image coordinates (the step is
  rounded down, the last tile rounded up) when the output tile allows it. A network that pools
  ``depth`` times is only shift-equivariant for shifts by ``2**depth``; aligned tiles all see the
  same pooling phase, so for valid-convolution nets the tiled result equals one forward pass over
  the whole mirror-padded image, and a region equals the same crop of the whole prediction.
- An image (or region) smaller than a tile shrinks the tile to the smallest accepted size that
  covers it (``valid_input_shape``, or rounding up to ``size_multiple``); the result is cropped.
- Tiles are balanced: ``tile_shape`` is the largest tile; each axis uses the smallest accepted
  tile that needs no more tiles than ``tile_shape`` would, so little compute is spent on overlap
  and on the part of the last tile that sticks out of the image.
- Overlapping outputs are blended with a separable window (``"gaussian"``: sigma = tile / 8,
  clipped at :data:`MIN_WEIGHT` so every pixel gets weight; ``"constant"``: plain mean) and
  normalised by the summed weights. Because the window and the grid are separable, the weight sum
  is a product of 1-D sums (one per axis): it is computed per axis up front and no weight plane
  is stored, so memory grows with the image only by the output array itself.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Generator, Iterator

import numpy as np

from napari_unet.core.generators import run_to_end
from napari_unet.core.inference.tile_pieces import (  # noqa: F401 (importable from here)
    MIN_WEIGHT,
    Piece,
    _cast,
    add_tile,
    add_tile_nd,
    axis_pieces,
    fill_tile,
    fill_tile_nd,
)
from napari_unet.core.inference.tile_plan import (  # noqa: F401 (importable from here)
    AxisPlan,
    Predictor,
    Prepare,
    Region,
    SizeRule,
    TilePlan,
    TileProgress,
    plan_tiles,
)

logger = logging.getLogger(__name__)

#: Blending windows.
BLENDS: tuple[str, ...] = ("gaussian", "constant")


def iter_tile_predict(
    image: np.ndarray,
    predictor: Predictor,
    *,
    out_channels: int,
    tile_shape: int | tuple[int, ...],
    margin: int = 0,
    overlap: int = 0,
    batch_size: int = 4,
    region: Region | None = None,
    out: np.ndarray | None = None,
    blend: str = "gaussian",
    size_multiple: int | tuple[int, ...] = 1,
    valid_input_shape: SizeRule | None = None,
    prepare: Prepare | None = None,
) -> Generator[TileProgress, None, np.ndarray]:
    """Predict ``image`` tile by tile; yields :class:`TileProgress` after each batch.

    Args:
        image: ``(C, Y, X)``, or a volume ``(C, Z, Y, X)`` (3-D tiles), float32 (other real
            dtypes are cast tile by tile, or handed raw to ``prepare``).
        predictor: ``tiles (B, C, h, w) float32 -> (B, K, h - 2m, w - 2m)`` array (3-D:
            ``(B, C, d, h, w) -> (B, K, d - 2m, h - 2m, w - 2m)``). It may modify its input (the
            batch buffer is refilled for every call).
        out_channels: ``K``.
        tile_shape: Input tile size, int or one side per spatial axis (``(h, w)``,
            ``(d, h, w)``).
        margin: Pixels the predictor loses on each side.
        overlap: Output overlap between neighbouring tiles.
        batch_size: Tiles per predictor call.
        region: One slice per spatial axis: predict only this part (real context around it is
            used).
        out: Preallocated ``(K, *region)`` float32 or float16 output (zeroed here).
        blend: ``"gaussian"`` or ``"constant"``.
        size_multiple: Tile sizes round up to, and tile origins align to, this multiple (one
            int, or one per spatial axis).
        valid_input_shape: The predictor's accepted-size rule (see :func:`plan_tiles`).
        prepare: Fills a float32 batch slot from a raw tile (default: a plain cast); prediction
            normalises here, before any cast to float32.

    Returns:
        ``(K, *region)`` predictions (the image's shape by default); stop iterating to cancel.
    """
    image = _checked_image(image, blend, batch_size)
    plan = plan_tiles(
        image.shape,
        tile_shape=tile_shape,
        margin=margin,
        overlap=overlap,
        region=region,
        size_multiple=size_multiple,
        valid_input_shape=valid_input_shape,
        spatial_dims=image.ndim - 1,
    )
    out = _zeroed_output(out, (out_channels, *plan.region_shape))
    pieces = [axis_pieces(axis, margin, blend) for axis in plan.axes]
    order = list(itertools.product(*pieces))
    logger.debug("tiling %s into %d tile(s) of %s", image.shape, len(order), plan.input_shape)
    yield from _predict_batches(image, predictor, order, plan, out, batch_size, prepare or _cast)
    return out


def _checked_image(image: np.ndarray, blend: str, batch_size: int) -> np.ndarray:
    """``image`` as an array; a bad shape, blend or batch size -> ``ValueError``."""
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(
            f"the tiler expects a (C, Y, X) image or a (C, Z, Y, X) volume, got shape {image.shape}"
        )
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return image


def _zeroed_output(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """A zeroed float32 output of ``shape``, or ``out`` checked and zeroed."""
    if out is None:
        return np.zeros(shape, dtype=np.float32)
    if out.shape != shape or not np.issubdtype(out.dtype, np.floating):
        raise ValueError(f"out must be a float array of shape {shape}, got {out.shape} {out.dtype}")
    out[...] = 0
    return out


def _predict_batches(
    image: np.ndarray,
    predictor: Predictor,
    order: list[tuple[Piece, ...]],
    plan: TilePlan,
    out: np.ndarray,
    batch_size: int,
    prepare: Prepare,
) -> Iterator[TileProgress]:
    """Fill, predict and blend the tiles of ``order`` batch by batch into ``out``."""
    total, out_channels = len(order), out.shape[0]
    batch = np.empty((min(batch_size, total), image.shape[0], *plan.input_shape), np.float32)
    expected_tile = (out_channels, *plan.output_shape)
    for first in range(0, total, batch_size):
        chunk = order[first : first + batch_size]
        for i, tile in enumerate(chunk):
            fill_tile_nd(batch[i], image, tile, prepare)
        result = np.asarray(predictor(batch[: len(chunk)]))
        if result.shape != (len(chunk), *expected_tile):
            raise ValueError(
                f"predictor returned shape {result.shape} for tiles {batch[: len(chunk)].shape}; "
                f"expected {(len(chunk), *expected_tile)}"
            )
        for i, tile in enumerate(chunk):
            add_tile_nd(out, result[i], tile)
        yield TileProgress(done=first + len(chunk), total=total)


def tile_predict(image: np.ndarray, predictor: Predictor, **kwargs: object) -> np.ndarray:
    """Run :func:`iter_tile_predict` to the end and return its ``(K, *region)`` result."""
    return run_to_end(iter_tile_predict(image, predictor, **kwargs))  # type: ignore[arg-type]
