"""The block grid of a 3-D model's streamed prediction: blocks over (Z, Y, X) of each volume.

A 3-D model sees context above and below a slice, so a volume is cut into blocks in Z as well as
in Y and X; every block computes its probabilities (and labels) on its core plus a
post-processing halo in Z, Y and X, and reads whatever input the volume's global 3-D tile grid
needs around it (:func:`~napari_unet.core.inference.volume_blocks.predict_volume_region`).
Volumes of a ``TZYX`` image (one per ``T``) never share a block nor a face.

Faces: a block has up to 26 neighbours ``(dz, dy, dx)``; for instance labels each block reports
its ids on a thin band of each neighbour's core (``outer``) and of its own core next to each
neighbour (``inner``), as in the 2-D grid (:mod:`.grid`), and :mod:`.stitch` links them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from napari_unet.distributed.grid import FACE_BAND

#: The 26 neighbour directions ``(dz, dy, dx)``.
DIRECTIONS_3D: tuple[tuple[int, int, int], ...] = tuple(
    d for d in itertools.product((-1, 0, 1), repeat=3) if d != (0, 0, 0)
)
#: Default block core ``(Z, Y, X)`` (with a 32x128x128 tile: a few tiles per block).
DEFAULT_VOLUME_BLOCK = (64, 256, 256)
#: Largest instance halo (voxels per side) of a 3-D block: objects up to this size are exact.
MAX_VOLUME_HALO = 32

Span = tuple[int, int]


@dataclass(frozen=True)
class VolumeBlock:
    """Volume ``volume`` (index among the T/S positions), grid ``index`` (iz, iy, ix), spans."""

    volume: int
    index: tuple[int, int, int]
    z: Span
    y: Span
    x: Span

    @property
    def key(self) -> str:
        return "t{}-z{}-y{}-x{}".format(self.volume, *self.index)

    @property
    def spans(self) -> tuple[Span, Span, Span]:
        return (self.z, self.y, self.x)


@dataclass(frozen=True)
class VolumeGrid:
    """Blocks over ``n_volumes`` volumes of ``(Z, Y, X)`` = edges' last values.

    Attributes:
        edges: ``(z_edges, y_edges, x_edges)``, sorted boundaries (first 0, last the size).
        n_volumes: volumes (T positions) of the image. halo: post-processing halo per side.
    """

    edges: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    n_volumes: int = 1
    halo: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(e) - 1 for e in self.edges)  # type: ignore[return-value]

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        return tuple(e[-1] for e in self.edges)  # type: ignore[return-value]

    @property
    def band(self) -> int:
        return min(FACE_BAND, self.halo)

    def block(self, volume: int, index: tuple[int, int, int]) -> VolumeBlock:
        spans = [(e[i], e[i + 1]) for e, i in zip(self.edges, index)]
        return VolumeBlock(volume, tuple(index), *spans)  # type: ignore[arg-type]

    def blocks(self) -> Iterator[VolumeBlock]:
        """All blocks, volume by volume, Z-major then raster order."""
        for volume in range(self.n_volumes):
            for index in itertools.product(*(range(n) for n in self.shape)):
                yield self.block(volume, index)

    def neighbour(self, block: VolumeBlock, direction: tuple[int, ...]) -> VolumeBlock | None:
        """The neighbour of ``block`` in ``direction`` (same volume), or None."""
        index = tuple(i + d for i, d in zip(block.index, direction))
        if not all(0 <= i < n for i, n in zip(index, self.shape)):
            return None
        return self.block(block.volume, index)  # type: ignore[arg-type]

    def padded(self, block: VolumeBlock) -> tuple[Span, Span, Span]:
        """``block``'s core plus the halo, clipped to the volume."""
        return tuple(
            (max(a - self.halo, 0), min(b + self.halo, size))
            for (a, b), size in zip(block.spans, self.volume_shape)
        )  # type: ignore[return-value]

    def face_band(self, owner: VolumeBlock, direction: tuple[int, ...]) -> tuple[Span, ...]:
        """The band of ``owner``'s core next to its neighbour in ``direction``."""
        width, spans = self.band, []
        for (lo, hi), step in zip(owner.spans, direction):
            if step < 0:
                spans.append((lo, min(lo + width, hi)))
            elif step > 0:
                spans.append((max(hi - width, lo), hi))
            else:
                spans.append((lo, hi))
        return tuple(spans)


def plan_volume_grid(
    volume_shape: tuple[int, int, int],
    *,
    n_volumes: int = 1,
    halo: int = 0,
    block: tuple[int, int, int] | None = None,
) -> VolumeGrid:
    """Blocks of ``block`` (default :data:`DEFAULT_VOLUME_BLOCK`) over ``volume_shape``."""
    sides = block or DEFAULT_VOLUME_BLOCK
    edges = tuple(
        (*range(0, size, max(1, min(int(side), size))), size)
        for side, size in zip(sides, volume_shape)
    )
    return VolumeGrid(edges=edges, n_volumes=n_volumes, halo=halo)  # type: ignore[arg-type]
