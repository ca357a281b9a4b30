"""The tile plan of a model: tile shape, margin, overlap, pooling period, accepted sizes.

Moved out of :mod:`napari_unet.core.inference.prediction` (which re-exports every name here):
:class:`TileGeometry` is the one place the tile plan's inputs are derived, for whole-image
prediction and the distributed block predictor alike, 2-D slices and 3-D volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from napari_unet.core.errors import UserInputError
from napari_unet.core.inference.config import (
    DEFAULT_PADDED_OVERLAP,
    DEFAULT_TILE_2D,
    DEFAULT_TILE_3D,
    PredictConfig,
)
from napari_unet.core.inference.tiling import Region, SizeRule, TilePlan, plan_tiles

__all__ = [
    "TileGeometry",
    "plan_or_refuse",
    "shift_period",
    "shift_periods",
    "spatial_dims_of",
    "tile_overlap",
    "tile_shape_for",
    "valid_input_shape_of",
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


def plan_or_refuse(
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
