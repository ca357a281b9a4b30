"""What a new prediction may replace in one slice, and how it is merged in (numpy only, no Qt).

Protection is at the level of the user's work, not of the slice: a new prediction replaces
every pixel the user neither edited nor reviewed. Arrays are one (Y, X) slice:

- ``labels``: what the layer shows (0 = background; instance ids or class ids);
- ``snapshot``: what the model last produced there (``None``: never predicted, all zero);
  ``labels != snapshot`` are the user's edits (the plugin keeps the snapshot equal to the
  labels wherever it writes, and in step with napari's undo: :mod:`.._widgets.label_writes`);
- ``reviewed``: bool, the pixels the user vouched for.

The kept mask (:func:`kept_mask`) is ``reviewed ∪ edited`` and, for instance labels, the whole
extent of every object the user touched (an id found at an edited or reviewed pixel, in the
labels or, for an erased object, in the snapshot). :func:`merge_slice` writes a new prediction
around it: kept pixels stay exactly as they are; a predicted object that overlaps them is
clipped to the free pixels (its largest connected piece), or dropped when less than
``min_keep`` of it is left; predicted ids are renumbered into ids no kept object uses, so no id
is split or duplicated. Semantic labels simply keep the edited and reviewed pixels.

Every function works on any number of dimensions: a (Z, Y, X) volume of a 3-D model's labels is
merged as one block (connectivity in 3-D, ids kept consistent across Z), with a region of three
slices (``(slice_z, slice_y, slice_x)``).
"""

from __future__ import annotations

import numpy as np

#: Share of a predicted object that must lie outside the kept pixels for it to be kept.
MIN_KEEP = 0.5

Region = tuple[slice, ...]


def edited_mask(labels: np.ndarray, snapshot: np.ndarray | None) -> np.ndarray:
    """(Y, X) bool: the pixels the user changed (non-zero ones when nothing was predicted)."""
    labels = np.asarray(labels)
    return labels != 0 if snapshot is None else labels != np.asarray(snapshot)


def _lookup(ids: np.ndarray, top: int) -> np.ndarray:
    """A bool table ``t`` with ``t[i]`` True for the non-zero ``ids`` (size ``top + 1``)."""
    table = np.zeros(int(top) + 1, dtype=bool)
    ids = ids[(ids > 0) & (ids <= top)]
    table[ids.astype(np.int64)] = True
    return table


def kept_mask(
    labels: np.ndarray,
    snapshot: np.ndarray | None,
    reviewed: np.ndarray | None,
    *,
    kind: str = "instances",
) -> np.ndarray:
    """(Y, X) bool: the user's work in one slice, which a new prediction never replaces.

    Args:
        labels: (Y, X) integer labels shown.
        snapshot: (Y, X) what the model last produced, or None.
        reviewed: (Y, X) bool reviewed mask, or None.
        kind: ``"instances"`` (whole touched objects kept) or ``"semantic"`` (pixels only).
    """
    labels = np.asarray(labels)
    edited = edited_mask(labels, snapshot)
    kept = edited if reviewed is None else edited | np.asarray(reviewed, dtype=bool)
    if kind != "instances" or not kept.any() or not labels.any():
        return kept
    ids = [np.unique(labels[kept])]
    if snapshot is not None:
        ids.append(np.unique(np.asarray(snapshot)[edited]))  # an object partly erased
    touched = np.unique(np.concatenate([i.astype(np.int64) for i in ids]))
    return kept | _lookup(touched, int(labels.max()))[labels]


def _region_mask(shape: tuple[int, ...], region: Region | None) -> np.ndarray:
    inside = np.zeros(shape, dtype=bool)
    inside[region if region is not None else (slice(None), slice(None))] = True
    return inside


def _crossing_ids(labels: np.ndarray, region: Region) -> np.ndarray:
    """Ids of ``labels`` with pixels on both sides of the region's border (never cut)."""
    inside = _region_mask(labels.shape, region)
    from scipy import ndimage  # lazy: slow to import

    ring_out = ndimage.binary_dilation(inside) & ~inside
    ring_in = inside & ~ndimage.binary_erosion(inside, border_value=1)
    return np.intersect1d(np.unique(labels[ring_out]), np.unique(labels[ring_in]))


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest fully connected (8 in 2-D, 26 in 3-D) component of a bool ``mask``."""
    from scipy import ndimage

    parts, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if n <= 1:
        return mask
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    return parts == int(np.argmax(sizes))


def clip_objects(
    predicted: np.ndarray, fixed: np.ndarray, *, min_keep: float = MIN_KEEP
) -> np.ndarray:
    """Predicted instance ``labels`` (Y, X) with the ``fixed`` pixels taken out.

    An object keeps its pixels outside ``fixed``; when some were taken it keeps only its largest
    connected piece, and it is dropped when less than ``min_keep`` of it is left.
    """
    from scipy import ndimage

    predicted = np.asarray(predicted)
    if not predicted.any():
        return predicted.copy()
    top = int(predicted.max())
    total = np.bincount(predicted.ravel(), minlength=top + 1)
    free = np.bincount(predicted[~fixed].ravel(), minlength=top + 1)
    out = np.where(fixed, 0, predicted)
    drop = (free < min_keep * total) & (total > 0)
    drop[0] = False
    out[drop[out]] = 0
    clipped = np.flatnonzero((free < total) & ~drop)
    clipped = clipped[clipped > 0]
    boxes = ndimage.find_objects(out, max_label=top) if clipped.size else []
    for obj in clipped:
        box = boxes[obj - 1]
        if box is None:
            continue
        part = out[box] == obj
        out[box][part & ~_largest_piece(part)] = 0
    return out


def renumber(predicted: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """``predicted`` ids mapped onto the smallest ids not in ``taken`` (order kept; 0 stays 0).

    Returns:
        (Y, X) labels in a dtype wide enough for the new ids.
    """
    ids = np.unique(predicted)
    ids = ids[ids != 0]
    taken = np.unique(np.asarray(taken, dtype=np.int64))
    taken = taken[taken > 0]
    pool = np.arange(1, ids.size + taken.size + 1, dtype=np.int64)
    free = np.setdiff1d(pool, taken, assume_unique=True)[: ids.size]
    top = int(free.max()) if free.size else 0
    dtype = np.min_scalar_type(max(top, 1))
    table = np.zeros(int(ids.max()) + 1 if ids.size else 1, dtype=np.promote_types(dtype, np.uint8))
    table[ids.astype(np.int64)] = free
    return table[predicted]


def merge_slice(
    labels: np.ndarray,
    predicted: np.ndarray,
    kept: np.ndarray,
    *,
    kind: str = "instances",
    region: Region | None = None,
    min_keep: float = MIN_KEEP,
    taken: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A new prediction written around the user's work, for one slice.

    Args:
        labels: (Y, X) labels shown now.
        predicted: the new labels, (Y, X) or the region's (h, w) when ``region`` is given.
        kept: (Y, X) bool, :func:`kept_mask` (all False: replace everything in scope).
        kind: ``"instances"`` or ``"semantic"``.
        region: the (Y, X) box that was predicted (None: the whole slice). Pixels outside it
            are left alone, and (instances) so is every object crossing its border.
        taken: instance ids used elsewhere (e.g. other slices of the volume) that new ids
            must not reuse.

    Returns:
        ``(merged (Y, X), replaced (Y, X) bool)``: the new slice (dtype wide enough for its
        ids) and the pixels that now hold the new prediction.
    """
    labels = np.asarray(labels)
    full = np.zeros(labels.shape, dtype=np.asarray(predicted).dtype)
    full[region if region is not None else (slice(None), slice(None))] = predicted
    fixed = np.asarray(kept, dtype=bool) | ~_region_mask(labels.shape, region)
    if kind == "instances" and region is not None and labels.any():
        crossing = _crossing_ids(labels, region)
        if crossing.size:
            fixed |= _lookup(crossing, int(labels.max()))[labels]
    replaced = ~fixed
    if kind == "instances":
        piece = clip_objects(full, fixed, min_keep=min_keep)
        used = np.unique(labels[fixed])
        if taken is not None:
            used = np.union1d(used.astype(np.int64), np.asarray(taken, dtype=np.int64))
        full = renumber(piece, used)
    dtype = np.result_type(labels.dtype, full.dtype)
    merged = labels.astype(dtype, copy=True)
    merged[replaced] = full[replaced]
    return merged, replaced


__all__ = ["MIN_KEEP", "clip_objects", "edited_mask", "kept_mask", "merge_slice", "renumber"]
