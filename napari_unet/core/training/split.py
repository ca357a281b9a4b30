"""Validation split of annotated data: held-back tiles chosen by a stable hash.

Tiles of ``tile`` x ``tile`` pixels on a grid anchored at (0, 0) go to validation when the hash of
``(item name, tile index, seed)`` falls below the requested fraction. The hash does not depend on
the other items or on the annotation, so a tile keeps its side between rounds of continuous
learning and validation pixels are never trained on. A 2.5-D flat copy (``name/flat``) hashes as
its original, so its tiles fall on the same side and it is never a validation item itself.

A volume's unit is a Y/X tile through all of Z. A volume whose Y/X extent fits in one tile (the
embryo stacks, a cropped FIB-SEM block) would give one unit and so no validation at all: its units
are its Z planes instead (:func:`_annotated_units`), so a few annotated XY slices -- the 3-D U-Net
paper's sparse annotation -- leave one slice held back, on which the run is validated and its 3-D
operating point chosen (:mod:`~napari_unet.core.training.operating_point`). The choice depends
only on the volume's shape, never on the annotation, so units keep their side as slices are added.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_unet.core.training.items import TrainingItem

logger = logging.getLogger(__name__)

#: Name suffix of a 2.5-D flat copy (``name[z]/flat``: the item ``name[z]`` with each neighbour
#: slice replaced by the slice itself, ``core.training.context``).
FLAT_SUFFIX = "/flat"


def is_flat_copy(item: TrainingItem) -> bool:
    """Whether ``item`` is a flat copy of another item (same annotation, no own count)."""
    return bool(item.name) and item.name.endswith(FLAT_SUFFIX)


def original_name(name: str) -> str:
    """The name of the item that ``name`` is a flat copy of (``name`` itself otherwise)."""
    return name.removesuffix(FLAT_SUFFIX)


def _tile_hash(name: str, index: int | str, seed: int) -> float:
    """A value in [0, 1) that depends only on ``(name, index, seed)`` (stable across runs)."""
    digest = hashlib.blake2b(f"{seed}:{name}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def tile_starts(length: int, tile: int) -> list[int]:
    """Start of each ``tile``-long unit along an axis of ``length`` pixels (grid at 0).

    A last tile shorter than half a tile (a sliver at the image's border: 8 rows of a 520-row
    image in 128-pixel tiles) is folded into the tile before it, so no held-back unit is a
    sliver; unit ``k`` keeps index ``k`` of the plain grid (hence its hash). Depends only on the
    image's shape, so a tile keeps its side as annotation is added.
    """
    starts = list(range(0, max(length, 1), tile))
    if len(starts) > 1 and 2 * (length - starts[-1]) < tile:
        starts.pop()
    return starts


def tile_counts(mask: np.ndarray, tile: int) -> np.ndarray:
    """``(ny, nx)`` int64 annotated pixels of each tile of ``mask`` ((Y, X), or (Z, Y, X) summed
    through Z) on the plain grid of ``ceil(side / tile)`` tiles; a border sliver's pixels count
    in the tile it is folded into (:func:`tile_starts`), its own cell stays 0."""
    if mask.ndim == 3:
        mask = mask.sum(axis=0, dtype=np.int64)
    ys, xs = tile_starts(mask.shape[0], tile), tile_starts(mask.shape[1], tile)
    grid = np.zeros((-(-mask.shape[0] // tile), -(-mask.shape[1] // tile)), dtype=np.int64)
    sums = np.add.reduceat(np.add.reduceat(mask.astype(np.int64), ys, axis=0), xs, axis=1)
    grid[: len(ys), : len(xs)] = sums
    return grid


def _annotated_tiles(item: TrainingItem, tile: int) -> list[tuple[int, slice, slice]]:
    """``(tile index, y slice, x slice)`` of every tile of ``item`` holding an annotated pixel
    (index ``ty * nx + tx`` on the plain grid; border slivers folded in, :func:`tile_starts`).

    A volume's tiles are Y/X tiles through all of Z (so a held-back tile takes its share of every
    annotated slice, whatever their orientation).
    """
    shape = item.mask.shape[-2:]
    counts = tile_counts(item.mask, tile)
    edges = [[*tile_starts(n, tile), n] for n in shape]
    nx = counts.shape[1]
    return [
        (
            int(ty * nx + tx),
            slice(edges[0][ty], edges[0][ty + 1]),
            slice(edges[1][tx], edges[1][tx + 1]),
        )
        for ty, tx in zip(*np.nonzero(counts))
    ]


def splits_by_plane(shape: tuple[int, ...], tile: int) -> bool:
    """Whether a volume of spatial ``shape`` (Z, Y, X) is split by Z plane (its Y/X extent fits
    in one ``tile`` square, so Y/X tiles would give it one unit); images never are."""
    return len(shape) == 3 and shape[1] <= tile and shape[2] <= tile


def _annotated_units(item: TrainingItem, tile: int) -> list[tuple[int | str, tuple[slice, ...]]]:
    """``(unit index, region)`` of every unit of ``item`` holding an annotated pixel: its tiles
    (region: the tile's Y/X slices, through all of Z in a volume), or for a volume split by plane
    (:func:`splits_by_plane`) its Z planes (index ``"z<k>"``, region: that plane)."""
    if splits_by_plane(item.spatial_shape, tile):
        planes = np.nonzero(item.mask.any(axis=(1, 2)))[0]
        return [(f"z{int(z)}", (slice(int(z), int(z) + 1),)) for z in planes]
    return [(index, (Ellipsis, ys, xs)) for index, ys, xs in _annotated_tiles(item, tile)]


def split_validation(
    items: Sequence[TrainingItem],
    fraction: float,
    *,
    tile: int = 128,
    seed: int = 0,
    at_least_one: bool = True,
) -> tuple[list[TrainingItem], list[TrainingItem]]:
    """Hold back annotated tiles for validation; they are never trained on.

    A tile (``tile`` x ``tile`` pixels on a grid anchored at (0, 0)) goes to validation when the
    stable hash of ``(item name, tile index, seed)`` is below ``fraction``, so tiles keep their
    side when annotations are added (a volume that fits in one tile: its Z planes, module docs).
    At least one tile is held back and at least one kept for training when there are two or more
    annotated tiles (when the hash selects none, :func:`forced_unit` picks a well-annotated one);
    with fewer, nothing is held back.
    ``at_least_one=False`` holds back only what the hash selects (for items added one by one).

    Returns:
        ``(train_items, val_items)``: copies sharing the arrays, with the annotated masks
        restricted to the training tiles and the validation tiles respectively (items without
        validation tiles are not in ``val_items``; nor are 2.5-D flat copies, whose tiles go
        where their original's go).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    groups, candidates, pixels = unit_candidates(items, tile, seed)
    if fraction == 0.0 or (at_least_one and len(groups) < 2):
        if fraction > 0.0:
            logger.warning("only %d annotated tile(s): no validation split", len(groups))
        return list(items), []
    chosen = [g for g in groups if g[0] < fraction]
    if at_least_one:
        chosen = (chosen or [forced_unit(groups, pixels)])[: len(groups) - 1]
    if not chosen:
        return list(items), []
    held = [c for c in candidates if c[0] in set(chosen)]
    val_masks: dict[int, np.ndarray] = {}
    for _, i, region in held:
        val_masks.setdefault(i, np.zeros(items[i].spatial_shape, dtype=bool))[region] = True
    train_items, val_items = [], []
    for i, item in enumerate(items):
        if i not in val_masks:
            train_items.append(item)
            continue
        mask = item.mask
        held_mask = val_masks[i] & mask
        train_items.append(dataclasses.replace(item, annotated_mask=mask & ~held_mask))
        if not is_flat_copy(item):  # a copy's held tiles are its original's: validated once
            val_items.append(dataclasses.replace(item, annotated_mask=held_mask))
    logger.info("validation: %d of %d annotated tiles held back", len(chosen), len(groups))
    return train_items, val_items


def forced_unit(groups: Sequence[tuple], pixels: dict[tuple, int]) -> tuple:
    """The unit held back when the hash selects none: the lowest hash among the well-annotated
    units (at least half the annotated pixels of the best-annotated one), so that a tile with a
    stray brush stroke is not the only thing the run is validated and its operating point tuned
    on.

    Args:
        groups: the sorted ``(hash, name, unit index)`` of the annotated units.
        pixels: annotated pixels of each unit (by the same key).
    """
    most = max(pixels.get(g, 0) for g in groups)
    return next(g for g in groups if 2 * pixels.get(g, 0) >= most)


def unit_candidates(items: Sequence[TrainingItem], tile: int, seed: int) -> tuple[list, list, dict]:
    """``(groups, candidates, pixels)``: the sorted distinct ``(hash, name, unit index)`` of the
    annotated units (tiles, or planes of a small volume), ``(group, item index, region)`` of each,
    and each group's annotated pixels (its flat copies not counted). A 2.5-D flat copy hashes as
    its original (``core.training.context``), so a tile and its copy always fall on the same
    side."""
    candidates, pixels = [], {}
    for i, item in enumerate(items):
        key = original_name(item.name) if item.name else str(i)
        for index, region in _annotated_units(item, tile):
            group = (_tile_hash(key, index, seed), key, index)
            candidates.append((group, i, region))
            if not is_flat_copy(item):
                pixels[group] = pixels.get(group, 0) + int(np.count_nonzero(item.mask[region]))
    return sorted({c[0] for c in candidates}), candidates, pixels


def iter_validation_windows(
    item: TrainingItem, output_shape: tuple[int, ...]
) -> Iterator[tuple[int, ...]]:
    """Top-left ``(y0, x0)`` (volumes: ``(z0, y0, x0)``) of output windows that tile the
    annotated bounding box of ``item``."""
    mask = item.mask
    bounds = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.nonzero(mask.any(axis=others))[0]
        if hits.size == 0:
            return
        bounds.append(range(int(hits[0]), int(hits[-1]) + 1, output_shape[axis]))
    for starts in itertools.product(*bounds):
        window = tuple(slice(s, s + n) for s, n in zip(starts, output_shape))
        if mask[window].any():
            yield starts
