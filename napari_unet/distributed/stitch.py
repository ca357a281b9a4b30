"""Globally unique instance ids from per-block ids: link at the block faces, relabel once.

The approach of cellpose's ``distributed_eval`` (Chris Roat's merge, cellpose PR 356): every
block numbers its objects ``1..n`` on its own; the driver gives each block an offset, links ids
that meet at the faces between neighbouring blocks (a graph over the face pairs, solved with
``scipy.sparse.csgraph.connected_components``) and builds one look-up table that every block
applies in a final relabelling pass.

Unlike cellpose, which links labels that touch across a face, each block here computed its
labels with a halo, so it also knows its own labels on a thin band of each neighbour's core
(``outer``); the neighbour reports its labels on the same band (``inner``). An id of one block
and an id of the other are the same object when they share the majority of either's pixels in
that band (the rule of :mod:`napari_unet.core.postprocess.blocks`): every object that fits in
the halo is computed identically by both blocks, so it is linked exactly and two touching
objects are never merged. ``min_size`` is applied to the summed pixel counts of linked ids, as
the single-process path does after its own stitching. Pure numpy/scipy: no cluster needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

Direction = tuple[int, ...]  # (dy, dx), or (dz, dy, dx) for 3-D blocks


@dataclass(frozen=True, eq=False)
class BlockFaces:
    """What a block reports for stitching.

    Attributes:
        n_ids: ids ``1..n_ids`` are the objects present in the block's core.
        counts: ``(n_ids + 1,)`` int64 pixels of each id in the core (entry 0 unused).
        outer: per direction, ``(S, h, w)`` ids of this block on the neighbour's band (ids above
            ``n_ids``: objects seen only in the halo, never linked).
        inner: per direction, ``(S, h, w)`` ids of this block's core on its own band.
    """

    n_ids: int
    counts: np.ndarray
    outer: dict[Direction, np.ndarray] = field(default_factory=dict)
    inner: dict[Direction, np.ndarray] = field(default_factory=dict)


def face_pairs(outer: np.ndarray, n_outer: int, inner: np.ndarray) -> np.ndarray:
    """``(m, 2)`` id pairs (outer block's id, inner block's id) that are the same object.

    Args:
        outer: ids of block A on the band (A's core ids are ``1..n_outer``).
        n_outer: A's number of core ids.
        inner: ids of block B (its core) on the same band, same shape.
    """
    a = np.asarray(outer, dtype=np.int64).ravel()
    b = np.asarray(inner, dtype=np.int64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"face bands differ in shape: {outer.shape} vs {inner.shape}")
    both = (a > 0) & (a <= n_outer) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), dtype=np.int64)
    count_a = np.bincount(a)
    count_b = np.bincount(b)
    stride = int(b.max()) + 1
    pairs, together = np.unique(a[both] * stride + b[both], return_counts=True)
    pa, pb = np.divmod(pairs, stride)
    agree = (2 * together > count_a[pa]) | (2 * together > count_b[pb])
    return np.stack([pa[agree], pb[agree]], axis=1)


def global_luts(
    faces: dict[str, BlockFaces],
    links: list[tuple[str, Direction, str]],
    *,
    min_size: int = 0,
) -> tuple[dict[str, np.ndarray], int]:
    """One look-up table per block, mapping its ids to final, sequential global ids.

    Args:
        faces: each block's report, by block key; the key order is the numbering order.
        links: ``(a, direction, b)``: block ``b`` is ``a``'s neighbour in ``direction``
            (``a.outer[direction]`` and ``b.inner[-direction]`` cover the same band).
        min_size: linked objects with fewer pixels in total are removed (mapped to 0).

    Returns:
        ``(luts, n_objects)``: ``luts[key]`` is ``(n_ids + 1,)`` uint32 (0 -> 0); final ids are
        ``1..n_objects``, numbered in block order.
    """
    keys = list(faces)
    offsets = block_offsets(faces)
    rows, cols = [], []
    for a, direction, b in links:
        back = tuple(-d for d in direction)
        if direction not in faces[a].outer or back not in faces[b].inner:
            continue
        pairs = face_pairs(faces[a].outer[direction], faces[a].n_ids, faces[b].inner[back])
        rows.append(pairs[:, 0] + offsets[a])
        cols.append(pairs[:, 1] + offsets[b])
    counts = {key: faces[key].counts for key in keys}
    return luts_from_pairs(counts, rows, cols, min_size=min_size)


def block_offsets(faces: dict[str, BlockFaces]) -> dict[str, int]:
    """Each block's first global id minus one, in key order."""
    sizes = np.array([faces[k].n_ids for k in faces], dtype=np.int64)
    return dict(zip(faces, np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()))


def luts_from_pairs(
    counts: dict[str, np.ndarray], rows: list, cols: list, *, min_size: int = 0
) -> tuple[dict[str, np.ndarray], int]:
    """:func:`global_luts` from linked global id pairs (``rows[i]`` with ``cols[i]``).

    Args:
        counts: each block's ``(n_ids + 1,)`` pixel counts, in numbering order (the offsets of
            :func:`block_offsets`).
    """
    keys = list(counts)
    sizes = np.array([len(counts[k]) - 1 for k in keys], dtype=np.int64)
    offsets = dict(zip(keys, np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()))
    total = int(sizes.sum())
    pixels = np.zeros(total + 1, dtype=np.int64)
    for key in keys:
        pixels[offsets[key] + 1 : offsets[key] + len(counts[key])] = counts[key][1:]
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(row.size, np.int8), (row, col)), shape=(total + 1,) * 2)
    _, component = connected_components(graph, directed=False)
    # Components are numbered by their smallest node: background (node 0) is component 0.
    component_size = np.bincount(component, weights=pixels, minlength=int(component.max()) + 1)
    keep = component_size >= max(1, min_size)
    keep[component[0]] = False
    final = np.zeros(keep.shape[0], dtype=np.uint32)
    final[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    node_final = final[component]
    luts = {key: node_final[offsets[key] : offsets[key] + len(counts[key])].copy() for key in keys}
    for lut in luts.values():
        lut[0] = 0
    return luts, int(keep.sum())


def compact_ids(labels: np.ndarray, core: tuple[slice, ...]) -> tuple[np.ndarray, int]:
    """Renumber ``labels`` so the ids present in ``labels[core]`` are ``1..n`` (in id order).

    Ids seen only outside the core get ``n + 1, ...``. Returns ``(uint32 labels, n)``.
    """
    n_old = int(labels.max()) + 1 if labels.size else 1
    present = np.zeros(n_old, dtype=bool)
    present[labels[core]] = True
    present[0] = False
    elsewhere = np.zeros(n_old, dtype=bool)
    elsewhere[labels] = True
    elsewhere &= ~present
    elsewhere[0] = False
    lut = np.zeros(n_old, dtype=np.uint32)
    n = int(present.sum())
    lut[present] = np.arange(1, n + 1, dtype=np.uint32)
    lut[elsewhere] = np.arange(n + 1, n + 1 + int(elsewhere.sum()), dtype=np.uint32)
    return lut[labels], n
