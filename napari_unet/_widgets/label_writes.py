"""Predictions written into an existing labels layer around the user's work, undoably.

A new prediction is merged slice by slice (:func:`~napari_unet._widgets.logic.protect.merge_slice`)
and written with the layer's own ``data_setitem`` inside one ``block_history()``: the whole
write is one item of napari's undo history, so Ctrl+Z takes it back as it takes back a brush
stroke, and the ``paint`` event it sends makes the autosave save the slices it touched.

The prediction ``snapshot`` in the tag (what the model produced; ``labels != snapshot`` are the
user's edits) is not part of napari's history, so :class:`SnapshotHistory` keeps it in step: it
records the snapshot values each plugin write changed, watches the layer's history and puts the
old (undo) or new (redo) values back, then announces the slices with a ``metadata`` event
(``napari_unet_source="undo"``) so that the autosave saves what is shown. Main thread only;
no Qt. napari 0.9's history lives in ``Labels._undo_history`` / ``_redo_history`` (the items
are lists of atoms; undo moves an item to the redo list, reversed, with the same atoms).
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet._widgets import layers as L
from napari_unet._widgets.logic.protect import kept_mask, merge_slice

if TYPE_CHECKING:
    from napari_unet.core.io.axes import StackLayout

logger = logging.getLogger(__name__)

#: ``napari_unet_source`` of the metadata event sent after an undo/redo of a plugin write.
UNDO_SOURCE = "undo"
#: Plugin writes whose snapshot changes are remembered (napari keeps 100 history items).
MAX_RECORDS = 200
_HISTORIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: One slice's snapshot change: (indices into the snapshot, old values, new values).
Change = tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]


class SnapshotHistory:
    """Keeps a labels layer's prediction snapshot in step with napari's undo/redo."""

    def __init__(self, layer: Any) -> None:
        self._layer = weakref.ref(layer)
        #: id(first atom) -> (atoms kept alive so ids stay unique, snapshot changes)
        self._records: OrderedDict[int, tuple[list, list[Change]]] = OrderedDict()
        self._seen = self._state()
        layer.events.paint.connect(self._on_paint)
        layer.events.set_data.connect(self.sync)

    @classmethod
    def of(cls, layer: Any) -> SnapshotHistory:
        """The history of ``layer`` (created and connected on first use)."""
        history = _HISTORIES.get(layer)
        if history is None:
            history = cls(layer)
            _HISTORIES[layer] = history
        return history

    def _state(self) -> tuple[int, int]:
        layer = self._layer()
        if layer is None:
            return (0, 0)
        return len(layer._undo_history), len(layer._redo_history)

    def _on_paint(self, event: Any = None) -> None:
        self._seen = self._state()

    def record(self, atoms: list, changes: list[Change]) -> None:
        """Remember the snapshot ``changes`` of the plugin write made of history ``atoms``."""
        if not atoms:
            return
        self._records[id(atoms[0])] = (list(atoms), changes)
        while len(self._records) > MAX_RECORDS:
            self._records.popitem(last=False)

    def owns(self, item: Any) -> bool:
        """Whether a history item (list of atoms, as ``paint`` events carry) is a plugin write."""
        try:
            return any(id(atom) in self._records for atom in item)
        except TypeError:
            return False

    def sync(self, event: Any = None) -> None:
        """Apply the snapshot side of undo/redo steps taken since the last look."""
        layer = self._layer()
        state = self._state()
        if layer is None or state == self._seen:
            return
        (undo0, redo0), (undo1, redo1) = self._seen, state
        self._seen = state
        if redo1 > redo0 and undo1 < undo0:
            items, old = list(layer._redo_history)[redo0 - redo1 :], True
        elif redo1 < redo0 and undo1 > undo0:
            items, old = list(layer._undo_history)[undo0 - undo1 :], False
        else:
            return
        touched = self._replay(layer, items, old)
        if touched:
            layer.events.metadata(
                napari_unet_slices=tuple(sorted(touched)), napari_unet_source=UNDO_SOURCE
            )

    def _replay(self, layer: Any, items: list, old: bool) -> set[int]:
        tag = L.plugin_tag(layer) or {}
        snapshot = tag.get("snapshot")
        if not isinstance(snapshot, np.ndarray):
            return set()
        stack = snapshot.shape[:-2]
        touched: set[int] = set()
        for item in items:
            for atom in item:
                found = self._records.get(id(atom))
                if found is None:
                    continue
                for indices, before, after in found[1]:
                    snapshot[indices] = before if old else after
                    if stack and indices[0].size:
                        first = tuple(int(i[0]) for i in indices[: len(stack)])
                        touched.add(int(np.ravel_multi_index(first, stack)))
                    elif not stack:
                        touched.add(0)
        return touched


def is_plugin_write(layer: Any, item: Any) -> bool:
    """Whether the ``paint`` event item of ``layer`` is a prediction the plugin wrote."""
    try:
        history = _HISTORIES.get(layer)
    except TypeError:  # not a layer (no weak reference)
        return False
    return history is not None and history.owns(item)


def _kept(layer: Any, data: np.ndarray, index: tuple, s: int, kind: str) -> np.ndarray:
    """The user's work in slice ``s`` (:func:`kept_mask`) from the layer and its tag."""
    tag = L.plugin_tag(layer) or {}
    snapshot, reviewed = tag.get("snapshot"), tag.get("reviewed")
    snap = snapshot[index] if isinstance(snapshot, np.ndarray) else None
    rev = None
    if isinstance(reviewed, np.ndarray) and reviewed.shape == data.shape:
        rev = reviewed[index]
    return kept_mask(data[index], snap, rev, kind=kind)


def merge_prediction(
    layer: Any,
    layout: StackLayout,
    labels: np.ndarray,
    slices: list[int],
    region: tuple[slice, slice] | None,
    *,
    overwrite: bool = False,
) -> tuple[list, int]:
    """Merge predicted ``labels`` (n, h, w) of ``slices`` around the user's work (no writing).

    Returns:
        ``([(slice, index, merged (Y, X), replaced (Y, X) bool), ...], kept pixels)``; with
        ``overwrite`` nothing is kept.
    """
    tag = L.plugin_tag(layer) or {}
    kind = "instances" if tag.get("output") == "instances" else "semantic"
    data = np.asarray(layer.data)
    pieces, kept_pixels = [], 0
    for i, s in enumerate(slices):
        index = L.slice_index(layout, s)
        if overwrite:
            kept = np.zeros(data.shape[-2:], dtype=bool)
        else:
            kept = _kept(layer, data, index, s, kind)
        if region is not None:
            kept_pixels += int(np.count_nonzero(kept[region]))
        else:
            kept_pixels += int(np.count_nonzero(kept))
        merged, replaced = merge_slice(data[index], labels[i], kept, kind=kind, region=region)
        pieces.append((s, index, merged, replaced))
    return pieces, kept_pixels


def write_prediction(
    layer: Any,
    layout: StackLayout,
    labels: np.ndarray,
    slices: list[int],
    region: tuple[slice, slice] | None,
    *,
    overwrite: bool = False,
) -> int:
    """Write a new prediction into ``layer`` around the user's work, as one undoable step.

    Args:
        layer: a plugin labels layer (its tag has ``snapshot``, ``reviewed``, ``output``).
        layout: the image's stack layout (slice indexing).
        labels: (n, h, w) predicted labels of ``slices`` ((h, w) = the region's when given).
        slices: flattened slice indices.
        region: the (Y, X) box predicted, or None.
        overwrite: replace the user's work too ("Overwrite corrected slices").

    Returns:
        How many pixels of the user's work were kept.
    """
    history = SnapshotHistory.of(layer)
    history.sync()
    pieces, kept_pixels = merge_prediction(
        layer, layout, labels, slices, region, overwrite=overwrite
    )
    tag = L.plugin_tag(layer)
    data = np.asarray(layer.data)
    dtype = np.result_type(data.dtype, *(p[2].dtype for p in pieces))
    if dtype != data.dtype:  # more ids than the layer's dtype holds: napari's history restarts
        logger.info("labels of %s widened to %s; undo history restarts", layer.name, dtype)
        layer.data = data = data.astype(dtype)
    if tag["snapshot"].dtype != dtype:
        tag["snapshot"] = tag["snapshot"].astype(dtype)
    changes = _write_pieces(layer, data, tag["snapshot"], pieces, history)
    tag["predicted"] = sorted(set(tag.get("predicted", [])) | {int(s) for s in slices})
    logger.debug("prediction written into %s: %d snapshot change(s)", layer.name, len(changes))
    layer.refresh()
    return kept_pixels


def _write_pieces(
    layer: Any, data: np.ndarray, snapshot: np.ndarray, pieces: list, history: SnapshotHistory
) -> list[Change]:
    """``data_setitem`` every merged slice in one history item; update and record the snapshot."""
    changes: list[Change] = []
    with layer.block_history():
        staged_before = len(layer._staged_history)
        for _, index, merged, replaced in pieces:
            current = data[index]
            ys, xs = np.nonzero(merged != current)
            if ys.size:
                full = tuple(np.full(ys.shape, k, dtype=np.intp) for k in index)
                layer.data_setitem((*full, ys, xs), merged[ys, xs], refresh=False)
            snap = snapshot[index]
            ys, xs = np.nonzero(replaced & (snap != merged))
            if ys.size:
                full = tuple(np.full(ys.shape, k, dtype=np.intp) for k in index)
                changes.append(((*full, ys, xs), snap[ys, xs].copy(), merged[ys, xs].copy()))
                snap[ys, xs] = merged[ys, xs]
        atoms = list(layer._staged_history[staged_before:])
        history.record(atoms, changes)
    return changes


__all__ = [
    "UNDO_SOURCE",
    "SnapshotHistory",
    "is_plugin_write",
    "merge_prediction",
    "write_prediction",
]
