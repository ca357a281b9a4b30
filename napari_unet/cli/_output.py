"""Check that an output file can be written before any work starts.

A training run or an export that fails only when it writes its result wastes the user's time, so
the commands call :func:`check_output_file` first: the target must not be a folder, its nearest
existing folder must accept a new file (a small probe file is written, synced and removed), and
the disk must have roughly the space the output needs. Every failure is an
:class:`~napari_unet.core.errors.OutputError` with one sentence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from napari_unet.core.errors import OutputError, describe_os_error

logger = logging.getLogger(__name__)

#: Bytes the probe file writes (one page: a full disk refuses it, a nearly full one may not).
PROBE_BYTES = 4096


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover


def existing_folder(path: Path) -> Path:
    """The nearest folder at or above ``path`` that exists (where new folders would be made)."""
    folder = Path(os.path.abspath(path))
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def probe_folder(folder: Path, *, what: str) -> None:
    """Write, sync and remove a small hidden file in ``folder``.

    Raises:
        OutputError: the folder is not a folder, read-only, full or not writable by this user.
    """
    if not folder.is_dir():
        raise OutputError(
            f"cannot write {what}: {folder} is a file, not a folder; choose a folder."
        )
    name = None
    try:
        fd, name = tempfile.mkstemp(prefix=".napari-unet-probe.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        raise OutputError(describe_os_error(err, what=what)) from None
    finally:
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(name)


def check_output_file(
    path: Path, *, what: str, needed_bytes: int = 0, flag: str = "--out", suffix: str = ""
) -> None:
    """Raise :class:`OutputError` unless ``path`` can (very likely) be written.

    Args:
        path: the file the command will write (its missing parent folders are created later).
        what: names the output in the message, e.g. ``"the checkpoint"``.
        needed_bytes: about how much the command will write there (0: only probe).
        flag: the option that named ``path``, for the message.
        suffix: the file suffix the message's example name gets (e.g. ``".pt"``).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(
            f"{flag} {path} is a folder; give the name of a file to write, e.g. "
            f"{path / 'result'}{suffix}."
        )
    folder = existing_folder(path.parent)
    probe_folder(folder, what=what)
    if needed_bytes > 0:
        free = shutil.disk_usage(folder).free
        if free < needed_bytes:
            raise OutputError(
                f"cannot write {what}: the disk of {folder} has {format_bytes(free)} free but "
                f"about {format_bytes(needed_bytes)} are needed; free some space or write to "
                "another disk."
            )
    logger.debug("%s can be written to %s", what, path)
