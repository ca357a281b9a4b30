"""Prediction: any image + axes + model -> probabilities ``(K, *spatial)``.

``iter_predict`` is a generator: it yields :class:`PredictProgress` after every batch of tiles and
returns the probabilities; stop iterating to cancel. ``predict`` drains it.

Steps: :func:`~napari_unet.core.io.axes.to_stack` gives ``(S, C, Y, X)`` slices; the channel count
is checked against ``model.in_channels``; each slice is measured for normalisation once
(:func:`~napari_unet.core.inference.normalization.normalization_params`, percentiles on a bounded
subsample) and normalised tile by tile as each tile is cut (in float64 for dtypes float32 cannot
hold, so a float64 image beyond float32's range is right), so no float32 copy of the image is made;
tiles are predicted by :func:`~napari_unet.core.inference.tiling.iter_tile_predict` with the model's
geometry (``margin``, ``valid_input_shape``) and aligned to the net's pooling period, then the
task's activation is applied (binary: sigmoid; semantic/instances: softmax over channels;
restoration: none). The model runs in eval mode under ``torch.inference_mode()`` with the device's
autocast policy (:mod:`napari_unet.core.device`), as an inference copy with BatchNorm folded into
the convolutions (:func:`~napari_unet.core.models.fuse.fuse_for_inference`); the caller's model is
never modified.

Test-time augmentation (``tta``, ``z_flip``, :mod:`.predictor`): tiles are also predicted flipped
(4 passes), flipped and transposed (8), and (2.5-D, 3-D) with Z reversed; outputs are averaged.

3-D networks (``spatial_dims == 3``, e.g. ``unet3d``) predict volumes: a ``ZYX``, ``ZCYX`` or
``TZYX`` image is viewed as volumes ``(C, Z, Y, X)`` (:mod:`.volume`; per ``T``), each measured
for normalisation as a whole and tiled in 3-D (``(B, C, d, h, w)`` tiles, the model's
``size_multiples`` per axis, mirrored context; a ``Z`` smaller than the model needs is mirrored
up to the smallest accepted depth). Memory: the tiles and the preallocated probabilities only.
A 2-D image given to a 3-D model, or a ``Z`` of 1, is refused in one sentence; 2-D models predict
stacks slice by slice, 2.5-D ones with their neighbour slices as channels (:mod:`.context`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from napari_unet.core.config import check_task
from napari_unet.core.device import get_device
from napari_unet.core.errors import UserInputError
from napari_unet.core.generators import run_to_end
from napari_unet.core.inference.config import (
    DEFAULT_PADDED_OVERLAP,
    DEFAULT_TILE_3D,
    MIN_TILE,
    PROBABILITY_DTYPES,
    TTA_MODES,
    PredictConfig,
)
from napari_unet.core.inference.context import with_context
from napari_unet.core.inference.geometry import (  # noqa: F401 (importable from here)
    TileGeometry,
    plan_or_refuse,
    shift_period,
    shift_periods,
    spatial_dims_of,
    tile_overlap,
    tile_shape_for,
    valid_input_shape_of,
)
from napari_unet.core.inference.normalization import NormalizationConfig, normalization_params
from napari_unet.core.inference.predictor import (
    inference_net,
    make_predictor,
    tile_normalizer,
    tta_transforms,
    z_flips,
)
from napari_unet.core.inference.tiling import Prepare, Region, TilePlan, iter_tile_predict
from napari_unet.core.inference.volume import (
    to_volumes,
    volume_normalization_params,
    volume_normalizer,
)
from napari_unet.core.io.axes import check_channels, to_stack

logger = logging.getLogger(__name__)
#: The config and its constants live in the torch-free ``core.inference.config``; they stay
#: importable from here.
__all__ = [
    "DEFAULT_PADDED_OVERLAP",
    "DEFAULT_TILE_3D",
    "MIN_TILE",
    "PROBABILITY_DTYPES",
    "TTA_MODES",
    "PredictConfig",
    "PredictProgress",
    "iter_predict",
    "predict",
    "shift_period",
    "tta_transforms",
]


@dataclass(frozen=True)
class PredictProgress:
    """Progress of a prediction: tile ``done_tiles`` of ``total_tiles`` (all slices together)."""

    slice_index: int
    n_slices: int
    done_tiles: int
    total_tiles: int

    @property
    def fraction(self) -> float:
        """Done fraction in [0, 1]."""
        return self.done_tiles / self.total_tiles if self.total_tiles else 1.0


@dataclass(frozen=True)
class _Job:
    """What one prediction tiles: ``pieces`` yields ``(slice or volume, output view, tile
    normaliser)`` lazily (each measured for normalisation only when its turn comes)."""

    pieces: Iterator[tuple[np.ndarray, np.ndarray, Prepare]]
    count: int
    what: str
    shape: tuple[int, ...]
    device: torch.device
    geometry: TileGeometry
    plan: TilePlan
    region: Region | None
    probabilities: np.ndarray
    result: Callable[[np.ndarray], np.ndarray]


def iter_predict(
    model: nn.Module,
    image: np.ndarray,
    axes: str,
    *,
    task: str = "semantic",
    normalization: NormalizationConfig | None = None,
    config: PredictConfig | None = None,
    region: Region | None = None,
) -> Generator[PredictProgress, None, np.ndarray]:
    """Predict ``image`` with ``model``, yielding progress after every batch of tiles.

    Args:
        model: A ``SegmentationNet`` (``in_channels``, ``out_channels``, ``margin``,
            ``valid_input_shape``, ``spatial_dims``); plain modules work as 2-D nets with
            margin 0 and any input size.
        image: Any real dtype, dimensions named by ``axes``; never modified.
        axes: E.g. ``"YX"``, ``"YXC"``, ``"ZYX"``, ``"TZCYX"`` (see
            :mod:`napari_unet.core.io.axes`). A 3-D model needs a ``Z`` axis of 2 or more slices.
        task: ``"binary"``, ``"semantic"``, ``"instances"`` or ``"restoration"`` (activation).
        normalization: Input normalisation (default: percentiles per slice and channel; per
            volume and channel for a 3-D model).
        config: Tiles, device, precision (default :class:`PredictConfig`).
        region: ``(slice_y, slice_x)`` of each slice to predict (e.g. the visible field of view);
            for a 3-D model also ``(slice_z, slice_y, slice_x)`` of each volume.

    Returns:
        Probabilities ``(K, *spatial)`` (``K = model.out_channels``; spatial = stack axes then
        ``Y, X``, cropped to the region when given) in ``config.probability_dtype``; for
        restoration models the restored image ``(C_out, *spatial)``.

    Raises:
        UserInputError: An empty image (a side of 0 pixels), tiles too small for the model, a
            3-D model given an image without a Z axis of several slices, or a 3-D tile for a
            2-D model.
        AxesError: ``axes`` does not fit ``image``.
        ChannelMismatchError: The image's channel count differs from ``model.in_channels``.
        DeviceError: The configured device is not available.
    """
    check_task(task)
    normalization = normalization or NormalizationConfig()
    config = config or PredictConfig()
    if 0 in tuple(np.shape(image)):
        raise UserInputError(
            f"the image is empty (shape {tuple(np.shape(image))}); give an image with at least "
            "one pixel along every axis."
        )
    plan_job = _volume_job if spatial_dims_of(model) == 3 else _slice_job
    job = plan_job(model, image, axes, normalization, config, region)
    return (yield from _run_job(job, model, task, config))


def _slice_job(
    model: nn.Module,
    image: np.ndarray,
    axes: str,
    normalization: NormalizationConfig,
    config: PredictConfig,
    region: Region | None,
) -> _Job:
    """A 2-D model's job: every ``(C, Y, X)`` slice, measured for normalisation on its own."""
    stack, layout = to_stack(*with_context(model, image, axes))  # 2.5-D: neighbours as channels
    in_channels = int(getattr(model, "in_channels", layout.n_channels))
    check_channels(layout.n_channels, in_channels, shape=layout.shape, axes=layout.axes)
    device = get_device(config.device)
    geometry = TileGeometry.of(model, config)
    plan = plan_or_refuse(geometry, layout.yx_shape, region, config)
    n_slices = layout.n_slices
    probabilities = np.empty(
        (int(model.out_channels), n_slices, *plan.region_shape), dtype=config.probability_dtype
    )
    pieces = (
        (
            stack[index],
            probabilities[:, index],
            tile_normalizer(normalization_params(stack[index], normalization)),
        )
        for index in range(n_slices)
    )
    restore = lambda out: layout.restore(out, axis=1)  # noqa: E731
    return _Job(
        pieces, n_slices, "slice", layout.yx_shape, device, geometry, plan, region,
        probabilities, restore,
    )  # fmt: skip


def _volume_region(region: Region | None) -> Region | None:
    """A ``(y, x)`` region of every slice as a ``(z, y, x)`` region of the volume."""
    if region is not None and len(region) == 2:
        return (slice(None), *region)
    return region


def _volume_job(
    model: nn.Module,
    image: np.ndarray,
    axes: str,
    normalization: NormalizationConfig,
    config: PredictConfig,
    region: Region | None,
) -> _Job:
    """A 3-D model's job: every volume ``(C, Z, Y, X)`` (one per ``T``), measured as a whole.

    Progress counts volumes as ``slice_index``/``n_slices``.
    """
    name = getattr(model, "arch", "") or type(model).__name__
    volumes, layout = to_volumes(image, axes, model_name=name)
    stack = layout.layout
    in_channels = int(getattr(model, "in_channels", stack.n_channels))
    check_channels(stack.n_channels, in_channels, shape=stack.shape, axes=stack.axes)
    device = get_device(config.device)
    geometry = TileGeometry.of(model, config)
    region = _volume_region(region)
    plan = plan_or_refuse(geometry, layout.volume_shape, region, config)
    probabilities = np.empty(
        layout.output_shape(int(model.out_channels), plan.region_shape),
        dtype=config.probability_dtype,
    )
    pieces = (
        (volume, out, volume_normalizer(volume_normalization_params(volume, normalization)))
        for volume, out in zip(volumes, layout.output_views(probabilities))
    )
    return _Job(
        pieces, layout.n_volumes, "volume", layout.volume_shape, device, geometry, plan, region,
        probabilities, lambda out: out,
    )  # fmt: skip


def _run_job(
    job: _Job, model: nn.Module, task: str, config: PredictConfig
) -> Generator[PredictProgress, None, np.ndarray]:
    """Tile-predict every piece of ``job`` into its output, yielding progress; the result."""
    plan = job.plan
    total = plan.n_tiles * job.count
    logger.info(
        "predicting %d %s(s) of %s in %d tile(s) of %s on %s (test-time augmentation: %s)",
        job.count,
        job.what,
        job.shape,
        total,
        plan.input_shape,
        job.device,
        config.tta + (" + Z reversed" if len(z_flips(model, config)) > 1 else ""),
    )
    net = inference_net(model, job.device, config)
    predictor = make_predictor(net, task=task, device=job.device, config=config)
    for index, (piece, out, prepare) in enumerate(job.pieces):
        tiles = iter_tile_predict(
            piece,
            predictor,
            out_channels=int(model.out_channels),
            batch_size=config.batch_size,
            region=job.region,
            out=out,
            blend=config.blend,
            prepare=prepare,
            **job.geometry.tiler_kwargs(),  # type: ignore[arg-type]
        )
        for step in tiles:
            yield PredictProgress(
                slice_index=index,
                n_slices=job.count,
                done_tiles=index * plan.n_tiles + step.done,
                total_tiles=total,
            )
    return job.result(job.probabilities)


def predict(model: nn.Module, image: np.ndarray, axes: str, **kwargs: object) -> np.ndarray:
    """Run :func:`iter_predict` to the end and return the probabilities ``(K, *spatial)``."""
    return run_to_end(iter_predict(model, image, axes, **kwargs))  # type: ignore[arg-type]
