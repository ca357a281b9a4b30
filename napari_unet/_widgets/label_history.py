"""Plugin writes into a Labels layer as steps of the layer's own undo history (main thread).

:func:`write_slices` writes merged slices as ONE item of napari's undo history (one masked
atom per slice: the bounding box of the changed pixels, their mask, old and new values), so
Ctrl+Z takes a prediction back as it takes back a brush stroke, and the ``paint`` event it sends
makes the autosave save the slices it touched. No per-pixel index arrays: a 1024x1024 refresh
is written in a few milliseconds.

The prediction ``snapshot`` in the tag (``labels != snapshot`` are the user's edits) is not
part of napari's history, so :class:`SnapshotHistory` keeps it in step: it records the snapshot
values each plugin write changed, watches the layer's history and puts the old (undo) or new
(redo) values back, then announces the slices with a ``metadata`` event
(``napari_unet_source="undo"``) so that the autosave saves what is shown. napari 0.9 keeps the
history in ``Labels._undo_history`` / ``_redo_history`` (items are lists of atoms; undo moves an
item to the redo list, reversed, with the same atom objects). No Qt.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from napari_unet._widgets import layers as L

logger = logging.getLogger(__name__)

#: ``napari_unet_source`` of the metadata event sent after an undo/redo of a plugin write.
UNDO_SOURCE = "undo"
#: Plugin writes whose snapshot changes are remembered (napari keeps 100 history items).
MAX_RECORDS = 200
_HISTORIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: One slice's snapshot change: (box key, mask in the box, old values, new values).
Change = tuple[tuple[slice, ...], np.ndarray, np.ndarray, np.ndarray]


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
        snapshot = (L.plugin_tag(layer) or {}).get("snapshot")
        if not isinstance(snapshot, np.ndarray):
            return set()
        stack = snapshot.shape[:-2]
        touched: set[int] = set()
        for item in items:
            for atom in item:
                found = self._records.get(id(atom))
                for key, mask, before, after in found[1] if found else ():
                    snapshot[key][mask] = before if old else after
                    first = tuple(k.start for k in key[: len(stack)])
                    touched.add(int(np.ravel_multi_index(first, stack)) if stack else 0)
        return touched


def is_plugin_write(layer: Any, item: Any) -> bool:
    """Whether the ``paint`` event item of ``layer`` is a prediction the plugin wrote."""
    try:
        history = _HISTORIES.get(layer)
    except TypeError:  # not a layer (no weak reference)
        return False
    return history is not None and history.owns(item)


def _box(changed: np.ndarray, index: tuple[int, ...]) -> tuple[slice, ...] | None:
    """The key of the bounding box of ``changed`` (Y, X) in slice ``index``, or None."""
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    if not rows.size:
        return None
    yx = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    return (*(slice(k, k + 1) for k in index), *yx)


def _masked_atom(key: tuple[slice, ...], mask: np.ndarray, old: np.ndarray, new: np.ndarray):
    """napari's own masked history atom, holding the new values of the masked pixels."""
    from napari.layers.labels.labels import _MaskedPaintAtom

    return _MaskedPaintAtom(key, mask, old, new)


#: One slice's precomputed write: (labels atom or None, snapshot change or None), each as
#: (box key, mask in the box (h, w), old values, new values).
SliceDiff = tuple[Change | None, Change | None]


def _masked_change(
    index: tuple[int, ...], moved: np.ndarray, before: np.ndarray, after: np.ndarray
) -> Change | None:
    """The (box key, mask (h, w), old, new) of the pixels ``moved`` in slice ``index``."""
    key = _box(moved, index)
    if key is None:
        return None
    yx = key[-2:]
    mask = moved[yx]
    return key, mask, before[yx][mask], after[yx][mask]


def slice_diff(
    index: tuple[int, ...],
    merged: np.ndarray,
    replaced: np.ndarray,
    current: np.ndarray,
    snapshot: np.ndarray,
) -> SliceDiff:
    """What writing ``merged`` (Y, X) over ``current`` labels and ``snapshot`` changes (numpy
    only: runs in the worker on the copies a merge was computed from)."""
    labels = _masked_change(index, merged != current, current, merged)
    snap = _masked_change(index, replaced & (snapshot != merged), snapshot, merged)
    return labels, snap


def _apply(target: np.ndarray, change: Change) -> tuple[tuple[slice, ...], np.ndarray]:
    """Write ``change`` into ``target``; returns its key and the mask in the box's shape."""
    key, mask, _, new = change
    box = target[key]
    mask = mask.reshape(box.shape)
    box[mask] = new
    return key, mask


def write_slices(layer: Any, pieces: list, diffs: list[SliceDiff] | None = None) -> int:
    """Write merged slices into ``layer`` as one undo step; update and record the snapshot.

    Args:
        layer: a plugin labels layer (numpy data, tag with ``snapshot``).
        pieces: ``[(index tuple of the slice, merged (Y, X), replaced (Y, X) bool), ...]``;
            ``merged`` already has the layer's dtype.
        diffs: :func:`slice_diff` of each piece, computed in the worker against what the layer
            holds now (checked by the caller); None: computed here.

    Returns:
        The number of label pixels changed.
    """
    history = SnapshotHistory.of(layer)
    data, snapshot = np.asarray(layer.data), L.plugin_tag(layer)["snapshot"]
    if diffs is None:
        diffs = [slice_diff(i, m, r, data[i], snapshot[i]) for i, m, r in pieces]
    atoms, changes, changed_pixels = [], [], 0
    for labels, snap in diffs:
        if labels is not None:
            key, mask = _apply(data, labels)
            atoms.append(_masked_atom(key, mask, labels[2], labels[3]))
            changed_pixels += int(labels[3].size)
        if snap is not None:
            key, mask = _apply(snapshot, snap)
            changes.append((key, mask, snap[2], snap[3]))
    if atoms:
        with layer.block_history():
            for atom in atoms:
                layer._save_history(atom)
            history.record(atoms, changes)
    return changed_pixels


__all__ = [
    "UNDO_SOURCE",
    "SliceDiff",
    "SnapshotHistory",
    "is_plugin_write",
    "slice_diff",
    "write_slices",
]
