"""The tile grid of overlap-tile prediction: per-axis origins, sizes and regions.

Moved out of :mod:`napari_unet.core.inference.tiling` (which re-exports every name here; its
docstring states the geometry): :func:`plan_tiles` gives a :class:`TilePlan`, one
:class:`AxisPlan` per spatial axis, for 2-D slices and 3-D volumes alike.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AxisPlan",
    "Predictor",
    "Prepare",
    "Region",
    "SizeRule",
    "TilePlan",
    "TileProgress",
    "plan_tiles",
]

Predictor = Callable[[np.ndarray], np.ndarray]
#: ``prepare(destination (C, h, w) float32, tile (C, h, w) in the image's dtype)``: fills one slot
#: of the batch from a raw input tile (e.g. normalises it in the precision the dtype needs); 3-D
#: tiles are ``(C, d, h, w)``.
Prepare = Callable[[np.ndarray, np.ndarray], object]
#: ``(slice_y, slice_x)``, or ``(slice_z, slice_y, slice_x)`` for a volume.
Region = tuple[slice, ...]
#: A per-axis accepted-size rule: the smallest accepted shape >= a given one (same length).
SizeRule = Callable[[tuple[int, ...]], tuple[int, ...]]


@dataclass(frozen=True)
class TileProgress:
    """Progress of one tiled prediction: ``done`` of ``total`` tiles predicted."""

    done: int
    total: int


@dataclass(frozen=True)
class AxisPlan:
    """Tile grid along one axis, in image coordinates.

    Attributes:
        start: First pixel of the region predicted.
        stop: One past the last pixel of the region.
        size: Image size along this axis.
        input_size: Input tile size (output + 2 * margin).
        output_size: Output tile size.
        origins: Output tile origins (the first may lie before ``start``, the last tile may end
            after ``stop``; what lies outside the region is cropped).
    """

    start: int
    stop: int
    size: int
    input_size: int
    output_size: int
    origins: tuple[int, ...]


@dataclass(frozen=True)
class TilePlan:
    """The tile grid of one prediction: the product of one :class:`AxisPlan` per spatial axis.

    Attributes:
        axes: The axis plans, in image order (``(y, x)`` or ``(z, y, x)``).
        margin: Context the predictor loses on each side.
    """

    axes: tuple[AxisPlan, ...]
    margin: int

    @property
    def y(self) -> AxisPlan:
        """The ``Y`` axis plan."""
        return self.axes[-2]

    @property
    def x(self) -> AxisPlan:
        """The ``X`` axis plan."""
        return self.axes[-1]

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return math.prod(len(axis.origins) for axis in self.axes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(h, w)`` (``(d, h, w)``) of each input tile."""
        return tuple(axis.input_size for axis in self.axes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """``(h - 2m, w - 2m)`` (and ``d - 2m`` first in 3-D) of each predicted tile."""
        return tuple(axis.output_size for axis in self.axes)

    @property
    def region(self) -> Region:
        """The predicted region as slices of the image."""
        return tuple(slice(axis.start, axis.stop) for axis in self.axes)

    @property
    def region_shape(self) -> tuple[int, ...]:
        """Shape of the output array (without channels)."""
        return tuple(axis.stop - axis.start for axis in self.axes)

    def tiles(self) -> Iterator[tuple[int, ...]]:
        """Output origins ``(y, x)`` (``(z, y, x)``) of all tiles, last axis fastest."""
        yield from itertools.product(*(axis.origins for axis in self.axes))


def _resolve_region(region: Region | None, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    if region is None:
        return [(0, size) for size in shape]
    if len(region) != len(shape) or not all(isinstance(s, slice) for s in region):
        names = "(z, y, x)" if len(shape) == 3 else "(y, x)"
        raise ValueError(f"region must be {len(shape)} slices {names}, got {region!r}")
    bounds = []
    for sl, size in zip(region, shape):
        start, stop, step = sl.indices(size)
        if step != 1 or stop <= start:
            raise ValueError(
                f"region {region!r} is empty or strided for an image of shape {shape}; "
                "give slices with step 1 inside the image"
            )
        bounds.append((start, stop))
    return bounds


def _sides(value: int | tuple[int, ...], name: str, n: int) -> tuple[int, ...]:
    """``value`` as ``n`` positive ints (an int is repeated)."""
    sides = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(sides) != n or any(int(v) < 1 for v in sides):
        raise ValueError(f"{name} must be a positive int or {n} of them, got {value!r}")
    return tuple(int(v) for v in sides)


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    return _sides(value, name, 2)  # type: ignore[return-value]


def _axis_origins(
    start: int, stop: int, output_size: int, overlap: int, align: int
) -> tuple[int, ...]:
    first = (start // align) * align
    length = stop - first
    if length <= output_size:
        return (first,)
    if overlap >= output_size:
        raise ValueError(
            f"overlap ({overlap}) must be smaller than the output tile ({output_size} pixels)"
        )
    step = max(align, ((output_size - overlap) // align) * align)
    n = math.ceil((length - output_size) / step) + 1
    last = max(first, -(-(stop - output_size) // align) * align)
    return (*(first + i * step for i in range(n - 1)), last)


def _plan_axis(
    start: int,
    stop: int,
    size: int,
    tile: int,
    margin: int,
    overlap: int,
    align: int,
    snap: Callable[[int], int],
) -> AxisPlan:
    """Plan one axis: shrink to the region if smaller, else balance tiles of at most ``tile``."""
    if tile - 2 * margin < align:
        align = 1  # output tiles smaller than the period cannot be aligned
    first = (start // align) * align
    need = stop - first + 2 * margin
    if need <= tile:
        in_size = min(tile, snap(need))
        return AxisPlan(start, stop, size, in_size, in_size - 2 * margin, (first,))
    origins = _axis_origins(start, stop, tile - 2 * margin, overlap, align)
    in_size, count = tile, len(origins)
    # Balance: the smallest accepted tile that still needs no more tiles (less wasted overlap).
    candidate = snap(-(-(stop - first - overlap) // count) + overlap + 2 * margin)
    while candidate < tile:
        out_size = candidate - 2 * margin
        if out_size > overlap and out_size >= align:
            trial = _axis_origins(start, stop, out_size, overlap, align)
            if len(trial) <= count:
                in_size, origins = candidate, trial
                break
        candidate = snap(candidate + 1)
    return AxisPlan(start, stop, size, in_size, in_size - 2 * margin, origins)


def plan_tiles(
    image_shape: tuple[int, ...],
    *,
    tile_shape: int | tuple[int, ...],
    margin: int = 0,
    overlap: int = 0,
    region: Region | None = None,
    size_multiple: int | tuple[int, ...] = 1,
    valid_input_shape: SizeRule | None = None,
    spatial_dims: int = 2,
) -> TilePlan:
    """The tile grid for an image of ``image_shape`` (``(..., Y, X)``); see the module docs.

    Args:
        image_shape: Image shape; the last ``spatial_dims`` dimensions are ``(Y, X)`` (or
            ``(Z, Y, X)``).
        tile_shape: Largest input tile (int or one side per spatial axis), snapped up to an
            accepted size.
        margin: Context lost on each side by the predictor (valid convolutions).
        overlap: Overlap of neighbouring output tiles, in pixels (every axis).
        region: One slice per spatial axis to predict only part of the image.
        size_multiple: Tile origins are aligned to, and sizes rounded up to, this multiple (an
            int, or one per spatial axis for anisotropic nets).
        valid_input_shape: The predictor's accepted-size rule (smallest accepted shape >= a
            given one, per side); default: round up to ``size_multiple``.
        spatial_dims: 2 (``(Y, X)`` tiles) or 3 (``(Z, Y, X)`` tiles).

    Raises:
        ValueError: Tiles too small for the margin, negative overlap or margin, bad region.
    """
    if spatial_dims not in (2, 3) or len(image_shape) < spatial_dims:
        raise ValueError(f"cannot tile {spatial_dims} spatial axes of shape {image_shape}")
    shape = tuple(int(s) for s in image_shape[-spatial_dims:])
    multiples = _sides(size_multiple, "size_multiple", spatial_dims)
    if margin < 0 or overlap < 0:
        raise ValueError("margin and overlap must be >= 0 and size_multiple >= 1")
    if valid_input_shape is None:

        def valid_input_shape(sides: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(-(-int(s) // m) * m for s, m in zip(sides, multiples))

    bounds = _resolve_region(region, shape)
    full = tuple(int(s) for s in valid_input_shape(_sides(tile_shape, "tile_shape", spatial_dims)))
    if min(full) <= 2 * margin:
        raise ValueError(f"tile_shape {full} leaves no output with margin {margin}")

    def snapper(axis: int) -> Callable[[int], int]:
        return lambda side: int(valid_input_shape((side,) * spatial_dims)[axis])

    axes = [
        _plan_axis(start, stop, size, tile, margin, overlap, multiple, snapper(axis))
        for axis, ((start, stop), size, tile, multiple) in enumerate(
            zip(bounds, shape, full, multiples)
        )
    ]
    return TilePlan(axes=tuple(axes), margin=margin)
