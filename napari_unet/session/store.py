"""Files of a session: compressed arrays, the writer lock, write errors, and crash clean-up.

Arrays are stored one per file as ``.npz`` (a zip holding ``array.npy``, deflate level 1):
numpy reads it with ``allow_pickle=False``, and a 4096² label image of ~3,000 cells takes about
1 MB and 0.1 s to write instead of 64 MB raw. Each file is written atomically under a name never
used before, so a file that the index names is always complete.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from napari_unet.core.atomic import atomic_write_with
from napari_unet.session.errors import SessionError, SessionWriteError

logger = logging.getLogger(__name__)

#: Name of the lock file that serialises writers (napari and the trainer) of one session.
LOCK_NAME = ".lock"
#: Sub-folders whose files belong to the index (orphans there are removed after a crash).
DATA_FOLDERS: tuple[str, ...] = ("labels", "reviewed", "snapshots", "images")
_MEMBER = "array.npy"


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (.npz, deflate level 1) atomically; raises ``OSError``."""
    array = np.ascontiguousarray(array)

    def writer(handle) -> None:
        with (
            zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
            archive.open(_MEMBER, "w", force_zip64=True) as member,
        ):
            np.lib.format.write_array(member, array, allow_pickle=False)

    atomic_write_with(path, writer)


def load_array(path: Path, *, what: str) -> np.ndarray:
    """Read an array written by :func:`save_array` (never unpickles).

    Raises:
        FileNotFoundError: the file is gone (the caller may re-read the index and retry).
        SessionError: the file is damaged.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            return archive[_MEMBER.removesuffix(".npy")]
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise SessionError(
            f"{what} ({path}) is damaged ({type(err).__name__}: {err}); delete that slice's "
            "entry or restore the session folder from a backup."
        ) from None


def write_error(root: Path, err: OSError) -> SessionWriteError:
    """The user-facing error for a failed save."""
    if err.errno == errno.ENOSPC or err.errno == getattr(errno, "EDQUOT", None):
        reason = "disk full"
        todo = "free space or choose another session folder"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the folder is read-only"
        todo = "choose a session folder you can write to"
    else:
        reason = err.strerror or str(err)
        todo = "check the disk, or choose another session folder"
    return SessionWriteError(
        f"Could not save the session to {root}: {reason} — your corrections are still in "
        f"napari; {todo}."
    )


@contextlib.contextmanager
def writer_lock(root: Path, *, timeout: float = 30.0) -> Iterator[None]:
    """Hold the session's exclusive writer lock (released by the OS if the process dies).

    Raises:
        OSError: the lock file cannot be created (read-only folder).
        SessionWriteError: another process held the lock for ``timeout`` seconds.
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(root / LOCK_NAME, flags, 0o644)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise SessionError(
            f"{root / LOCK_NAME} is a link to another file; the session folder was damaged or "
            "crafted, so it is not used — open only sessions you trust."
        ) from None
    try:
        deadline = time.monotonic() + timeout
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise SessionWriteError(
                    f"Could not save the session to {root}: another program has been writing "
                    f"to it for {timeout:.0f} s — your corrections are still in napari; close "
                    "the other program or choose another session folder."
                )
            time.sleep(0.01)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def is_temporary(name: str) -> bool:
    """A temporary file of :mod:`napari_unet.core.atomic` (``.<target>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def clean_orphans(root: Path, referenced: Iterable[str]) -> int:
    """Delete what an interrupted save left behind; call only while holding the writer lock.

    Removes temporary files in the session folder and its data folders, and data files that the
    index does not name (written by a save that was killed before its index was committed).
    ``models/`` is left alone: a trainer may be writing a checkpoint there. Returns the count.
    """
    keep = set(referenced)
    removed = 0
    candidates: list[Path] = [p for p in root.iterdir() if is_temporary(p.name)]
    for folder in DATA_FOLDERS:
        base = root / folder
        if base.is_dir() and not base.is_symlink():
            candidates += [p for p in base.rglob("*") if p.is_file() or p.is_symlink()]
    for path in candidates:
        relative = path.relative_to(root).as_posix()
        if relative in keep or not (is_temporary(path.name) or path.suffix in (".npz", ".tif")):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    if removed:
        logger.info("removed %d file(s) left by an interrupted save in %s", removed, root)
    return removed


def remove_files(root: Path, relatives: Iterable[str]) -> None:
    """Best-effort removal of superseded files (a leftover is cleaned at the next open)."""
    for relative in relatives:
        with contextlib.suppress(OSError):
            (root / relative).unlink()
