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
import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np

from napari_unet.core.generators import run_to_end

logger = logging.getLogger(__name__)

#: Blending windows.
BLENDS: tuple[str, ...] = ("gaussian", "constant")
#: Smallest blending weight (relative to the window's peak of 1).
MIN_WEIGHT = 1e-4

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
        prepare: Fills a float32 batch slot from a raw tile (default: a plain cast). Prediction
            normalises here, before anything is cast to float32 (a float64 image beyond
            float32's range stays right).

    Returns:
        ``(K, *region)`` predictions, the region's shape (the image's by default).
        Stop iterating to cancel; nothing else is kept.
    """
    image = np.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(
            f"the tiler expects a (C, Y, X) image or a (C, Z, Y, X) volume, got shape {image.shape}"
        )
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
    shape = (out_channels, *plan.region_shape)
    if out is None:
        out = np.zeros(shape, dtype=np.float32)
    else:
        if out.shape != shape or not np.issubdtype(out.dtype, np.floating):
            raise ValueError(
                f"out must be a float array of shape {shape}, got {out.shape} {out.dtype}"
            )
        out[...] = 0
    pieces = [axis_pieces(axis, margin, blend) for axis in plan.axes]
    order = list(itertools.product(*pieces))
    total = len(order)
    batch = np.empty((min(batch_size, total), image.shape[0], *plan.input_shape), np.float32)
    expected_tile = (out_channels, *plan.output_shape)
    logger.debug("tiling %s into %d tile(s) of %s", image.shape, total, plan.input_shape)
    for first in range(0, total, batch_size):
        chunk = order[first : first + batch_size]
        for i, tile in enumerate(chunk):
            fill_tile_nd(batch[i], image, tile, prepare or _cast)
        result = np.asarray(predictor(batch[: len(chunk)]))
        if result.shape != (len(chunk), *expected_tile):
            raise ValueError(
                f"predictor returned shape {result.shape} for tiles {batch[: len(chunk)].shape}; "
                f"expected {(len(chunk), *expected_tile)}"
            )
        for i, tile in enumerate(chunk):
            add_tile_nd(out, result[i], tile)
        yield TileProgress(done=first + len(chunk), total=total)
    return out


def tile_predict(image: np.ndarray, predictor: Predictor, **kwargs: object) -> np.ndarray:
    """Run :func:`iter_tile_predict` to the end and return its ``(K, *region)`` result."""
    return run_to_end(iter_tile_predict(image, predictor, **kwargs))  # type: ignore[arg-type]
