"""What the user changed in a slice, and which pixels they vouch for (pure numpy, 2-D slices).

Arrays: ``labels`` and ``snapshot`` are (Y, X) integer arrays (0 = background; instance ids or
class ids), ``snapshot`` is what the model produced (``None``: no prediction, i.e. all zero);
``reviewed`` is a (Y, X) bool mask (``None``: nothing reviewed).

The annotated mask is what fine-tuning learns from::

    annotated = reviewed ∪ changed ∪ extent of every object an edit touched

- ``kind="instances"``: an object is a label id. An edit touches the ids found at changed pixels
  in ``labels`` (new ids) and in ``snapshot`` (old ids); the whole old and new extent of each is
  annotated (pixels where ``labels`` or ``snapshot`` holds a touched id). Background (id 0) is not
  an object: painting over background annotates only the painted pixels plus the object painted.
- ``kind="semantic"``: ids are classes, so the extent of a whole class would cover everything;
  an object is a connected component (8-connected) of one non-zero class, in ``labels`` or in
  ``snapshot``, that contains a changed pixel. Erasing part of a cell annotates that cell's old
  component; painting a class annotates the new component.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Per-slice status, from least to most annotated.
STATUSES: tuple[str, ...] = ("unlabelled", "predicted", "edited", "reviewed")
KINDS: tuple[str, ...] = ("instances", "semantic")
_EIGHT = np.ones((3, 3), dtype=bool)


def _check(labels: np.ndarray, snapshot: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (Y, X) array, got shape {labels.shape}")
    if snapshot is not None:
        snapshot = np.asarray(snapshot)
        if snapshot.shape != labels.shape:
            raise ValueError(f"snapshot shape {snapshot.shape} differs from labels {labels.shape}")
    return labels, snapshot


def changed_mask(labels: np.ndarray, snapshot: np.ndarray | None) -> np.ndarray:
    """(Y, X) bool: where ``labels`` differ from ``snapshot`` (non-zero pixels if no snapshot)."""
    labels, snapshot = _check(labels, snapshot)
    return labels != 0 if snapshot is None else labels != snapshot


def touched_ids(
    labels: np.ndarray, snapshot: np.ndarray | None, changed: np.ndarray | None = None
) -> np.ndarray:
    """Sorted non-zero ids (old and new) found at changed pixels, as int64.

    Erasing a cell to 0 touches its old id; painting a new cell touches its new id; a change of
    background alone touches nothing (0 is never returned).
    """
    labels, snapshot = _check(labels, snapshot)
    if changed is None:
        changed = changed_mask(labels, snapshot)
    found = [np.unique(labels[changed])]
    if snapshot is not None:
        found.append(np.unique(snapshot[changed]))
    ids = np.unique(np.concatenate([f.astype(np.int64) for f in found]))
    return ids[ids != 0]


def _touched_components(image: np.ndarray, changed: np.ndarray) -> tuple[np.ndarray, int]:
    """Union of the 8-connected components of non-zero classes of ``image`` hit by ``changed``."""
    from scipy import ndimage  # lazy: a quarter of a second to import

    mask = np.zeros(image.shape, dtype=bool)
    count = 0
    for cls in np.unique(image[changed]):
        if cls == 0:
            continue
        components, _ = ndimage.label(image == cls, structure=_EIGHT)
        hit = np.unique(components[changed & (image == cls)])
        hit = hit[hit != 0]
        count += hit.size
        mask |= np.isin(components, hit)
    return mask, count


def _extent(
    labels: np.ndarray, snapshot: np.ndarray | None, changed: np.ndarray, kind: str
) -> tuple[np.ndarray, int]:
    """(mask of the touched objects' extent, number of objects touched)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not changed.any():
        return np.zeros(labels.shape, dtype=bool), 0
    if kind == "instances":
        ids = touched_ids(labels, snapshot, changed)
        mask = np.isin(labels, ids)
        if snapshot is not None:
            mask |= np.isin(snapshot, ids)
        return mask, int(ids.size)
    mask, count = _touched_components(labels, changed)
    if snapshot is not None:
        old, old_count = _touched_components(snapshot, changed)
        mask |= old
        count += old_count
    return mask, count


def annotated_mask(
    labels: np.ndarray,
    snapshot: np.ndarray | None,
    reviewed: np.ndarray | None,
    *,
    kind: str = "instances",
) -> np.ndarray:
    """(Y, X) bool: reviewed ∪ changed ∪ whole extent of every touched object (see module doc)."""
    labels, snapshot = _check(labels, snapshot)
    changed = changed_mask(labels, snapshot)
    mask, _ = _extent(labels, snapshot, changed, kind)
    mask |= changed
    if reviewed is not None:
        mask |= np.asarray(reviewed, dtype=bool)
    return mask


def edit_stats(
    labels: np.ndarray, snapshot: np.ndarray | None, *, kind: str = "instances"
) -> tuple[int, int]:
    """(pixels changed, objects touched) of ``labels`` against ``snapshot``."""
    labels, snapshot = _check(labels, snapshot)
    changed = changed_mask(labels, snapshot)
    return int(changed.sum()), _extent(labels, snapshot, changed, kind)[1]


def slice_status(
    labels: np.ndarray | None, snapshot: np.ndarray | None, reviewed: np.ndarray | None
) -> str:
    """One of :data:`STATUSES`.

    ``reviewed``: every pixel reviewed; ``edited``: some pixel changed or reviewed;
    ``predicted``: a prediction nobody touched; ``unlabelled``: nothing at all.
    """
    return summarize(labels, snapshot, reviewed, kind=None).status


@dataclass(frozen=True)
class SliceSummary:
    """Status and counts of one slice (what the session index stores)."""

    status: str
    pixels_changed: int = 0
    objects_touched: int = 0
    reviewed_pixels: int = 0
    annotated_pixels: int = 0


def summarize(
    labels: np.ndarray | None,
    snapshot: np.ndarray | None,
    reviewed: np.ndarray | None,
    *,
    kind: str | None = "instances",
) -> SliceSummary:
    """Status and counts in one pass (``kind=None`` skips the object extent: status only)."""
    reviewed_pixels = 0 if reviewed is None else int(np.count_nonzero(reviewed))
    full = reviewed is not None and reviewed_pixels == np.asarray(reviewed).size
    if labels is None:
        if snapshot is None:
            status = "reviewed" if full else "edited" if reviewed_pixels else "unlabelled"
            return SliceSummary(
                status, reviewed_pixels=reviewed_pixels, annotated_pixels=reviewed_pixels
            )
        labels = snapshot
    labels, snapshot = _check(labels, snapshot)
    changed = changed_mask(labels, snapshot)
    pixels = int(np.count_nonzero(changed))
    if full:
        status = "reviewed"
    elif pixels or reviewed_pixels:
        status = "edited"
    else:
        status = "predicted" if snapshot is not None else "unlabelled"
    if kind is None:
        return SliceSummary(status, pixels, 0, reviewed_pixels, 0)
    extent, objects = _extent(labels, snapshot, changed, kind)
    extent |= changed
    if reviewed is not None:
        extent |= np.asarray(reviewed, dtype=bool)
    return SliceSummary(status, pixels, objects, reviewed_pixels, int(np.count_nonzero(extent)))
