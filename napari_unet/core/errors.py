"""Errors a user can cause, each carrying a sentence that says what is wrong and what to do.

Everything that a user can get wrong (axes, dtypes, files, checkpoints, training data) raises a
subclass of :class:`UserInputError`. The CLI prints its message on one line; the GUI shows it as a
notification. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import errno
from pathlib import Path


class UserInputError(ValueError):
    """Base class: the user's input cannot be used; ``str(err)`` is the message to show."""


class AxesError(UserInputError):
    """The array's shape does not match the axes, or the axes cannot be determined safely."""


class ChannelMismatchError(UserInputError):
    """The image has a different number of channels than the model expects."""


class CheckpointError(UserInputError):
    """A checkpoint file is missing, truncated, foreign, unsafe or of an unknown format."""


class ImageReadError(UserInputError):
    """An image file cannot be read (missing, corrupt, unsupported)."""


class TrainingDataError(UserInputError):
    """The annotated data cannot be trained on (empty, one class, mismatched shapes, bad dtype)."""


class TrainingDivergedError(UserInputError):
    """The loss became NaN or infinite; no checkpoint was overwritten."""


class DeviceError(UserInputError):
    """The requested compute device is not available on this machine."""


class OutputError(UserInputError):
    """An output location cannot be written: read-only, full, no permission, or a folder."""


def _os_error_folder(filename: str | None) -> str:
    """The folder (or file) to name for an ``OSError``: never a temporary file's own name."""
    if not filename:
        return "the output location"
    path = Path(filename)
    if path.name.startswith(".") and path.name.endswith(".tmp"):  # core.atomic's temp names
        return str(path.parent)
    return str(path)


def describe_os_error(err: OSError, *, what: str = "") -> str:
    """One sentence for a failed read or write: what went wrong where, and what to do.

    Args:
        err: the error (``err.filename`` may be a temporary sibling of the real target; only its
            folder is named then).
        what: the thing being written, e.g. ``"the checkpoint"`` (optional).
    """
    where = _os_error_folder(err.filename)
    advice = {
        errno.ENOSPC: f"there is no space left on the disk of {where}; free some space or "
        "write to another disk",
        errno.EDQUOT: f"your disk quota for {where} is used up; free some space or write elsewhere",
        errno.EROFS: f"{where} is on a read-only disk; choose an output location you can write to",
        errno.EACCES: f"you have no permission to write in {where}; choose a folder you can "
        "write to",
        errno.EPERM: f"you have no permission to write in {where}; choose a folder you can "
        "write to",
        errno.EISDIR: f"{where} is a folder; give a file name",
        errno.ENOTDIR: f"a part of {where} is a file, not a folder; choose another location",
        errno.ENOENT: f"{where} does not exist; check the path",
        errno.ENAMETOOLONG: f"the name {where} is too long; choose a shorter path",
    }.get(err.errno or 0)
    if advice is None:
        reason = (err.strerror or str(err)).rstrip(".").lower()
        advice = f"{reason} at {where}; check the disk and the path"
    return f"cannot write {what}: {advice}." if what else f"{advice}."
