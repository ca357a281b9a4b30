"""Cutting input tiles and blending output tiles, one piece per spatial axis.

Moved out of :mod:`napari_unet.core.inference.tiling` (which re-exports every name here): a tile
is the product of one :class:`Piece` per axis (:func:`axis_pieces`); :func:`fill_tile_nd` cuts
its input (mirrored at the borders), :func:`add_tile_nd` adds its weighted output. The dask
block predictor calls the same functions, so it stays bit-exact with whole-image prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_unet.core.inference.tile_plan import AxisPlan, Prepare

__all__ = [
    "MIN_WEIGHT",
    "Piece",
    "add_tile",
    "add_tile_nd",
    "axis_pieces",
    "fill_tile",
    "fill_tile_nd",
]

#: Smallest blending weight (relative to the window's peak of 1).
MIN_WEIGHT = 1e-4


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """Mirror indices into ``[0, size)`` without repeating the edge pixel (numpy's 'reflect')."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = index % period
    return np.where(index >= size, period - index, index)


def _window(size: int, blend: str) -> np.ndarray:
    if blend == "constant":
        return np.ones(size)
    sigma = size / 8.0
    centre = (size - 1) / 2.0
    window = np.exp(-((np.arange(size) - centre) ** 2) / (2.0 * sigma**2))
    return np.maximum(window, MIN_WEIGHT)


@dataclass(frozen=True)
class Piece:
    """One tile along one axis: where its input comes from and where its output goes."""

    source: slice  # bounding slice of the input tile in the image
    index: np.ndarray | None  # mirrored indices relative to ``source`` (None: plain slice)
    crop: slice  # part of the output tile inside the region
    target: slice  # where it goes in the output array (relative to the region's start)
    weight: np.ndarray  # normalised blending weights of ``crop`` (float32)


def axis_pieces(axis: AxisPlan, margin: int, blend: str) -> list[Piece]:
    """The tiles of ``axis``, in order, with their blending weights normalised over the axis."""
    window = _window(axis.output_size, blend)
    total = np.zeros(axis.stop - axis.start)
    spans = []
    for origin in axis.origins:
        lo, hi = max(origin, axis.start), min(origin + axis.output_size, axis.stop)
        spans.append((slice(lo - origin, hi - origin), slice(lo - axis.start, hi - axis.start)))
        total[lo - axis.start : hi - axis.start] += window[lo - origin : hi - origin]
    pieces = []
    for origin, (crop, target) in zip(axis.origins, spans):
        first = origin - margin
        last = first + axis.input_size
        if first >= 0 and last <= axis.size:
            source, index = slice(first, last), None
        else:
            mirrored = _reflect(np.arange(first, last), axis.size)
            low = int(mirrored.min())
            source, index = slice(low, int(mirrored.max()) + 1), mirrored - low
        weight = (window[crop] / total[target]).astype(np.float32)
        pieces.append(Piece(source, index, crop, target, weight))
    return pieces


def _cast(destination: np.ndarray, tile: np.ndarray) -> None:
    np.copyto(destination, tile, casting="unsafe")


def fill_tile_nd(
    destination: np.ndarray,
    image: np.ndarray,
    pieces: tuple[Piece, ...],
    prepare: Prepare,
    origin: tuple[int, ...] | None = None,
) -> None:
    """Fill one batch slot ``(C, *tile)`` with the input tile of ``pieces`` (one per spatial axis).

    ``image`` is ``(C, *spatial)``: the whole image, or a window of it whose first pixel is at
    ``origin`` (the window must hold the tile's ``source`` spans).
    """
    origin = origin or (0,) * len(pieces)
    spans = tuple(
        slice(piece.source.start - start, piece.source.stop - start)
        for piece, start in zip(pieces, origin)
    )
    tile = image[(slice(None), *spans)]
    for axis, piece in enumerate(pieces, start=1):
        if piece.index is not None:
            tile = np.take(tile, piece.index, axis=axis)
    prepare(destination, tile)


def fill_tile(
    destination: np.ndarray,
    image: np.ndarray,
    py: Piece,
    px: Piece,
    prepare: Prepare,
    origin: tuple[int, int] = (0, 0),
) -> None:
    """Fill one batch slot ``(C, h, w)`` with the input tile ``(py, px)`` through ``prepare``.

    ``image`` is ``(C, Y, X)``: the whole slice, or a window of it whose first pixel is at
    ``origin`` (the window must hold the tile's ``source`` spans). See :func:`fill_tile_nd`.
    """
    fill_tile_nd(destination, image, (py, px), prepare, origin)


def _tile_weight(pieces: tuple[Piece, ...]) -> np.ndarray:
    """The separable blending weight of one tile: the outer product of the pieces' weights."""
    weight = pieces[0].weight
    for piece in pieces[1:]:
        weight = weight[..., None] * piece.weight
    return weight


def add_tile_nd(
    out: np.ndarray,
    result: np.ndarray,
    pieces: tuple[Piece, ...],
    origin: tuple[int, ...] | None = None,
) -> None:
    """Add the weighted output ``result (K, *tile')`` of the tile of ``pieces`` to ``out``.

    ``out`` is ``(K, *region)``: the whole region's output, or a window of it whose first pixel
    is at ``origin`` (target coordinates); only the part of the tile inside ``out`` is added,
    with the same arithmetic either way (so a window gets exactly the same values as the whole).
    """
    origin = origin or (0,) * len(pieces)
    weight = _tile_weight(pieces)
    targets, crops, weights = [], [], []
    for piece, start, size in zip(pieces, origin, out.shape[1:]):
        lo = max(piece.target.start, start)
        hi = min(piece.target.stop, start + size)
        skip = lo - piece.target.start
        targets.append(slice(lo - start, hi - start))
        crops.append(slice(piece.crop.start + skip, piece.crop.start + skip + hi - lo))
        weights.append(slice(skip, skip + hi - lo))
    out[(slice(None), *targets)] += result[(slice(None), *crops)] * weight[tuple(weights)]


def add_tile(
    out: np.ndarray,
    result: np.ndarray,
    py: Piece,
    px: Piece,
    origin: tuple[int, int] = (0, 0),
) -> None:
    """Add the weighted output ``result (K, h', w')`` of tile ``(py, px)`` to ``out (K, y, x)``.

    See :func:`add_tile_nd` (``origin``: the window's first pixel in target coordinates).
    """
    add_tile_nd(out, result, (py, px), origin)
