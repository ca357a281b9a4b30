"""Errors of the annotation session, each carrying the sentence shown to the user."""

from __future__ import annotations

from napari_unet.core.errors import UserInputError


class SessionError(UserInputError):
    """A session folder cannot be used: missing, damaged, newer, or unsafe (a path leaves it)."""


class SessionWriteError(SessionError):
    """Saving failed (disk full, read-only folder); the files on disk are still the last save."""


class SessionBusyError(SessionWriteError):
    """Another program holds the session's writer lock (the message names it when it can)."""


class SessionConflictError(SessionError):
    """A slice was changed by another program since this one read it; nothing was saved."""
