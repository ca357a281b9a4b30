"""Files of a session: compressed arrays, the writer and run locks, and write errors.

Arrays are stored one per file as ``.npz`` (a zip holding ``array.npy``, deflate level 1):
numpy reads it with ``allow_pickle=False``, and a 4096² label image of ~3,000 cells takes about
1 MB and 0.1 s to write instead of 64 MB raw. Each file is written atomically under a name never
used before, so a file that the index names is always complete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from napari_unet.core.atomic import atomic_write_with
from napari_unet.session.errors import SessionBusyError, SessionError, SessionWriteError

logger = logging.getLogger(__name__)

#: Name of the lock file that serialises writers (napari and the trainer) of one session.
LOCK_NAME = ".lock"
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


#: Seconds :meth:`Session.open` waits for the writer lock before saying who holds it (a save
#: by napari or a trainer holds it well under a second).
OPEN_TIMEOUT = 2.0


@contextlib.contextmanager
def writer_lock(root: Path, *, timeout: float = 30.0, opening: bool = False) -> Iterator[None]:
    """Hold the session's exclusive writer lock (released by the OS if the process dies).

    While held, the lock file records who holds it (process id, host, program, since when), so
    a program that finds the session locked can say which one has it open.

    Args:
        root: the session folder. timeout: seconds to wait for another writer.
        opening: the lock is taken to open the session (changes the wording of the error).

    Raises:
        OSError: the lock file cannot be created (read-only folder).
        SessionBusyError: another process held the lock for ``timeout`` seconds.
    """
    fd = _open_lock(root / LOCK_NAME, root)
    try:
        deadline = time.monotonic() + timeout
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise busy_error(root, timeout=timeout, opening=opening)
            time.sleep(0.01)
        _record_owner(fd, _owner())
        try:
            yield
        finally:
            _record_owner(fd, b"")
            _unlock(fd)
    finally:
        os.close(fd)


def _open_lock(path: Path, root: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise SessionError(
            f"{path} is a link to another file; the session folder was damaged or "
            "crafted, so it is not used — open only sessions you trust."
        ) from None


def _owner() -> bytes:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "program": program or "python",
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    ).encode()


def _record_owner(fd: int, data: bytes) -> None:
    """Write (or clear) the holder's description into the lock file; best effort."""
    if not hasattr(os, "pwrite"):  # Windows locks the bytes themselves: nobody could read them
        return
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        if data:
            os.pwrite(fd, data, 0)


def lock_holder(path: Path) -> str | None:
    """Who holds the lock at ``path``, in words (None when unknown or its process is gone)."""
    try:
        with open(path, "rb") as handle:
            owner = json.loads(handle.read(4096).decode("utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host == socket.gethostname() and not _alive(pid):
        return None  # a stale description: the process died (the OS freed its lock)
    program = str(owner.get("program") or "python")[:60]
    since = str(owner.get("since") or "")[:40]
    return f"process {pid} ({program}) on {host}" + (f" since {since}" if since else "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else (or not checkable here)
        return True
    return True


def busy_error(root: Path, *, timeout: float, opening: bool) -> SessionBusyError:
    """The user-facing error when another program holds the writer lock."""
    who = lock_holder(root / LOCK_NAME)
    holder = f"another program ({who})" if who else "another program"
    if opening:
        return SessionBusyError(
            f"The session {root} is open in {holder}, which is writing to it right now; close "
            "that program or let it finish, then open the session again."
        )
    return SessionBusyError(
        f"Could not save the session to {root}: it is open in {holder}, which has been "
        f"writing to it for {timeout:.0f} s — your corrections are still in napari; close the "
        "other program or choose another session folder."
    )


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Mark a trainer run folder as in use for as long as the context (or the process) lives.

    Raises:
        OSError: the lock file cannot be created.
        SessionBusyError: another process already holds it.
    """
    fd = hold_run_lock(folder)
    try:
        yield
    finally:
        release_run_lock(fd)


def hold_run_lock(folder: Path) -> int:
    """Take the lock of a run folder and return its descriptor (see :func:`release_run_lock`)."""
    fd = _open_lock(folder / LOCK_NAME, folder)
    if not _try_lock(fd):
        os.close(fd)
        raise SessionBusyError(f"the training run {folder} is in use by another trainer.")
    _record_owner(fd, _owner())
    return fd


def release_run_lock(fd: int) -> None:
    """Release a lock taken by :func:`hold_run_lock`."""
    try:
        _record_owner(fd, b"")
        _unlock(fd)
    finally:
        os.close(fd)


def run_is_active(folder: Path) -> bool:
    """True while a live process holds the lock of the run folder ``folder``."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # no lock file: written by an older version, or never started
    try:
        if not _try_lock(fd):
            return True
        _unlock(fd)
        return False
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


def remove_files(root: Path, relatives: Iterable[str]) -> None:
    """Best-effort removal of superseded files (a leftover is cleaned at the next open)."""
    for relative in relatives:
        with contextlib.suppress(OSError):
            (root / relative).unlink()
