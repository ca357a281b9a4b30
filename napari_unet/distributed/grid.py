"""The block grid of a distributed prediction: blocks over (slices, Y, X), faces and halos.

A block is a range of flat slices (see :class:`~napari_unet.core.io.axes.StackLayout`) times a
``Y`` range times an ``X`` range. The model is 2-D, so slices never share context; in ``Y``/``X``
a block computes probabilities (and labels) on its core plus a post-processing halo, and reads
whatever input the slice's global tile grid needs around it.

Faces: for instance labels each block reports its labels on thin bands of its neighbours' cores
(``outer``) and of its own core next to each neighbour (``inner``); :mod:`.stitch` links them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: The 8 in-plane neighbour directions ``(dy, dx)``.
DIRECTIONS: tuple[tuple[int, int], ...] = tuple(
    (dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
)
#: Default in-plane block side (pixels) and pixels per block (slices are grouped up to this).
DEFAULT_BLOCK_SIDE = 2048
DEFAULT_BLOCK_PIXELS = 1 << 22
#: Width of the bands compared at block faces (at most the post-processing halo).
FACE_BAND = 8
#: An input chunk this many times larger (in Y*X) than a block makes every block re-read it.
CHUNK_WARN_RATIO = 4

Span = tuple[int, int]


@dataclass(frozen=True)
class Block:
    """One block: grid ``index`` (iz, iy, ix), flat slices ``z``, pixel ranges ``y`` and ``x``."""

    index: tuple[int, int, int]
    z: Span
    y: Span
    x: Span

    @property
    def key(self) -> str:
        """A stable name (marker files, task keys)."""
        return "z{}-y{}-x{}".format(*self.index)


@dataclass(frozen=True)
class BlockGrid:
    """Blocks over flat slices ``z_edges`` and pixels ``y_edges`` x ``x_edges``.

    Attributes:
        z_edges, y_edges, x_edges: sorted boundaries (first = start, last = stop).
        halo: post-processing halo in pixels (0: blocks need no context around their labels).
    """

    z_edges: tuple[int, ...]
    y_edges: tuple[int, ...]
    x_edges: tuple[int, ...]
    halo: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.z_edges) - 1, len(self.y_edges) - 1, len(self.x_edges) - 1

    @property
    def band(self) -> int:
        """Width of the face bands (0 without a halo)."""
        return min(FACE_BAND, self.halo)

    def block(self, index: tuple[int, int, int]) -> Block:
        iz, iy, ix = index
        return Block(
            index=(iz, iy, ix),
            z=(self.z_edges[iz], self.z_edges[iz + 1]),
            y=(self.y_edges[iy], self.y_edges[iy + 1]),
            x=(self.x_edges[ix], self.x_edges[ix + 1]),
        )

    def blocks(self) -> Iterator[Block]:
        """All blocks, Z-major then raster order."""
        nz, ny, nx = self.shape
        for iz in range(nz):
            for iy in range(ny):
                for ix in range(nx):
                    yield self.block((iz, iy, ix))

    def neighbour(self, block: Block, direction: tuple[int, int]) -> Block | None:
        """The in-plane neighbour of ``block`` in ``direction`` (same slices), or None."""
        iz, iy, ix = block.index
        ny, nx = self.shape[1:]
        jy, jx = iy + direction[0], ix + direction[1]
        if not (0 <= jy < ny and 0 <= jx < nx):
            return None
        return self.block((iz, jy, jx))

    def padded(self, block: Block, yx_shape: tuple[int, int]) -> tuple[Span, Span]:
        """``block``'s core plus the halo, clipped to the image."""
        (y0, y1), (x0, x1) = block.y, block.x
        return (
            (max(y0 - self.halo, 0), min(y1 + self.halo, yx_shape[0])),
            (max(x0 - self.halo, 0), min(x1 + self.halo, yx_shape[1])),
        )

    def face_band(self, owner: Block, direction: tuple[int, int]) -> tuple[Span, Span]:
        """The band of ``owner``'s core next to its neighbour in ``direction`` (``band`` wide)."""
        width = self.band
        spans = []
        for (lo, hi), step in ((owner.y, direction[0]), (owner.x, direction[1])):
            if step < 0:
                spans.append((lo, min(lo + width, hi)))
            elif step > 0:
                spans.append((max(hi - width, lo), hi))
            else:
                spans.append((lo, hi))
        return spans[0], spans[1]


def _edges(start: int, stop: int, step: int) -> tuple[int, ...]:
    return (*range(start, stop, step), stop)


def _aligned_side(size: int, chunk: int, wanted: int) -> int:
    """A block side near ``wanted`` that is a multiple of the input chunk (whole chunks read)."""
    if chunk >= wanted or chunk <= 0:
        return min(size, wanted)
    return min(size, max(chunk, (wanted // chunk) * chunk))


def plan_grid(
    *,
    slices: range,
    yx_shape: tuple[int, int],
    input_chunks: tuple[int, int],
    halo: int,
    block: tuple[int, int, int] | None = None,
) -> BlockGrid:
    """The block grid for ``slices`` of a ``yx_shape`` image.

    Args:
        slices: the flat slices to predict (a contiguous range).
        yx_shape: ``(Y, X)`` of each slice.
        input_chunks: the input's Zarr chunk sides in ``(Y, X)``; default blocks are multiples
            of them so that each block reads whole chunks.
        halo: the post-processing halo (pixels of labels context around each block).
        block: ``(slices, Y, X)`` per block; default: whole chunks up to
            :data:`DEFAULT_BLOCK_SIDE`, slices grouped up to :data:`DEFAULT_BLOCK_PIXELS`.

    A block side smaller than the halo works but is slow (logged as a warning).
    """
    if block is None:
        by = _aligned_side(yx_shape[0], input_chunks[0], DEFAULT_BLOCK_SIDE)
        bx = _aligned_side(yx_shape[1], input_chunks[1], DEFAULT_BLOCK_SIDE)
        bz = max(1, DEFAULT_BLOCK_PIXELS // (by * bx))
    else:
        bz, by, bx = (max(1, int(v)) for v in block)
        by, bx = min(by, yx_shape[0]), min(bx, yx_shape[1])
    for side, size, name in ((by, yx_shape[0], "Y"), (bx, yx_shape[1], "X")):
        if side < min(halo, size):
            logger.warning(
                "the block's %s side (%d px) is smaller than the post-processing halo (%d px): "
                "each block computes more halo than block; a larger --dask-block is faster",
                name,
                side,
                halo,
            )
    return BlockGrid(
        z_edges=_edges(slices.start, slices.stop, bz),
        y_edges=_edges(0, yx_shape[0], by),
        x_edges=_edges(0, yx_shape[1], bx),
        halo=halo,
    )


def chunk_overhead(grid: BlockGrid, input_chunks: tuple[int, int]) -> float:
    """How many times larger an input chunk is than a block in Y*X (1 or less is fine)."""
    by = grid.y_edges[1] - grid.y_edges[0]
    bx = grid.x_edges[1] - grid.x_edges[0]
    return math.prod(input_chunks) / float(by * bx)
