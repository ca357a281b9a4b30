"""A new prediction merged into an existing labels layer around the user's work.

Three steps, so that a large refresh never stalls napari:

1. :func:`prepare_merge` (main thread, a few ms): copies of the slices' labels, snapshot and
   reviewed mask, as a :class:`MergeInput`;
2. :func:`compute_merge` (any thread, numpy only): the merge rule of
   :mod:`~napari_unet._widgets.logic.protect` on those copies, as a :class:`MergePlan`;
   :func:`predict_and_merge` runs it at the end of the prediction worker;
3. :func:`write_prediction` (main thread): checks that the layer still holds what the plan was
   computed from (the user may have painted meanwhile; else it merges again, here) and writes
   it as one step of the layer's undo history
   (:func:`~napari_unet._widgets.label_history.write_slices`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet._widgets import layers as L
from napari_unet._widgets.label_history import (
    SliceDiff,
    SnapshotHistory,
    slice_diff,
    write_slices,
)
from napari_unet._widgets.logic.protect import kept_mask, merge_slice

if TYPE_CHECKING:
    from napari_unet.core.io.axes import StackLayout

logger = logging.getLogger(__name__)

#: Largest job (pixels over its slices) whose merge runs in the worker, on copies; a bigger
#: one is merged on the main thread when it arrives (no copies of a whole volume).
WORKER_MERGE_PIXELS = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class MergeInput:
    """Copies of what a merge reads, for ``slices`` of one labels layer.

    Attributes:
        indices: the index tuple of each slice into the layer's data.
        labels, snapshot: (n, Y, X) copies of the labels shown and the prediction snapshot.
        reviewed: (n, Y, X) bool copy of the reviewed mask, or None.
        kind: ``"instances"`` or ``"semantic"``.
        region: the (Y, X) box predicted, or None.
        overwrite: keep nothing (the user asked to replace their work).
        volume: the slices are consecutive Z slices of one volume (a 3-D model's labels): they
            are merged as one (n, Y, X) block, objects connected and ids kept across Z.
        taken: (volume) the instance ids the layer uses outside these slices, or None.
    """

    indices: tuple[tuple[int, ...], ...]
    labels: np.ndarray
    snapshot: np.ndarray
    reviewed: np.ndarray | None
    kind: str
    region: tuple[slice, slice] | None
    overwrite: bool
    volume: bool = False
    taken: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class MergePlan:
    """The merged slices of a :class:`MergeInput` (``pieces``: index, merged, replaced) and
    what writing each changes in the source's labels and snapshot (``diffs``, computed with the
    merge in the worker, so that the main thread only assigns the changed pixels)."""

    source: MergeInput
    pieces: tuple[tuple[tuple[int, ...], np.ndarray, np.ndarray], ...]
    kept_pixels: int
    diffs: tuple[SliceDiff, ...] | None = None


def prepare_merge(
    layer: Any,
    layout: StackLayout,
    slices: list[int] | tuple[int, ...],
    region: tuple[slice, slice] | None,
    *,
    overwrite: bool = False,
    volume: bool = False,
) -> MergeInput:
    """Copy what a merge into ``slices`` of the labels ``layer`` reads (main thread).

    ``volume``: ``slices`` are consecutive Z slices merged as one block (a 3-D model's labels).
    """
    SnapshotHistory.of(layer).sync()  # an undo not seen yet: the snapshot first
    tag = L.plugin_tag(layer) or {}
    data = np.asarray(layer.data)
    indices = tuple(L.slice_index(layout, s) for s in slices)
    snapshot, reviewed = tag.get("snapshot"), tag.get("reviewed")
    if not isinstance(snapshot, np.ndarray) or snapshot.shape != data.shape:
        snapshot = np.zeros_like(data)
        tag["snapshot"] = snapshot
    has_reviewed = isinstance(reviewed, np.ndarray) and reviewed.shape == data.shape
    return MergeInput(
        indices=indices,
        labels=np.stack([data[i] for i in indices]),
        snapshot=np.stack([snapshot[i] for i in indices]),
        reviewed=np.stack([reviewed[i] for i in indices]) if has_reviewed else None,
        kind="instances" if tag.get("output") == "instances" else "semantic",
        region=region,
        overwrite=overwrite,
        volume=volume,
        taken=other_ids(data, indices) if volume else None,
    )


def other_ids(data: np.ndarray, indices: tuple[tuple[int, ...], ...]) -> np.ndarray | None:
    """The non-zero ids of ``data`` outside the slices ``indices`` (None when there is none)."""
    outside = np.ones(data.shape[: len(indices[0])] if indices else (), dtype=bool)
    for index in indices:
        outside[index] = False
    if not outside.any():
        return None
    rest = data[outside]
    top = int(rest.max()) if rest.size else 0
    if top == 0:
        return None
    counts = np.bincount(rest.ravel().astype(np.int64, copy=False), minlength=top + 1)
    counts[0] = 0
    return np.flatnonzero(counts)


def merge_source(
    layer: Any,
    layout: StackLayout,
    slices: list[int] | tuple[int, ...],
    region: tuple[slice, slice] | None,
    *,
    overwrite: bool = False,
    volume: bool = False,
) -> MergeInput | None:
    """:func:`prepare_merge` for a job's worker, or None (no layer yet, or too big to copy)."""
    if layer is None:
        return None
    pixels = len(slices) * int(np.prod(layout.yx_shape))
    if pixels > WORKER_MERGE_PIXELS:
        return None
    return prepare_merge(layer, layout, slices, region, overwrite=overwrite, volume=volume)


def compute_merge(source: MergeInput, predicted: np.ndarray) -> MergePlan:
    """Merge ``predicted`` (n, h, w) labels around the user's work in ``source`` (numpy only)."""
    plan = _merge_volume(source, predicted) if source.volume else _merge_slices(source, predicted)
    diffs = tuple(
        slice_diff(index, merged, replaced, source.labels[i], source.snapshot[i])
        for i, (index, merged, replaced) in enumerate(plan.pieces)
    )
    return dataclasses.replace(plan, diffs=diffs)


def _merge_slices(source: MergeInput, predicted: np.ndarray) -> MergePlan:
    """The merge of a 2-D model's labels: slice by slice."""
    pieces, kept_pixels = [], 0
    for i, index in enumerate(source.indices):
        labels = source.labels[i]
        if source.overwrite:
            kept = np.zeros(labels.shape, dtype=bool)
        else:
            reviewed = None if source.reviewed is None else source.reviewed[i]
            kept = kept_mask(labels, source.snapshot[i], reviewed, kind=source.kind)
        region = source.region if source.region is not None else (slice(None), slice(None))
        kept_pixels += int(np.count_nonzero(kept[region]))
        merged, replaced = merge_slice(
            labels, predicted[i], kept, kind=source.kind, region=source.region
        )
        pieces.append((index, merged, replaced))
    return MergePlan(source=source, pieces=tuple(pieces), kept_pixels=kept_pixels)


def _merge_volume(source: MergeInput, predicted: np.ndarray) -> MergePlan:
    """The merge of a 3-D model's labels: the (n, Y, X) slices as one block, then per slice."""
    labels = source.labels
    if source.overwrite:
        kept = np.zeros(labels.shape, dtype=bool)
    else:
        kept = kept_mask(labels, source.snapshot, source.reviewed, kind=source.kind)
    region = None if source.region is None else (slice(None), *source.region)
    kept_pixels = int(np.count_nonzero(kept[region if region is not None else ...]))
    merged, replaced = merge_slice(
        labels, predicted, kept, kind=source.kind, region=region, taken=source.taken
    )
    pieces = tuple((index, merged[i], replaced[i]) for i, index in enumerate(source.indices))
    return MergePlan(source=source, pieces=pieces, kept_pixels=kept_pixels)


def predict_and_merge(
    job: Any, source: MergeInput | None
) -> Generator[Any, None, tuple[Any, MergePlan | None]]:
    """:func:`run_prediction` then, in the same worker, :func:`compute_merge` of its labels."""
    from napari_unet._widgets.predict_worker import run_prediction

    result = yield from run_prediction(job)
    plan = compute_merge(source, result.labels) if source is not None else None
    return result, plan


def _still_valid(layer: Any, source: MergeInput) -> bool:
    """The layer still holds the labels, snapshot and reviewed mask the plan was made from."""
    tag = L.plugin_tag(layer) or {}
    data, snapshot, reviewed = np.asarray(layer.data), tag.get("snapshot"), tag.get("reviewed")
    if data.dtype != source.labels.dtype or not isinstance(snapshot, np.ndarray):
        return False
    for i, index in enumerate(source.indices):
        if not np.array_equal(data[index], source.labels[i]):
            return False
        if not np.array_equal(snapshot[index], source.snapshot[i]):
            return False
        if source.reviewed is not None and not np.array_equal(reviewed[index], source.reviewed[i]):
            return False
    return True


def write_prediction(
    layer: Any,
    layout: StackLayout,
    labels: np.ndarray,
    slices: list[int] | tuple[int, ...],
    region: tuple[slice, slice] | None,
    *,
    overwrite: bool = False,
    plan: MergePlan | None = None,
    volume: bool = False,
) -> int:
    """Write a new prediction into ``layer`` around the user's work, as one undoable step.

    Args:
        layer: a plugin labels layer (its tag has ``snapshot``, ``reviewed``, ``output``).
        layout: the image's stack layout (slice indexing).
        labels: (n, h, w) predicted labels of ``slices`` ((h, w) = the region's when given).
        slices: flattened slice indices.
        region: the (Y, X) box predicted, or None.
        overwrite: replace the user's work too ("Overwrite corrected slices").
        plan: the merge computed in the worker; used when the layer did not change since.
        volume: ``slices`` are consecutive Z slices of a 3-D model's labels, merged as one block.

    Returns:
        How many pixels of the user's work were kept.
    """
    if plan is None or plan.source.overwrite != overwrite or not _still_valid(layer, plan.source):
        plan = compute_merge(
            prepare_merge(layer, layout, slices, region, overwrite=overwrite, volume=volume),
            labels,
        )
    tag = L.plugin_tag(layer)
    data = np.asarray(layer.data)
    dtype = np.result_type(data.dtype, *(merged.dtype for _, merged, _ in plan.pieces))
    if dtype != data.dtype:  # more ids than the layer's dtype holds: napari's history restarts
        logger.info("labels of %s widened to %s; undo history restarts", layer.name, dtype)
        layer.data = data.astype(dtype)
    if tag["snapshot"].dtype != dtype:
        tag["snapshot"] = tag["snapshot"].astype(dtype)
    pieces = [(index, merged.astype(dtype, copy=False), rep) for index, merged, rep in plan.pieces]
    diffs = None if plan.diffs is None else list(plan.diffs)  # values cast as they are written
    changed = write_slices(layer, pieces, diffs)
    tag["predicted"] = sorted(set(tag.get("predicted", [])) | {int(s) for s in slices})
    logger.debug("prediction written into %s: %d pixel(s) changed", layer.name, changed)
    layer.refresh(extent=False)  # same shape: no new extent, so the viewer re-slices nothing else
    return plan.kept_pixels


__all__ = [
    "WORKER_MERGE_PIXELS",
    "MergeInput",
    "MergePlan",
    "compute_merge",
    "merge_source",
    "predict_and_merge",
    "prepare_merge",
    "write_prediction",
]
