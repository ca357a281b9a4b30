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
    TilePlan,
    iter_tile_predict,
    plan_tiles,
)
from napari_unet.core.io.axes import check_channels, to_stack
from napari_unet.core.models.base import require_spatial_dims
from napari_unet.core.models.fuse import fuse_for_inference

logger = logging.getLogger(__name__)

#: The config and its constants live in the torch-free ``core.inference.config``; they stay
#: importable from here.
__all__ = [
    "DEFAULT_PADDED_OVERLAP",
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


def valid_input_shape_of(model: nn.Module) -> Callable[[tuple[int, int]], tuple[int, int]]:
    """``model``'s accepted-size rule: the smallest ``(h, w)`` it takes >= a given one."""
    rule = getattr(model, "valid_input_shape", None)
    if rule is not None:
        return lambda shape: tuple(int(s) for s in rule(tuple(int(s) for s in shape)))
    multiple = int(getattr(model, "size_multiple", 1))
    return lambda shape: tuple(-(-int(s) // multiple) * multiple for s in shape)


def shift_period(valid_input_shape: Callable[[tuple[int, int]], tuple[int, int]]) -> int:
    """The spacing of accepted input sizes: the shift (2**depth) a pooling net is equivariant to."""
    smallest = valid_input_shape((1, 1))[0]
    return max(1, valid_input_shape((smallest + 1, smallest + 1))[0] - smallest)


@dataclass(frozen=True)
class TileGeometry:
    """How :func:`iter_predict` tiles every slice for a model and a :class:`PredictConfig`.

    The one place the tile plan's inputs are derived (the distributed block predictor uses it
    too, so its tiles are the whole-slice prediction's tiles).

    Attributes:
        tile_shape: Largest input tile ``(h, w)`` (from the config).
        margin: Pixels the model loses on each side (valid convolutions; 0 for padded nets).
        overlap: Output overlap between tiles (see :func:`tile_overlap`).
        period: Tile origins align to this (the model's pooling period, :func:`shift_period`).
        valid_input_shape: The model's accepted-size rule (:func:`valid_input_shape_of`).
    """

    tile_shape: tuple[int, int]
    margin: int
    overlap: int
    period: int
    valid_input_shape: Callable[[tuple[int, int]], tuple[int, int]]

    @classmethod
    def of(cls, model: nn.Module, config: PredictConfig) -> TileGeometry:
        """The geometry of ``model`` (``margin``, accepted sizes) under ``config``."""
        margin = int(getattr(model, "margin", 0))
        valid_input_shape = valid_input_shape_of(model)
        return cls(
            tile_shape=config.tile_shape,
            margin=margin,
            overlap=tile_overlap(config, margin),
            period=shift_period(valid_input_shape),
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

    def plan(self, yx_shape: tuple[int, int], region: Region | None = None) -> TilePlan:
        """The tile grid of a ``(Y, X)`` slice (or of its ``region``), as prediction uses it.

        Raises:
            ValueError: Tiles too small for the model's margin and the overlap, or a bad region.
        """
        return plan_tiles(yx_shape, region=region, **self.tiler_kwargs())  # type: ignore[arg-type]


def make_predictor(
    model: nn.Module,
    *,
    task: str,
    device: torch.device,
    config: PredictConfig,
) -> Callable[[np.ndarray], np.ndarray]:
    """``tiles (B, C, h, w)`` normalised float32 -> activated ``(B, K, h', w')`` numpy."""
    activation = _activation(task)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

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


def tile_overlap(config: PredictConfig, margin: int) -> int:
    """The tile overlap to use: the configured one, else 0 for valid-convolution nets (margin
    > 0) and :data:`DEFAULT_PADDED_OVERLAP` for padded ones, at most a quarter of the tile."""
    if config.overlap is not None:
        return config.overlap
    if margin > 0:
        return 0
    return min(DEFAULT_PADDED_OVERLAP, min(config.tile_shape) // 4)


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
            ``valid_input_shape``); plain modules work with margin 0 and any input size.
        image: Any real dtype, dimensions named by ``axes``; never modified.
        axes: E.g. ``"YX"``, ``"YXC"``, ``"ZYX"``, ``"TZCYX"`` (see
            :mod:`napari_unet.core.io.axes`).
        task: ``"binary"``, ``"semantic"``, ``"instances"`` or ``"restoration"`` (activation).
        normalization: Input normalisation (default: percentiles per slice and channel).
        config: Tiles, device, precision (default :class:`PredictConfig`).
        region: ``(slice_y, slice_x)`` of each slice to predict (e.g. the visible field of view).

    Returns:
        Probabilities ``(K, *spatial)`` (``K = model.out_channels``; spatial = stack axes then
        ``Y, X``, with ``Y, X`` the region's shape when given) in ``config.probability_dtype``;
        for restoration models the restored image ``(C_out, *spatial)``.

    Raises:
        UserInputError: An empty image (a side of 0 pixels), or tiles too small for the model.
        AxesError: ``axes`` does not fit ``image``.
        UserInputError: ``model`` is a 3-D network (3-D tiled prediction is not there yet).
        ChannelMismatchError: The image's channel count differs from ``model.in_channels``.
        DeviceError: The configured device is not available.
    """
    check_task(task)
    require_spatial_dims(
        model, 2, what="prediction (2-D, slice by slice; 3-D tiled prediction comes next)"
    )
    normalization = normalization or NormalizationConfig()
    config = config or PredictConfig()
    if 0 in tuple(np.shape(image)):
        raise UserInputError(
            f"the image is empty (shape {tuple(np.shape(image))}); give an image with at least "
            "one pixel along every axis."
        )
    stack, layout = to_stack(image, axes)
    in_channels = int(getattr(model, "in_channels", layout.n_channels))
    check_channels(layout.n_channels, in_channels, shape=layout.shape, axes=layout.axes)
    device = get_device(config.device)
    geometry = TileGeometry.of(model, config)
    margin, overlap = geometry.margin, geometry.overlap
    try:
        plan = geometry.plan(layout.yx_shape, region=region)
    except ValueError as err:
        if isinstance(err, UserInputError) or region is not None:
            raise
        smallest = geometry.valid_input_shape((2 * margin + overlap + 1,) * 2)
        raise UserInputError(
            f"PredictConfig tile_shape={config.tile_shape} with overlap={overlap} is too small "
            f"for this model (it loses {margin} pixels on each side); use tiles of at least "
            f"{smallest[0]}x{smallest[1]} pixels or a smaller overlap."
        ) from None
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
    net = fuse_for_inference(model).to(device)
    if config.channels_last:
        net.to(memory_format=torch.channels_last)
    predictor = make_predictor(net, task=task, device=device, config=config)
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


def predict(model: nn.Module, image: np.ndarray, axes: str, **kwargs: object) -> np.ndarray:
    """Run :func:`iter_predict` to the end and return the probabilities ``(K, *spatial)``."""
    return run_to_end(iter_predict(model, image, axes, **kwargs))  # type: ignore[arg-type]
