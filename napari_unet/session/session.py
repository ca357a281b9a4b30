"""The :class:`Session`: open/create a session folder, add images, save and load slices.

Every change is one transaction under the session's writer lock (so napari and a trainer process
can both write): re-read the index if another process changed it, write new data files under
never-used names, then replace ``session.json`` atomically — the commit — and only then delete the
files it no longer names. A process killed at any instant leaves the previous index, whose files
are all intact; what the interrupted save wrote is removed at the next open (only files named the
way the session names them: see :mod:`napari_unet.session.reclaim`).

Two programs may write one session (napari and a trainer, or two napari windows): each save of a
slice checks that the slice is still as this ``Session`` last knew it (when it was opened, or its
own last save), and refuses with :class:`SessionConflictError` rather than overwrite another
program's change.
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.atomic import atomic_write_json
from napari_unet.session.entries import ImageEntry, image_entry
from napari_unet.session.errors import SessionError
from napari_unet.session.images import NewImage, image_geometry, image_input
from napari_unet.session.index import (
    INDEX_NAME,
    SLICE_FILES,
    drop_missing_files,
    new_index,
    now,
    referenced_files,
    validate_index,
)
from napari_unet.session.reclaim import disk_usage, reclaim
from napari_unet.session.slices import SlicesMixin, slice_tokens
from napari_unet.session.store import (
    LOCK_NAME,
    OPEN_TIMEOUT,
    remove_files,
    write_error,
    writer_lock,
)
from napari_unet.session.training import TrainingMixin
from napari_unet.session.versions import VersionsMixin

logger = logging.getLogger(__name__)


class Session(SlicesMixin, TrainingMixin, VersionsMixin):
    """An annotation session folder (see the package docs for its layout).

    Create with :meth:`create` or :meth:`open`; ``readonly=True`` (e.g. in the trainer reading
    training data) never writes, locks or cleans anything.
    """

    def __init__(self, root: Path, index: dict, *, readonly: bool) -> None:
        self.root = root
        self.readonly = readonly
        self._index = index
        self._stamp = self._index_stamp()
        #: What this object last knew of each stored slice (see ``SlicesMixin.save_slices``).
        self._base = slice_tokens(index)
        #: Problems found when opening (missing data files), as sentences; those slices reset.
        self.problems: list[str] = []

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, folder: str | os.PathLike, *, name: str | None = None) -> Session:
        """Create a new session in ``folder`` (created; an existing one must be empty).

        Raises:
            SessionError: ``folder`` already holds a session or other files.
            SessionWriteError: the folder cannot be written.
        """
        root = Path(folder).expanduser().absolute()
        _check_can_create(root)  # before anything is written into a folder that is not ours
        index = new_index(name or root.name)
        try:
            root.mkdir(parents=True, exist_ok=True)
            with writer_lock(root):
                _check_can_create(root)  # again, under the lock: another creator may have won
                atomic_write_json(root / INDEX_NAME, index)
        except OSError as err:
            raise write_error(root, err) from None
        logger.info("created session %s", root)
        return cls(root, index, readonly=False)

    @classmethod
    def open(
        cls, folder: str | os.PathLike, *, readonly: bool = False, wait: float = OPEN_TIMEOUT
    ) -> Session:
        """Open an existing session, validating every entry of its index.

        A writer (``readonly=False``) also gives back the disk that interrupted saves, killed
        trainers and finished runs used — only files the session wrote, each logged
        (:mod:`napari_unet.session.reclaim`). A folder that cannot be written still opens;
        saving then raises ``SessionWriteError``. ``wait``: seconds to wait for a writer busy
        saving (a background process such as the trainer may wait longer than a person).

        Raises:
            SessionError: no session there, a damaged or newer index, or a path that leaves the
                session (the message names the entry).
            SessionBusyError: another program is writing to it right now (it is named when the
                lock says which).
        """
        root = Path(folder).expanduser().absolute()
        if not (root / INDEX_NAME).is_file():
            raise SessionError(
                f"{root} holds no session (no {INDEX_NAME}); pick a session folder or create one."
            )
        if readonly:
            session = cls(root, cls._read_index(root), readonly=True)
        else:
            try:
                with writer_lock(root, timeout=wait, opening=True):
                    session = cls(root, cls._read_index(root), readonly=False)
                    reclaim(root, referenced_files(session._index))
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise write_error(root, err) from None
                logger.warning("session %s is not writable; saving will fail", root)
                session = cls(root, cls._read_index(root), readonly=False)
        session.problems = drop_missing_files(root, session._index)
        session._base = slice_tokens(session._index)
        for problem in session.problems:
            logger.warning("session %s: %s", root, problem)
        return session

    @classmethod
    def open_or_create(cls, folder: str | os.PathLike, *, name: str | None = None) -> Session:
        """Open the session in ``folder``, or create it when there is none."""
        if (Path(folder).expanduser() / INDEX_NAME).is_file():
            return cls.open(folder)
        try:
            return cls.create(folder, name=name)
        except SessionError:
            if not (Path(folder).expanduser() / INDEX_NAME).is_file():
                raise
            return cls.open(folder)  # another program created it a moment ago

    @staticmethod
    def _read_index(root: Path) -> dict:
        try:
            raw = json.loads((root / INDEX_NAME).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SessionError(
                f"cannot read the session index {root / INDEX_NAME} ({err}); restore it from a "
                "backup or create a new session."
            ) from None
        return validate_index(root, raw)

    def _index_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = (self.root / INDEX_NAME).stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def refresh(self) -> bool:
        """Re-read the index if another process changed it; True when it did."""
        stamp = self._index_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._index = self._read_index(self.root)
        self._stamp = stamp
        return True

    # ------------------------------------------------------------------ transactions
    def _mutate(self, change: Callable[[dict, list[str]], tuple[Any, list[str] | None]]) -> Any:
        """Apply ``change(index, written) -> (result, superseded files)`` as one transaction.

        ``change`` works on a copy of the index, writes new data files (appending their relative
        paths to ``written``) and returns the files that the new index no longer needs, or
        ``None`` when it changed nothing (the index is then not rewritten).
        """
        if self.readonly:
            raise SessionError(f"the session {self.root} was opened read-only; it cannot save.")
        written: list[str] = []
        committed = False
        try:
            with writer_lock(self.root):
                self.refresh()
                index = copy.deepcopy(self._index)
                result, superseded = change(index, written)
                if superseded is None:
                    return result
                index["modified"] = now()
                atomic_write_json(self.root / INDEX_NAME, index)
                committed = True
                self._index, self._stamp = index, self._index_stamp()
                still = referenced_files(index)
                remove_files(self.root, [p for p in superseded if p not in still])
        except OSError as err:
            if not committed:
                remove_files(self.root, written)
            raise write_error(self.root, err) from None
        except BaseException:
            if not committed:
                remove_files(self.root, written)
            raise
        return result

    def disk_usage(self) -> int:
        """Bytes the session folder takes on disk (its own files; image sources not counted)."""
        return disk_usage(self.root)

    # ------------------------------------------------------------------ images
    @property
    def name(self) -> str:
        """Display name of the session."""
        return self._index["name"]

    def images(self) -> list[ImageEntry]:
        """Every image of the session, in the order added."""
        self.refresh()
        return [image_entry(self.root, k, v) for k, v in self._index["images"].items()]

    def image(self, image_id: str) -> ImageEntry:
        """One image; :class:`SessionError` when unknown."""
        self.refresh()
        raw = self._index["images"].get(image_id)
        if raw is None:
            raise SessionError(f"the session has no image {image_id!r}; add the image first.")
        return image_entry(self.root, image_id, raw)

    def add_image(
        self,
        name: str,
        *,
        axes: str,
        source: str | os.PathLike | None = None,
        image: np.ndarray | None = None,
        task: str | None = None,
        class_names: tuple[str, ...] | list[str] = (),
    ) -> str:
        """Add an image and return its id.

        Args:
            name: display name (the layer name).
            axes: one letter per dimension of the image (e.g. ``"YX"``, ``"ZYX"``, ``"YXC"``).
            source: the user's image file (TIFF/PNG) or Zarr / OME-Zarr folder, referenced and
                only ever read (a Zarr volume is never loaded whole: its shape and dtype come
                from its metadata). An image with the same source and shape already in the
                session returns its id.
            image: the array (as in napari). Required without ``source``: a copy is stored as
                ``images/<id>.tif``. With ``source`` it only gives shape and dtype.
            task: ``binary``/``semantic``/``instances`` when known; class_names: their names.

        Raises:
            SessionError: no image given, the source is not a TIFF/PNG file or a readable Zarr
                folder, or bad axes.
        """
        path, image = image_input(name, source, image)
        shape, dtype, axes = image_geometry(name, image, axes)
        new = NewImage(self.root, name, path, image, axes, shape, dtype, task, class_names)
        return self._mutate(new.insert)

    def remove_image(self, image_id: str) -> None:
        """Remove an image and all its stored slices (its source file is never touched)."""

        def change(index: dict, written: list[str]) -> tuple[None, list[str]]:
            raw = index["images"].pop(image_id, None)
            if raw is None:
                raise SessionError(f"the session has no image {image_id!r}.")
            files = [r[k] for r in raw["slices"].values() for k in SLICE_FILES if r.get(k)]
            index["validation_pins"] = [
                p for p in index["validation_pins"] if p["image_id"] != image_id
            ]
            return None, files + ([raw["copy"]] if raw.get("copy") else [])

        self._mutate(change)
        self._base = {k: v for k, v in self._base.items() if k[0] != image_id}


def _check_can_create(root: Path) -> None:
    """Refuse a folder that holds a session or anything else (its lock and temporary index
    files apart, which a creator racing with us writes)."""
    held = SessionError(f"{root} already holds a session; open it instead.")
    if (root / INDEX_NAME).exists():
        raise held
    if root.exists() and (
        not root.is_dir()
        or any(
            p.name != LOCK_NAME and not p.name.startswith(f".{INDEX_NAME}.") for p in root.iterdir()
        )
    ):
        if (root / INDEX_NAME).exists():  # a racing creator wrote its index since the first look
            raise held
        raise SessionError(
            f"{root} is not an empty folder; choose a new or empty folder for the session."
        )
