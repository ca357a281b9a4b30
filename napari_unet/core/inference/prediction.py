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

Test-time augmentation (``PredictConfig.tta``): every batch of tiles is also predicted flipped
(``"flips"``: 4 passes) or flipped and transposed (``"dihedral"``: all 8 symmetries of the square,
as the U-Net paper averaged rotated copies for ISBI 2012); each output is mapped back and the
activated outputs are averaged. It costs 4x or 8x the time and smooths out orientation-dependent
mistakes (gaps in thin membranes, split nuclei).

3-D networks (``spatial_dims == 3``, e.g. ``unet3d``) predict volumes: a ``ZYX``, ``ZCYX`` or
``TZYX`` image is viewed as volumes ``(C, Z, Y, X)`` (:mod:`.volume`; per ``T``), each measured
for normalisation as a whole and tiled in 3-D (``(B, C, d, h, w)`` tiles, the model's
``size_multiples`` per axis, mirrored context; a ``Z`` smaller than the model needs is mirrored
up to the smallest accepted depth). Memory: the tiles and the preallocated probabilities only.
A 2-D image given to a 3-D model, or a ``Z`` of 1, is refused in one sentence; 2-D models keep
predicting stacks slice by slice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from napari_unet.core.config import check_task
from napari_unet.core.device import autocast, get_device
from napari_unet.core.errors import UserInputError
from napari_unet.core.generators import run_to_end
from napari_unet.core.inference.config import (
    DEFAULT_PADDED_OVERLAP,
    DEFAULT_TILE_2D,
    DEFAULT_TILE_3D,
    MIN_TILE,
    PROBABILITY_DTYPES,
    TTA_MODES,
    PredictConfig,
)
from napari_unet.core.inference.normalization import (
    NormalizationConfig,
    NormalizationParams,
    apply_normalization,
    normalization_params,
)
from napari_unet.core.inference.tiling import (
    Prepare,
    Region,
    SizeRule,
    TilePlan,
    iter_tile_predict,
    plan_tiles,
)
from napari_unet.core.inference.volume import (
    to_volumes,
    volume_normalization_params,
    volume_normalizer,
)
from napari_unet.core.io.axes import check_channels, to_stack
from napari_unet.core.models.fuse import fuse_for_inference

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


def tile_shape_for(model: nn.Module, config: PredictConfig) -> tuple[int, ...]:
    """The input tile ``model`` runs with under ``config``: ``(h, w)`` or ``(d, h, w)``.

    Raises:
        UserInputError: A 3-D tile for a 2-D model.
    """
    tile = tuple(config.tile_shape)
    if spatial_dims_of(model) == 2:
        if len(tile) == 3:
            raise UserInputError(
                f"PredictConfig tile_shape={tile} is a 3-D tile but the model is 2-D; give a "
                "tile of (height, width) pixels, or use a 3-D model for volumes."
            )
        return tile
    if len(tile) == 3:
        return tile
    if tile == DEFAULT_TILE_2D:
        return DEFAULT_TILE_3D
    return (DEFAULT_TILE_3D[0], *tile)


def spatial_dims_of(model: nn.Module) -> int:
    """2 for 2-D models (and plain modules), 3 for volumetric ones (``model.spatial_dims``)."""
    return int(getattr(model, "spatial_dims", 2))


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


def _activation(task: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if task == "binary":
        return torch.sigmoid
    if task in ("semantic", "instances"):
        return lambda logits: torch.softmax(logits, dim=1)
    return lambda logits: logits


def tta_transforms(mode: str) -> list[tuple[bool, tuple[int, ...]]]:
    """The symmetries ``(transpose, flipped dims)`` of ``mode`` for ``(B, C, H, W)`` tensors.

    Applied as: transpose H/W first, then flip; undone in the reverse order. The identity is
    first. Transposing keeps a valid input shape valid (the size rule is the same on both axes).
    """
    flips: list[tuple[int, ...]] = [()] if mode == "none" else [(), (-1,), (-2,), (-2, -1)]
    transposes = (False, True) if mode == "dihedral" else (False,)
    return [(t, f) for t in transposes for f in flips]


def _augmented(
    forward: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, mode: str
) -> torch.Tensor:
    """``forward(batch)`` (activated, float32) averaged over the ``mode`` symmetries of ``batch``.

    ``batch``: ``(B, C, H, W)``; returns ``(B, K, h, w)`` as ``forward`` does.
    """
    total: torch.Tensor | None = None
    transforms = tta_transforms(mode)
    for transpose, dims in transforms:
        view = batch.transpose(-1, -2) if transpose else batch
        view = torch.flip(view, dims) if dims else view
        out = forward(view)
        out = torch.flip(out, dims) if dims else out
        out = out.transpose(-1, -2) if transpose else out
        total = out if total is None else total + out
    assert total is not None
    return total if len(transforms) == 1 else total / len(transforms)


def valid_input_shape_of(model: nn.Module) -> SizeRule:
    """``model``'s accepted-size rule: the smallest ``(h, w)`` (``(d, h, w)``) it takes >= a
    given one."""
    rule = getattr(model, "valid_input_shape", None)
    if rule is not None:
        return lambda shape: tuple(int(s) for s in rule(tuple(int(s) for s in shape)))
    multiple = int(getattr(model, "size_multiple", 1))
    return lambda shape: tuple(-(-int(s) // multiple) * multiple for s in shape)


def shift_period(valid_input_shape: SizeRule) -> int:
    """The spacing of accepted input sizes: the shift (2**depth) a pooling net is equivariant to."""
    smallest = valid_input_shape((1, 1))[0]
    return max(1, valid_input_shape((smallest + 1, smallest + 1))[0] - smallest)


def shift_periods(valid_input_shape: SizeRule, spatial_dims: int) -> tuple[int, ...]:
    """:func:`shift_period` per axis (an anisotropic 3-D net pools Z less often than Y/X)."""
    smallest = valid_input_shape((1,) * spatial_dims)
    following = valid_input_shape(tuple(s + 1 for s in smallest))
    return tuple(max(1, int(b) - int(a)) for a, b in zip(smallest, following))


@dataclass(frozen=True)
class TileGeometry:
    """How :func:`iter_predict` tiles every slice for a model and a :class:`PredictConfig`.

    The one place the tile plan's inputs are derived (the distributed block predictor uses it
    too, so its tiles are the whole-slice prediction's tiles).

    Attributes:
        tile_shape: Largest input tile ``(h, w)``, or ``(d, h, w)`` for a 3-D model
            (:func:`tile_shape_for`).
        margin: Pixels the model loses on each side (valid convolutions; 0 for padded nets).
        overlap: Output overlap between tiles (see :func:`tile_overlap`).
        period: Tile origins align to this (the model's pooling period, :func:`shift_period`);
            one per axis for a 3-D model (:func:`shift_periods`).
        valid_input_shape: The model's accepted-size rule (:func:`valid_input_shape_of`).
    """

    tile_shape: tuple[int, ...]
    margin: int
    overlap: int
    period: int | tuple[int, ...]
    valid_input_shape: SizeRule

    @property
    def spatial_dims(self) -> int:
        """2 or 3: the length of the tiles' shape."""
        return len(self.tile_shape)

    @classmethod
    def of(cls, model: nn.Module, config: PredictConfig) -> TileGeometry:
        """The geometry of ``model`` (``margin``, accepted sizes) under ``config``.

        Raises:
            UserInputError: A 3-D tile for a 2-D model.
        """
        margin = int(getattr(model, "margin", 0))
        valid_input_shape = valid_input_shape_of(model)
        tile_shape = tile_shape_for(model, config)
        dims = len(tile_shape)
        return cls(
            tile_shape=tile_shape,
            margin=margin,
            overlap=tile_overlap(config, margin, tile_shape),
            period=shift_period(valid_input_shape)
            if dims == 2
            else shift_periods(valid_input_shape, dims),
            valid_input_shape=valid_input_shape,
        )

    def tiler_kwargs(self) -> dict[str, object]:
        """Keyword arguments of :func:`~napari_unet.core.inference.tiling.plan_tiles` and
        :func:`~napari_unet.core.inference.tiling.iter_tile_predict` for this geometry."""
        return {
            "tile_shape": self.tile_shape,
            "margin": self.margin,
            "overlap": self.overlap,
            "size_multiple": self.period,
            "valid_input_shape": self.valid_input_shape,
        }

    def plan(self, shape: tuple[int, ...], region: Region | None = None) -> TilePlan:
        """The tile grid of a ``(Y, X)`` slice or a ``(Z, Y, X)`` volume (or of its ``region``),
        as prediction uses it.

        Raises:
            ValueError: Tiles too small for the model's margin and the overlap, or a bad region.
        """
        return plan_tiles(
            shape,
            region=region,
            spatial_dims=self.spatial_dims,
            **self.tiler_kwargs(),  # type: ignore[arg-type]
        )


def make_predictor(
    model: nn.Module,
    *,
    task: str,
    device: torch.device,
    config: PredictConfig,
) -> Callable[[np.ndarray], np.ndarray]:
    """``tiles (B, C, h, w)`` normalised float32 -> activated ``(B, K, h', w')`` numpy (3-D
    models: ``(B, C, d, h, w) -> (B, K, d', h', w')``)."""
    activation = _activation(task)
    memory_format = _memory_format(model, config)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        batch = batch.contiguous(memory_format=memory_format)  # flipped views are copied here
        with autocast(device, config.precision):
            logits = model(batch)
        return activation(logits.float())

    def predictor(tiles: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(tiles).to(device)
        with torch.inference_mode():
            probabilities = _augmented(forward, batch, config.tta)
        return probabilities.cpu().numpy()

    return predictor


def _memory_format(model: nn.Module, config: PredictConfig) -> torch.memory_format:
    if not config.channels_last:
        return torch.contiguous_format
    return torch.channels_last_3d if spatial_dims_of(model) == 3 else torch.channels_last


def tile_overlap(
    config: PredictConfig, margin: int, tile_shape: tuple[int, ...] | None = None
) -> int:
    """The tile overlap to use: the configured one, else 0 for valid-convolution nets (margin
    > 0) and :data:`DEFAULT_PADDED_OVERLAP` for padded ones, at most a quarter of the smallest
    side of ``tile_shape`` (default: the config's)."""
    if config.overlap is not None:
        return config.overlap
    if margin > 0:
        return 0
    return min(DEFAULT_PADDED_OVERLAP, min(tile_shape or config.tile_shape) // 4)


def tile_normalizer(params: NormalizationParams) -> Prepare:
    """Fill a float32 batch slot with a raw tile normalised by ``params`` (in float64 if needed)."""
    return lambda destination, tile: apply_normalization(tile, params, out=destination)


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
    if spatial_dims_of(model) == 3:
        return (
            yield from _iter_predict_volumes(
                model,
                image,
                axes,
                task=task,
                normalization=normalization,
                config=config,
                region=region,
            )
        )
    stack, layout = to_stack(image, axes)
    in_channels = int(getattr(model, "in_channels", layout.n_channels))
    check_channels(layout.n_channels, in_channels, shape=layout.shape, axes=layout.axes)
    device = get_device(config.device)
    geometry = TileGeometry.of(model, config)
    plan = _plan_or_refuse(geometry, layout.yx_shape, region, config)
    n_slices = layout.n_slices
    total = plan.n_tiles * n_slices
    out_channels = int(model.out_channels)
    probabilities = np.empty(
        (out_channels, n_slices, *plan.region_shape), dtype=config.probability_dtype
    )
    logger.info(
        "predicting %d slice(s) of %s in %d tile(s) of %s on %s (test-time augmentation: %s)",
        n_slices,
        layout.yx_shape,
        total,
        plan.input_shape,
        device,
        config.tta,
    )
    predictor = make_predictor(
        _inference_net(model, device, config), task=task, device=device, config=config
    )
    for index in range(n_slices):
        slice_image = stack[index]
        params = normalization_params(slice_image, normalization)
        tiles = iter_tile_predict(
            slice_image,
            predictor,
            out_channels=out_channels,
            batch_size=config.batch_size,
            region=region,
            out=probabilities[:, index],
            blend=config.blend,
            prepare=tile_normalizer(params),
            **geometry.tiler_kwargs(),  # type: ignore[arg-type]
        )
        for step in tiles:
            yield PredictProgress(
                slice_index=index,
                n_slices=n_slices,
                done_tiles=index * plan.n_tiles + step.done,
                total_tiles=total,
            )
    return layout.restore(probabilities, axis=1)


def _inference_net(model: nn.Module, device: torch.device, config: PredictConfig) -> nn.Module:
    """The fused eval copy of ``model`` on ``device`` in the configured memory format."""
    net = fuse_for_inference(model).to(device)
    if config.channels_last:
        net.to(memory_format=_memory_format(model, config))
    return net


def _plan_or_refuse(
    geometry: TileGeometry,
    shape: tuple[int, ...],
    region: Region | None,
    config: PredictConfig,
) -> TilePlan:
    """``geometry.plan(shape, region)``; tiles too small for the model -> one sentence."""
    try:
        return geometry.plan(shape, region=region)
    except ValueError as err:
        if isinstance(err, UserInputError) or region is not None:
            raise
        margin, overlap = geometry.margin, geometry.overlap
        smallest = geometry.valid_input_shape((2 * margin + overlap + 1,) * geometry.spatial_dims)
        raise UserInputError(
            f"PredictConfig tile_shape={geometry.tile_shape} with overlap={overlap} is too small "
            f"for this model (it loses {margin} pixels on each side); use tiles of at least "
            f"{'x'.join(map(str, smallest))} pixels or a smaller overlap."
        ) from None


def _volume_region(region: Region | None) -> Region | None:
    """A ``(y, x)`` region of every slice as a ``(z, y, x)`` region of the volume."""
    if region is not None and len(region) == 2:
        return (slice(None), *region)
    return region


def _iter_predict_volumes(
    model: nn.Module,
    image: np.ndarray,
    axes: str,
    *,
    task: str,
    normalization: NormalizationConfig,
    config: PredictConfig,
    region: Region | None,
) -> Generator[PredictProgress, None, np.ndarray]:
    """:func:`iter_predict` for a 3-D model: one tiled prediction per volume ``(C, Z, Y, X)``.

    Progress counts volumes as ``slice_index``/``n_slices`` (one per ``T``).
    """
    name = getattr(model, "arch", "") or type(model).__name__
    volumes, layout = to_volumes(image, axes, model_name=name)
    in_channels = int(getattr(model, "in_channels", layout.layout.n_channels))
    check_channels(
        layout.layout.n_channels, in_channels, shape=layout.layout.shape, axes=layout.layout.axes
    )
    device = get_device(config.device)
    geometry = TileGeometry.of(model, config)
    region = _volume_region(region)
    plan = _plan_or_refuse(geometry, layout.volume_shape, region, config)
    n_volumes = layout.n_volumes
    total = plan.n_tiles * n_volumes
    out_channels = int(model.out_channels)
    probabilities = np.empty(
        layout.output_shape(out_channels, plan.region_shape), dtype=config.probability_dtype
    )
    logger.info(
        "predicting %d volume(s) of %s in %d tile(s) of %s on %s (test-time augmentation: %s)",
        n_volumes,
        layout.volume_shape,
        total,
        plan.input_shape,
        device,
        config.tta,
    )
    predictor = make_predictor(
        _inference_net(model, device, config), task=task, device=device, config=config
    )
    outputs = layout.output_views(probabilities)
    for index, (volume, out) in enumerate(zip(volumes, outputs)):
        params = volume_normalization_params(volume, normalization)
        tiles = iter_tile_predict(
            volume,
            predictor,
            out_channels=out_channels,
            batch_size=config.batch_size,
            region=region,
            out=out,
            blend=config.blend,
            prepare=volume_normalizer(params),
            **geometry.tiler_kwargs(),  # type: ignore[arg-type]
        )
        for step in tiles:
            yield PredictProgress(
                slice_index=index,
                n_slices=n_volumes,
                done_tiles=index * plan.n_tiles + step.done,
                total_tiles=total,
            )
    return probabilities


def predict(model: nn.Module, image: np.ndarray, axes: str, **kwargs: object) -> np.ndarray:
    """Run :func:`iter_predict` to the end and return the probabilities ``(K, *spatial)``."""
    return run_to_end(iter_predict(model, image, axes, **kwargs))  # type: ignore[arg-type]
