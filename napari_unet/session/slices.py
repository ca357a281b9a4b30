"""Saving and loading the per-slice arrays of a session (a mixin of ``Session``).

Each slice of each image has up to three arrays, stored as separate files so that an autosave
after a brush stroke writes only what changed: ``labels`` (current labels), ``reviewed`` (bool
mask) and ``snapshot`` (the model's prediction). Labels equal to the snapshot share its file
(an untouched prediction costs one file), and an empty reviewed mask is stored as no file.

Labels are checked when they are saved, not when training meets them: (Y, X), an integer dtype,
values in ``0 .. 2**31 - 1`` (:data:`MAX_LABEL`). A slice changed by another program since this
``Session`` knew it (its stored file names differ: files are never rewritten, so equal names mean
equal content) is not overwritten: :class:`SessionConflictError`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_unet.session.entries import ImageEntry, SliceData, SliceEntry, slice_entry
from napari_unet.session.errors import SessionConflictError, SessionError
from napari_unet.session.index import SLICE_FILES
from napari_unet.session.paths import check_inside
from napari_unet.session.slice_update import SliceFiles, apply_slice
from napari_unet.session.store import load_array
from napari_unet.session.tracking import annotated_mask

logger = logging.getLogger(__name__)
_RETRIES = 3
#: Snapshots and reviewed masks kept in memory so that an autosave need not read them back.
_CACHE_BYTES = 256 * 2**20


#: Largest label value a session stores (training builds int32/int64 targets from them).
MAX_LABEL = 2**31 - 1
#: What a slice's stored state is known by: its (labels, reviewed, snapshot) file names.
Token = tuple[str | None, str | None, str | None] | None


def slice_token(record: dict | None) -> Token:
    """The identity of a slice's stored content (None when nothing is stored)."""
    if not record:
        return None
    return tuple(record.get(name) for name in SLICE_FILES)  # type: ignore[return-value]


def slice_tokens(index: dict) -> dict[tuple[str, str], Token]:
    """``{(image_id, slice key): token}`` of every stored slice of an index."""
    return {
        (image_id, key): slice_token(record)
        for image_id, image in index["images"].items()
        for key, record in image["slices"].items()
    }


def _as_labels(array: object, shape: tuple[int, int], what: str) -> np.ndarray:
    """``array`` as (Y, X) integer labels in ``0 .. MAX_LABEL``; else a one-sentence error."""
    array = np.asarray(array)
    if array.shape != shape:
        raise SessionError(
            f"{what} have shape {array.shape}, not the slice's (Y, X) = {shape}; give one 2-D "
            "slice of the image's size."
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise SessionError(
            f"{what} are {array.dtype}, not integer label values; convert them to integers "
            "first (e.g. labels.astype(np.uint16), 0 = background)."
        )
    if array.size and np.issubdtype(array.dtype, np.signedinteger) and array.min() < 0:
        raise SessionError(
            f"{what} hold negative values (down to {int(array.min())}); labels are 0 "
            "(background) or positive ids — relabel them."
        )
    if array.size and np.iinfo(array.dtype).max > MAX_LABEL and array.max() > MAX_LABEL:
        raise SessionError(
            f"{what} hold values up to {int(array.max())}, above {MAX_LABEL}; relabel them "
            "with consecutive ids (e.g. skimage.segmentation.relabel_sequential)."
        )
    return array


def _as_mask(array: object, shape: tuple[int, int], what: str) -> np.ndarray:
    """``array`` as a (Y, X) bool mask (any real 0/non-0 values); else a one-sentence error."""
    array = np.asarray(array)
    if array.shape != shape or array.dtype.kind not in "biuf":
        raise SessionError(
            f"{what} is a {array.dtype} array of shape {array.shape}; give a True/False mask "
            f"of the slice's shape {shape}."
        )
    return array.astype(bool, copy=False)


def _annotated(entry: ImageEntry, data: SliceData) -> np.ndarray:
    if data.labels is None:
        if data.reviewed is None:
            return np.zeros(entry.yx_shape, dtype=bool)
        return data.reviewed.copy()
    return annotated_mask(data.labels, data.snapshot, data.reviewed, kind=entry.kind)


class SlicesMixin:
    """Per-slice storage; mixed into :class:`~napari_unet.session.Session`."""

    root: Path
    _index: dict
    image: Callable[[str], ImageEntry]
    _mutate: Callable

    def refresh(self) -> bool:  # pragma: no cover - provided by Session
        raise NotImplementedError

    def _check_slice(self, image_id: str, slice_index: int) -> ImageEntry:
        entry = self.image(image_id)
        if not 0 <= int(slice_index) < entry.n_slices:
            raise SessionError(
                f"image {entry.name!r} has {entry.n_slices} slice(s); slice {slice_index} does "
                "not exist."
            )
        return entry

    def slice_entry(self, image_id: str, slice_index: int) -> SliceEntry:
        """The index record of one slice (status, files, counts, model version)."""
        self._check_slice(image_id, slice_index)
        return slice_entry(self._index["images"][image_id]["slices"].get(str(int(slice_index))))

    def statuses(self, image_id: str) -> list[str]:
        """Status of every slice: ``unlabelled``, ``predicted``, ``edited`` or ``reviewed``."""
        entry = self.image(image_id)
        slices = self._index["images"][image_id]["slices"]
        return [slices.get(str(s), {}).get("status", "unlabelled") for s in range(entry.n_slices)]

    # ------------------------------------------------------------------ saving
    def save_slice(
        self,
        image_id: str,
        slice_index: int,
        *,
        labels: np.ndarray | None = None,
        reviewed: np.ndarray | None = None,
        snapshot: np.ndarray | None = None,
        model_version: str | None = None,
        overwrite: bool = False,
    ) -> SliceEntry:
        """Save what changed in one slice; arrays left as None keep their stored value.

        Args:
            labels: (Y, X) integer labels in ``0 .. 2**31 - 1``. reviewed: (Y, X) bool (all
                False clears it).
            snapshot: (Y, X) integer prediction; ``model_version`` names the model that made it.
                A snapshot with no labels stored yet also becomes the labels.
            overwrite: save even when another program changed the slice meanwhile.

        Returns:
            The new index record (status and counts recomputed).

        Raises:
            SessionError: an array of the wrong shape or dtype, or labels out of range.
            SessionConflictError: another program saved this slice since this ``Session``
                opened it or last saved it; nothing is saved.
            SessionWriteError: the disk is full or read-only; the previous save stays intact
                and the caller's arrays are untouched.
        """
        return self.save_slices(
            image_id,
            {int(slice_index): (labels, reviewed, snapshot)},
            model_version=model_version,
            overwrite=overwrite,
        )[int(slice_index)]

    def save_slices(
        self,
        image_id: str,
        updates: dict[int, tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]],
        *,
        model_version: str | None = None,
        overwrite: bool = False,
    ) -> dict[int, SliceEntry]:
        """Save several slices in one transaction: ``{slice: (labels, reviewed, snapshot)}``.

        All or nothing: a conflict on one slice (see :meth:`save_slice`) saves none of them.
        """
        entry = self.image(image_id)
        shape = entry.yx_shape
        checked: dict[int, tuple] = {}
        for index, (labels, reviewed, snapshot) in updates.items():
            self._check_slice(image_id, index)
            where = f"{entry.name!r} slice {index}"
            checked[int(index)] = (
                None if labels is None else _as_labels(labels, shape, f"the labels of {where}"),
                None
                if reviewed is None
                else _as_mask(reviewed, shape, f"the reviewed mask of {where}"),
                None
                if snapshot is None
                else _as_labels(snapshot, shape, f"the prediction (snapshot) of {where}"),
            )
        base: dict[tuple[str, str], Token] = self.__dict__.setdefault("_base", {})
        saved: dict[tuple[str, str], Token] = {}

        def change(index: dict, written: list[str]) -> tuple[dict, list[str]]:
            image = index["images"].get(image_id)
            if image is None:
                raise SessionError(f"the session has no image {image_id!r}; add it again.")
            if not overwrite:
                for slice_index in checked:
                    self._check_conflict(entry, image, slice_index, base)
            results, superseded = {}, []
            for slice_index, arrays in checked.items():
                files = SliceFiles(
                    self.root, index, entry, slice_index, written, self._remember, self._cached
                )
                record, old = apply_slice(files, image, arrays, model_version)
                superseded += [old[k] for k in SLICE_FILES if old.get(k) and old[k] != record[k]]
                results[slice_index] = slice_entry(record)
                key = str(slice_index)
                saved[(image_id, key)] = slice_token(image["slices"].get(key))
            return results, superseded

        results = self._mutate(change)
        base.update(saved)
        return results

    def _check_conflict(self, entry: ImageEntry, image: dict, slice_index: int, base: dict) -> None:
        """Refuse to save over a slice another program changed since this object knew it."""
        key = str(slice_index)
        if slice_token(image["slices"].get(key)) != base.get((entry.id, key)):
            raise SessionConflictError(
                f"Slice {slice_index} of {entry.name!r} in the session {self.root} was changed "
                "by another program (another napari window or script) since this one opened "
                "it, so nothing was saved there; close the other program and reopen the "
                "session, or save your corrections to another session folder."
            )

    # ------------------------------------------------------------------ loading
    def _remember(self, relative: str, array: np.ndarray) -> None:
        """Cache an array by file name (files are never rewritten, so entries never go stale)."""
        cache = self.__dict__.setdefault("_array_cache", OrderedDict())
        array.flags.writeable = False
        cache[relative] = array
        while sum(a.nbytes for a in cache.values()) > _CACHE_BYTES and len(cache) > 1:
            cache.popitem(last=False)

    def _cached(self, relative: str | None, what: str) -> np.ndarray | None:
        """Read-only array of a stored file, from the cache when possible (internal use)."""
        cache = self.__dict__.setdefault("_array_cache", OrderedDict())
        if relative in cache:
            cache.move_to_end(relative)
            return cache[relative]
        array = self._read(relative, what)
        if array is not None:
            self._remember(relative, array)
        return array

    def _read(self, relative: str | None, what: str) -> np.ndarray | None:
        if relative is None:
            return None
        path = check_inside(self.root, relative, what=what, folder=tuple(SLICE_FILES.values()))
        return load_array(path, what=what)

    def load_slice(self, image_id: str, slice_index: int) -> SliceData:
        """The stored arrays of one slice (None where nothing is stored).

        Safe while another process saves: a file replaced under our feet makes us re-read the
        index and try again.
        """
        entry = self._check_slice(image_id, slice_index)
        for attempt in range(_RETRIES):
            record = self._index["images"][image_id]["slices"].get(str(int(slice_index)), {})
            try:
                arrays = {
                    name: self._read(record.get(name), f"{entry.name} slice {slice_index} {name}")
                    for name in ("reviewed", "snapshot")
                }
                if record.get("labels") and record.get("labels") == record.get("snapshot"):
                    arrays["labels"] = arrays["snapshot"].copy()  # an untouched prediction
                else:
                    arrays["labels"] = self._read(
                        record.get("labels"), f"{entry.name} slice {slice_index} labels"
                    )
            except FileNotFoundError:
                if attempt == _RETRIES - 1 or not self.refresh():
                    raise SessionError(
                        f"a file of {entry.name!r} slice {slice_index} disappeared; reopen the "
                        "session."
                    ) from None
                continue
            return SliceData(**arrays)
        raise AssertionError("unreachable")

    def _stored_slices(self, image_id: str) -> list[int]:
        return sorted(int(k) for k in self._index["images"][image_id]["slices"])
