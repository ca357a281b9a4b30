"""Instance labels from probabilities, one block at a time, with stitched ids.

:func:`block_instances` turns one 2-D block of probabilities into instance labels (seeded
watershed or connected components). :func:`stitched_instances` runs it over a grid of blocks so
that memory grows with the block, not the image:

1. Each block's core (``block_shape``) is computed with a halo of ``halo`` pixels of context on
   every side (clipped at the image border); only the core is written to the output, every
   object piece in it getting a fresh id.
2. Blocks run in raster order, so the part of a block's halo that lies in earlier blocks' cores
   is already written. A piece ``b`` of the current block is merged (union-find) with an
   already-written id ``o`` when, in that region, ``b`` and ``o`` share the majority of either's
   pixels: the two blocks saw the same object.
3. A final pass maps every id to its union-find root.

Exactness: the per-block computation is local (connected components, seeded watershed within
a foreground region, distance transform and peaks within ``min_distance``), so every object
whose foreground region (plus ``min_distance``) fits inside the halo comes out exactly as in a
single-block run, up to the numbering. Larger objects are stitched by the majority rule.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from napari_unet.core.postprocess.ops import STRUCTURE_8, apply_lut_

if TYPE_CHECKING:
    from napari_unet.core.postprocess.config import PostprocessConfig

logger = logging.getLogger(__name__)


def _channel(probabilities: np.ndarray, index: int) -> np.ndarray:
    """A float32 copy of one channel (callers modify it in place)."""
    return np.array(probabilities[index], dtype=np.float32, copy=True)


def block_instances(probabilities: np.ndarray, *, task: str, config: PostprocessConfig):
    """Instance labels of one 2-D block.

    Args:
        probabilities: (K, Y, X) float32/float16 probabilities of one plane (or block);
            instances: K = 3, or 4 with a distance head's (sigmoid) output last.
        task: ``binary``, ``semantic`` or ``instances`` (see :mod:`napari_unet.core.config`).
        config: the :class:`~napari_unet.core.postprocess.labels.PostprocessConfig`.

    Returns:
        (Y, X) int32 instance ids, 0 = background, not necessarily sequential. Peak memory is
        about 40 bytes per pixel of the block: float32 channels, a float64 flooding image, and
        scikit-image's watershed (its own float64 and int32 copies).
    """
    if task == "instances":
        mask = (1.0 - _channel(probabilities, 0)) >= config.threshold
        if config.seeds == "distance" and probabilities.shape[0] == 4:  # the distance head
            seeds = config.replace(interior_threshold=config.distance_threshold)
            return _seeded(_channel(probabilities, 3), mask, seeds)
        interior = _channel(probabilities, 1)
        return _seeded(interior, mask, config)
    if task == "semantic" and config.foreground_class is not None:
        foreground = _channel(probabilities, config.foreground_class[0])
        for index in config.foreground_class[1:]:
            foreground += _channel(probabilities, index)
        mask = None
        if 0 not in config.foreground_class:
            mask = (1.0 - _channel(probabilities, 0)) >= config.threshold
        return _seeded(foreground, mask, config)
    if task == "binary":
        mask = _channel(probabilities, 0) >= config.threshold
    else:  # semantic without foreground_class: every non-background class is foreground
        mask = (1.0 - _channel(probabilities, 0)) >= config.threshold
    if config.binary_instances == "connected":
        labels, _ = ndimage.label(mask, structure=STRUCTURE_8, output=np.int32)
        return labels
    return _distance_watershed(mask, config.min_distance)


def _seeded(interior: np.ndarray, mask: np.ndarray | None, config: PostprocessConfig) -> np.ndarray:
    """Seeds = confident interior components; watershed over ``1 - interior`` within ``mask``.

    Foreground that no seed reaches becomes objects (``config.unseeded == "object"``) or stays
    background (``"drop"``).
    """
    seeds = interior >= config.interior_threshold
    if mask is not None:
        seeds &= mask
    if config.seed_erosion:
        seeds = ndimage.binary_erosion(seeds, iterations=config.seed_erosion, border_value=1)
    markers, _ = ndimage.label(seeds, structure=STRUCTURE_8, output=np.int32)
    del seeds
    np.subtract(1.0, interior, out=interior)
    np.clip(interior, 0.0, 1.0, out=interior)
    flood = _tie_free(interior, max_value=1.0)
    del interior
    labels = watershed(flood, markers, mask=mask)
    if config.unseeded == "drop":  # foreground no seed reached stays background
        return labels.astype(np.int32, copy=False)
    return _label_leftovers(labels, mask)


def _distance_watershed(mask: np.ndarray, min_distance: int) -> np.ndarray:
    """Split touching objects of a binary mask at the saddles of its distance transform."""
    # A zero frame makes the image border count as background, identically in every block.
    # Squared distances are exact integers: they order pixels exactly, and peaks compare exactly.
    squared = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    np.square(squared, out=squared)
    np.rint(squared, out=squared)
    squared = squared.astype(np.float32)  # exact below 2**24 (distances up to 4096)
    peaks = ndimage.maximum_filter(squared, size=2 * min_distance + 1, mode="constant")
    peaks = (squared == peaks) & mask
    markers, _ = ndimage.label(peaks, structure=STRUCTURE_8, output=np.int32)
    del peaks
    top = float(squared.max()) if squared.size else 0.0
    np.subtract(top, squared, out=squared)
    flood = _tie_free(squared, max_value=top)
    del squared
    labels = watershed(flood, markers, mask=mask)
    return _label_leftovers(labels, mask)


def _tie_free(values: np.ndarray, *, max_value: float) -> np.ndarray:
    """A float64 image that orders pixels by ``values``, then by raster position: no two equal.

    scikit-image's watershed breaks ties between equal seed values by its heap layout, which
    depends on everything else in the image; a block would then split a symmetric neck
    differently from the whole image. Ordering ties by raster position (the same order in any
    block) makes the result a function of each region alone. ``values`` (in ``[0, max_value]``)
    are quantised to the float64 bits the position leaves free (28 bits for a 4352^2 block).
    """
    index_bits = max(1, int(values.size - 1).bit_length())
    levels = float(2 ** (53 - index_bits) - 1)
    flood = values.astype(np.float64)
    if max_value > 0:
        flood *= levels / max_value
    np.rint(flood, out=flood)
    np.clip(flood, 0.0, levels, out=flood)
    flood *= float(2**index_bits)
    flat = flood.reshape(-1)
    step = 1 << 22
    for start in range(0, flat.size, step):
        stop = min(start + step, flat.size)
        flat[start:stop] += np.arange(start, stop, dtype=np.float64)
    return flood


def _label_leftovers(
    labels: np.ndarray, mask: np.ndarray | None, structure: np.ndarray = STRUCTURE_8
) -> np.ndarray:
    """Foreground regions that no seed reached become objects of their own (nothing is lost).

    ``structure``: the connectivity (8 in a plane; the 3-D path passes 26).
    """
    labels = labels.astype(np.int32, copy=False)
    leftover = labels == 0
    if mask is not None:
        leftover &= mask
    if leftover.any():
        extra, _ = ndimage.label(leftover, structure=structure, output=np.int32)
        first = int(labels.max())
        labels[leftover] = extra[leftover] + first
    return labels


class _UnionFind:
    """Union-find over positive ids with path halving; ``parent[i] == i`` for roots."""

    def __init__(self) -> None:
        self.parent: list[int] = [0]

    def add(self, count: int) -> int:
        first = len(self.parent)
        self.parent.extend(range(first, first + count))
        return first

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True

    def lut(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.uint32)


def stitched_instances(
    probabilities: np.ndarray,
    *,
    task: str,
    config: PostprocessConfig,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Instance labels of one plane, block by block (see the module docstring).

    Args:
        probabilities: (K, Y, X) float32/float16 probabilities of one plane.
        task: the model's task.
        config: the post-processing config (``block_shape``, ``block_halo``).
        out: optional (Y, X) uint32 array to write into.

    Returns:
        (Y, X) uint32 ids, 0 = background, not sequential. Memory: the output (4 bytes per
        pixel) plus one block with its halo (about 40 bytes per pixel of the padded block).
    """
    size_y, size_x = probabilities.shape[-2:]
    if out is None:
        out = np.zeros((size_y, size_x), dtype=np.uint32)
    block_y, block_x = config.block_shape
    halo = config.block_halo
    if size_y <= block_y and size_x <= block_x:
        out[...] = block_instances(probabilities, task=task, config=config)
        return out
    out[...] = 0
    forest = _UnionFind()
    for y0 in range(0, size_y, block_y):
        for x0 in range(0, size_x, block_x):
            y1, x1 = min(y0 + block_y, size_y), min(x0 + block_x, size_x)
            py0, px0 = max(y0 - halo, 0), max(x0 - halo, 0)
            py1, px1 = min(y1 + halo, size_y), min(x1 + halo, size_x)
            local = block_instances(probabilities[:, py0:py1, px0:px1], task=task, config=config)
            core = local[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
            present = np.zeros(int(local.max()) + 1, dtype=bool)
            present[core] = True
            present[0] = False
            to_global = np.zeros(present.shape[0], dtype=np.uint32)
            first = forest.add(int(present.sum()))
            to_global[present] = np.arange(first, len(forest.parent), dtype=np.uint32)
            out[y0:y1, x0:x1] = to_global[core]
            # Already-written halo: rows above the core (earlier block rows) and the part left
            # of the core in this block row.
            written = [
                (local[: y0 - py0], out[py0:y0, px0:px1]),
                (local[y0 - py0 : y1 - py0, : x0 - px0], out[y0:y1, px0:x0]),
            ]
            _merge_seam(written, to_global, forest)
    apply_lut_(out, forest.lut())
    return out


def _merge_seam(
    written: list[tuple[np.ndarray, np.ndarray]], to_global: np.ndarray, forest: _UnionFind
) -> None:
    """Union the block's pieces with the written ids they agree with (majority of either)."""
    local = np.concatenate([a.ravel() for a, _ in written]).astype(np.int64)
    other = np.concatenate([b.ravel() for _, b in written]).astype(np.int64)
    if not local.size:
        return
    local_counts = np.bincount(local, minlength=to_global.shape[0])
    both = (local > 0) & (other > 0) & (to_global[local] > 0)
    if not both.any():
        return
    other_ids, other_counts = np.unique(other[other > 0], return_counts=True)
    pairs, pair_counts = np.unique(
        local[both] * (int(other.max()) + 1) + other[both], return_counts=True
    )
    pair_local, pair_other = np.divmod(pairs, int(other.max()) + 1)
    n_other = other_counts[np.searchsorted(other_ids, pair_other)]
    agree = (2 * pair_counts > local_counts[pair_local]) | (2 * pair_counts > n_other)
    merged = 0
    for b, o in zip(pair_local[agree].tolist(), pair_other[agree].tolist()):
        merged += forest.union(int(to_global[b]), o)
    logger.debug("block seam: %d merges", merged)
