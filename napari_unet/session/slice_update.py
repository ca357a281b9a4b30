"""One slice's save inside a session transaction: write the arrays that changed under new file
names, recompute its status and counts, and add the edit accounting to the current round.

Used by :meth:`napari_unet.session.slices.SlicesMixin.save_slices`; the order of the writes
(snapshot, labels, reviewed) fixes the file names, so it is part of the format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.session.entries import ImageEntry
from napari_unet.session.index import SLICE_FILES, now
from napari_unet.session.paths import check_inside
from napari_unet.session.store import save_array
from napari_unet.session.tracking import SliceSummary, summarize

__all__ = ["SliceFiles", "apply_slice"]

#: (labels, reviewed, snapshot): the checked arrays of one slice, None where unchanged.
Arrays = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]
#: ``(index counter, field of the slice record)`` of the edit accounting of a round.
_ACCOUNTING = (
    ("pixels_edited", "pixels_changed"),
    ("objects_edited", "objects_touched"),
    ("pixels_reviewed", "reviewed_pixels"),
)
_COUNTS = ("pixels_changed", "objects_touched", "reviewed_pixels", "annotated_pixels")


@dataclasses.dataclass(frozen=True, eq=False)
class SliceFiles:
    """Reads and writes the files of one slice during one transaction.

    ``remember(relative, array)`` caches a written array; ``cached(relative, what)`` reads a
    stored one (both the session's); ``written`` collects the new files' relative paths.
    """

    root: Path
    index: dict
    entry: ImageEntry
    slice_index: int
    written: list[str]
    remember: Callable[[str, np.ndarray], None]
    cached: Callable[[str | None, str], np.ndarray | None]

    def what(self, name: str) -> str:
        return f"{self.entry.name} slice {self.slice_index} {name}"

    def stored(self, record: dict, name: str) -> np.ndarray | None:
        """The stored ``name`` array the record names (None when it names none)."""
        return self.cached(record[name], self.what(name))

    def write(self, name: str, array: np.ndarray) -> str:
        """Save ``array`` under a never-used name; returns its path relative to the session."""
        self.index["counter"] += 1
        relative = (
            f"{SLICE_FILES[name]}/{self.entry.id}/{self.slice_index:05d}-"
            f"{self.index['counter']:06d}.npz"
        )
        # a data folder that is a link leading out of the session is refused, not written
        path = check_inside(self.root, relative, what=self.what(name), folder=SLICE_FILES[name])
        save_array(path, array)
        self.written.append(relative)
        if name != "labels":  # kept for the next autosave's status, which needs them
            self.remember(relative, array.copy())
        return relative


def apply_slice(
    files: SliceFiles, image: dict, arrays: Arrays, model_version: str | None
) -> tuple[dict, dict]:
    """Apply ``arrays`` to the slice's record in ``image`` (of ``files.index``); returns
    ``(new record, old record)``."""
    key = str(files.slice_index)
    old = image["slices"].get(key, {})
    record: dict[str, Any] = {k: None for k in SLICE_FILES} | old
    record.setdefault("created", now())
    labels, _, snapshot = arrays
    full = _store_arrays(files, record, arrays, model_version)
    summary = summarize(*full, kind=files.entry.kind)
    _account(files.index["rounds"][-1], old, summary, snapshot is not None, labels is not None)
    record.update(
        status=summary.status, modified=now(), **{f: getattr(summary, f) for f in _COUNTS}
    )
    if summary.status == "unlabelled" and not any(record[k] for k in SLICE_FILES):
        image["slices"].pop(key, None)
    else:
        image["slices"][key] = record
    return record, old


def _store_arrays(
    files: SliceFiles, record: dict, arrays: Arrays, model_version: str | None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Write the given arrays (``record`` names the new files); returns the slice's full
    ``(labels, snapshot, reviewed)``, stored ones read back where none was given."""
    labels, reviewed, snapshot = arrays
    current_snapshot = snapshot if snapshot is not None else files.stored(record, "snapshot")
    if snapshot is not None:
        record["snapshot"] = files.write("snapshot", snapshot)
        record["model_version"] = model_version
        if labels is None and record["labels"] is None:
            labels = snapshot
    if labels is not None:
        same = (
            current_snapshot is not None
            and labels.dtype == current_snapshot.dtype
            and np.array_equal(labels, current_snapshot)
        )
        record["labels"] = record["snapshot"] if same else files.write("labels", labels)
    else:
        labels = files.stored(record, "labels")
    if reviewed is not None:
        record["reviewed"] = files.write("reviewed", reviewed) if reviewed.any() else None
    else:
        reviewed = files.stored(record, "reviewed")
    return labels, current_snapshot, reviewed


def _account(
    round_: dict, old: dict, summary: SliceSummary, snapshot_given: bool, labels_given: bool
) -> None:
    """Add the growth since the last save to the round's counters; a new snapshot restarts
    edits from zero, and a snapshot saved without labels (a re-prediction) is no edit at all."""
    for counter, field in _ACCOUNTING:
        fresh = snapshot_given and field != "reviewed_pixels"
        if fresh and not labels_given:
            continue
        before = 0 if fresh else int(old.get(field, 0))
        round_[counter] += max(0, getattr(summary, field) - before)
