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

import numpy as np

from napari_unet.core.inference.normalization import NormalizationParams
from napari_unet.core.inference.prediction import (
    PredictConfig,
    TileGeometry,
    make_predictor,
    tile_normalizer,
)
from napari_unet.core.inference.tiling import Piece, TilePlan, add_tile, axis_pieces, fill_tile

Span = tuple[int, int]
#: ``read_window(y_span, x_span) -> (C, h, w)`` raw pixels of the slice.
WindowReader = Callable[[Span, Span], np.ndarray]


def slice_plan(model, yx_shape: tuple[int, int], config: PredictConfig) -> TilePlan:
    """The global tile grid of a whole ``yx_shape`` slice: the core's own plan
    (:class:`~napari_unet.core.inference.prediction.TileGeometry`), so the two cannot drift
    apart."""
    return TileGeometry.of(model, config).plan(yx_shape)


def _touching(pieces: list[Piece], span: Span) -> list[int]:
    return [i for i, p in enumerate(pieces) if p.target.start < span[1] and p.target.stop > span[0]]


def _source_span(pieces: list[Piece], chosen: list[int]) -> Span:
    return min(pieces[i].source.start for i in chosen), max(pieces[i].source.stop for i in chosen)


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
    y_pieces = axis_pieces(plan.y, plan.margin, config.blend)
    x_pieces = axis_pieces(plan.x, plan.margin, config.blend)
    (ry0, ry1), (rx0, rx1) = region
    rows, cols = _touching(y_pieces, (ry0, ry1)), _touching(x_pieces, (rx0, rx1))
    (wy0, wy1), (wx0, wx1) = _source_span(y_pieces, rows), _source_span(x_pieces, cols)
    window = read_window((wy0, wy1), (wx0, wx1))  # (C, h, w) raw
    predictor = make_predictor(net, task=task, device=device, config=config)
    prepare = tile_normalizer(params)  # the core's: normalised tile by tile (float64 if needed)
    out = np.zeros((int(model.out_channels), ry1 - ry0, rx1 - rx0), config.probability_dtype)
    order = [(iy, ix) for iy in rows for ix in cols]
    batch = np.empty(
        (min(config.batch_size, len(order)), window.shape[0], *plan.input_shape), np.float32
    )
    for first in range(0, len(order), config.batch_size):
        chunk = order[first : first + config.batch_size]
        for i, (iy, ix) in enumerate(chunk):
            fill_tile(batch[i], window, y_pieces[iy], x_pieces[ix], prepare, origin=(wy0, wx0))
        result = np.asarray(predictor(batch[: len(chunk)]))
        for i, (iy, ix) in enumerate(chunk):
            add_tile(out, result[i], y_pieces[iy], x_pieces[ix], origin=(ry0, rx0))
    return out
