"""Probabilities of one block of a volume, exactly as the whole-volume prediction computes them.

A volume too big for memory (an OME-Zarr store) is predicted block by block in 3-D. The
in-memory path (:func:`~napari_unet.core.inference.prediction.iter_predict` with a 3-D model)
tiles the whole volume ``(C, Z, Y, X)`` on one grid and blends the tiles with weights normalised
over that grid. :func:`predict_volume_region` computes only the tiles of that same global grid
that touch a region, in the same order, with the same weights and the same normalisation, so
every voxel of the region receives the same sum of the same terms: the region's probabilities
are the crop of the whole volume's. The input it reads (:data:`VolumeReader`) is whatever those
tiles need: up to one tile of real context around the region in Z, Y and X, mirrored at the
volume's borders as usual. Memory grows with the region and its tiles, never with the volume.

:func:`lazy_volume_params` measures the normalisation of a whole volume (percentiles per
channel) plane by plane from a store, reading the strided subsample that the in-memory path
measures anyway (the whole volume when it has at most :data:`WHOLE_VOLUME_VOXELS` voxels).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable

import numpy as np
from torch import nn

from napari_unet.core.inference.config import PredictConfig
from napari_unet.core.inference.geometry import TileGeometry
from napari_unet.core.inference.normalization import (
    MAX_PERCENTILE_SAMPLES,
    NormalizationConfig,
    NormalizationParams,
)
from napari_unet.core.inference.tile_pieces import Piece, add_tile_nd, axis_pieces, fill_tile_nd
from napari_unet.core.inference.tile_plan import Predictor
from napari_unet.core.inference.volume import volume_normalization_params, volume_normalizer

logger = logging.getLogger(__name__)

__all__ = ["WHOLE_VOLUME_VOXELS", "lazy_volume_params", "predict_volume_region"]

Span = tuple[int, int]
#: ``read_window(((z0, z1), (y0, y1), (x0, x1))) -> (C, d, h, w)`` raw voxels of the volume.
VolumeReader = Callable[[tuple[Span, ...]], np.ndarray]
#: ``read_plane(z, y_slice, x_slice) -> (C, h, w)`` raw pixels of one plane of the volume.
PlaneReader = Callable[[int, slice, slice], np.ndarray]
#: Volumes up to this many voxels (per channel) are read whole to measure their normalisation.
WHOLE_VOLUME_VOXELS = 1 << 26


def _touching(pieces: list[Piece], span: Span) -> list[Piece]:
    return [p for p in pieces if p.target.start < span[1] and p.target.stop > span[0]]


def predict_volume_region(
    predictor: Predictor,
    model: nn.Module,
    read_window: VolumeReader,
    params: NormalizationParams,
    *,
    volume_shape: tuple[int, int, int],
    region: tuple[Span, Span, Span],
    config: PredictConfig,
) -> np.ndarray:
    """Probabilities ``(K, d, h, w)`` of ``region`` of a volume, equal to that crop of the whole.

    Args:
        predictor: ``tiles (B, C, d, h, w) -> (B, K, d', h', w')`` activated
            (:func:`~napari_unet.core.inference.predictor.make_predictor`).
        model: The 3-D model (its geometry: margin, accepted sizes, ``out_channels``).
        read_window: Raw ``(C, d, h, w)`` voxels of the volume for ``(z, y, x)`` spans.
        params: The whole volume's normalisation (:func:`lazy_volume_params`).
        volume_shape: ``(Z, Y, X)`` of the volume. region: ``((z0, z1), (y0, y1), (x0, x1))``.
        config: As for ``iter_predict`` (tiles, overlap, blend, batch size, dtype).
    """
    plan = TileGeometry.of(model, config).plan(volume_shape)
    chosen = [
        _touching(axis_pieces(axis, plan.margin, config.blend), span)
        for axis, span in zip(plan.axes, region)
    ]
    window_spans = tuple(
        (min(p.source.start for p in pieces), max(p.source.stop for p in pieces))
        for pieces in chosen
    )
    window = read_window(window_spans)
    prepare = volume_normalizer(params)
    starts = tuple(span[0] for span in region)
    out = np.zeros((int(model.out_channels), *(b - a for a, b in region)), config.probability_dtype)
    order = list(itertools.product(*chosen))  # the whole volume's tile order, restricted
    batch = np.empty(
        (min(config.batch_size, len(order)), window.shape[0], *plan.input_shape), np.float32
    )
    for first in range(0, len(order), config.batch_size):
        chunk = order[first : first + config.batch_size]
        for i, tile in enumerate(chunk):
            fill_tile_nd(batch[i], window, tile, prepare, origin=tuple(s[0] for s in window_spans))
        result = np.asarray(predictor(batch[: len(chunk)]))
        for i, tile in enumerate(chunk):
            add_tile_nd(out, result[i], tile, origin=starts)
    return out


def lazy_volume_params(
    read_plane: PlaneReader,
    shape: tuple[int, int, int, int],
    config: NormalizationConfig | None = None,
) -> NormalizationParams:
    """The normalisation of a ``(C, Z, Y, X)`` volume read plane by plane.

    Equal to :func:`~napari_unet.core.inference.volume.volume_normalization_params` of the
    whole volume: that measures ``(C, Z*Y, X)`` on every ``step``-th row and column, so the same
    rows are read here plane by plane. A volume above :data:`WHOLE_VOLUME_VOXELS` voxels whose
    subsample comes out slightly above the core's sample budget is subsampled once more by the
    core (percentiles then differ in the last digits); a channel whose percentiles coincide
    falls back to the subsample's range instead of the whole volume's.
    """
    _, depth, height, width = shape
    size = depth * height * width
    step = 1
    if size > WHOLE_VOLUME_VOXELS and size > MAX_PERCENTILE_SAMPLES:
        step = math.ceil((size / MAX_PERCENTILE_SAMPLES) ** 0.5)
    planes = []
    for z in range(depth):
        first_row = (-z * height) % step  # rows of the flattened (Z*Y) axis that are multiples
        if first_row < height:
            planes.append(read_plane(z, slice(first_row, None, step), slice(None, None, step)))
    sample = np.concatenate(planes, axis=1)  # (C, rows, columns)
    if step > 1:
        logger.info("normalisation of a %s volume measured on every %d-th voxel", shape, step)
    return volume_normalization_params(sample[:, None], config)
