"""Probabilities of one block of a slice, exactly as the whole-slice prediction computes them.

The single-process path (:func:`napari_unet.core.inference.prediction.iter_predict`) tiles the whole
slice on one grid and blends overlapping tiles with weights normalised over that grid. A block
computes the tiles of that same global grid that touch its region, in the same order and with the
same weights, so every pixel receives the same sum of the same terms: the block's probabilities are
the crop of the whole-slice probabilities (the halo a block reads is whatever input those tiles
need: up to one tile around the region, mirrored at the image border as usual).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from napari_unet.core.inference.normalization import NormalizationParams, apply_normalization
from napari_unet.core.inference.prediction import (
    DEFAULT_PADDED_OVERLAP,
    PredictConfig,
    _make_predictor,
    _valid_input_shape,
    shift_period,
)
from napari_unet.core.inference.tiling import TilePlan, _axis_pieces, _Piece, plan_tiles

Span = tuple[int, int]
#: ``read_window(y_span, x_span) -> (C, h, w)`` raw pixels of the slice.
WindowReader = Callable[[Span, Span], np.ndarray]


@dataclass(frozen=True)
class Geometry:
    """The model's tiling geometry (what :func:`iter_predict` derives from the model)."""

    margin: int
    overlap: int
    period: int
    out_channels: int

    @classmethod
    def of(cls, model, config: PredictConfig) -> Geometry:
        margin = int(getattr(model, "margin", 0))
        overlap = config.overlap
        if overlap is None:
            overlap = 0 if margin > 0 else DEFAULT_PADDED_OVERLAP
        period = shift_period(_valid_input_shape(model))
        return cls(margin, int(overlap), period, int(model.out_channels))


def slice_plan(model, yx_shape: tuple[int, int], config: PredictConfig) -> TilePlan:
    """The global tile grid of a whole ``yx_shape`` slice, as ``iter_predict`` plans it."""
    geometry = Geometry.of(model, config)
    return plan_tiles(
        yx_shape,
        tile_shape=config.tile_shape,
        margin=geometry.margin,
        overlap=geometry.overlap,
        size_multiple=geometry.period,
        valid_input_shape=_valid_input_shape(model),
    )


def context_halo(model, yx_shape: tuple[int, int], config: PredictConfig) -> int:
    """Pixels of input a block may read beyond its region (one output tile plus the margin)."""
    plan = slice_plan(model, yx_shape, config)
    return max(plan.output_shape) + plan.margin


def _touching(pieces: list[_Piece], span: Span) -> list[int]:
    return [i for i, p in enumerate(pieces) if p.target.start < span[1] and p.target.stop > span[0]]


def _source_span(pieces: list[_Piece], chosen: list[int]) -> Span:
    return min(pieces[i].source.start for i in chosen), max(pieces[i].source.stop for i in chosen)


def _take(window: np.ndarray, piece: _Piece, origin: int, axis: int) -> np.ndarray:
    part = slice(piece.source.start - origin, piece.source.stop - origin)
    tile = window[(slice(None),) * axis + (part,)]
    return tile if piece.index is None else np.take(tile, piece.index, axis=axis)


def predict_region(
    net,
    model,
    read_window: WindowReader,
    params: NormalizationParams,
    *,
    yx_shape: tuple[int, int],
    region: tuple[Span, Span],
    task: str,
    config: PredictConfig,
    device,
) -> np.ndarray:
    """Probabilities ``(K, h, w)`` of ``region`` of a slice, equal to that crop of the whole.

    Args:
        net: the inference network on ``device`` (fused, see :mod:`.model_cache`).
        model: the checkpoint's model (its geometry: margin, accepted sizes, out_channels).
        read_window: reads raw ``(C, h, w)`` pixels of the slice for a ``(y, x)`` span.
        params: the slice's normalisation (measured on the whole slice).
        yx_shape: the slice's ``(Y, X)``. region: ``((y0, y1), (x0, x1))`` to compute.
        task, config, device: as for :func:`~napari_unet.core.inference.prediction.iter_predict`.
    """
    plan = slice_plan(model, yx_shape, config)
    y_pieces = _axis_pieces(plan.y, plan.margin, config.blend)
    x_pieces = _axis_pieces(plan.x, plan.margin, config.blend)
    (ry0, ry1), (rx0, rx1) = region
    rows, cols = _touching(y_pieces, (ry0, ry1)), _touching(x_pieces, (rx0, rx1))
    (wy0, wy1), (wx0, wx1) = _source_span(y_pieces, rows), _source_span(x_pieces, cols)
    window = read_window((wy0, wy1), (wx0, wx1))  # (C, h, w) raw
    predictor = _make_predictor(net, task=task, device=device, config=config)
    out = np.zeros((plan_channels(model), ry1 - ry0, rx1 - rx0), dtype=config.probability_dtype)
    order = [(iy, ix) for iy in rows for ix in cols]
    batch = np.empty(
        (min(config.batch_size, len(order)), window.shape[0], *plan.input_shape), np.float32
    )
    for first in range(0, len(order), config.batch_size):
        chunk = order[first : first + config.batch_size]
        for i, (iy, ix) in enumerate(chunk):
            tile = _take(window, y_pieces[iy], wy0, 1)
            # normalised tile by tile into the batch slot, as iter_predict does (float64 if needed)
            apply_normalization(_take(tile, x_pieces[ix], wx0, 2), params, out=batch[i])
        result = np.asarray(predictor(batch[: len(chunk)]))
        for i, (iy, ix) in enumerate(chunk):
            _accumulate(out, result[i], y_pieces[iy], x_pieces[ix], (ry0, rx0))
    return out


def plan_channels(model) -> int:
    return int(model.out_channels)


def _accumulate(
    out: np.ndarray, result: np.ndarray, py: _Piece, px: _Piece, origin: tuple[int, int]
) -> None:
    """Add the part of one tile's weighted output that falls in ``out`` (same ops as the tiler)."""
    weight = py.weight[:, None] * px.weight[None, :]
    spans = []
    for piece, start, size in ((py, origin[0], out.shape[1]), (px, origin[1], out.shape[2])):
        lo = max(piece.target.start, start)
        hi = min(piece.target.stop, start + size)
        skip = lo - piece.target.start
        spans.append((slice(lo - start, hi - start), skip, hi - lo))
    (ty, sy, ny), (tx, sx, nx) = spans
    crop_y = slice(py.crop.start + sy, py.crop.start + sy + ny)
    crop_x = slice(px.crop.start + sx, px.crop.start + sx + nx)
    out[:, ty, tx] += result[:, crop_y, crop_x] * weight[sy : sy + ny, sx : sx + nx]
