"""A label saying how much disk an open session takes ("Session: 42 MB on disk").

The folder is measured in a background job (a session on a network drive with thousands of slice
files takes a moment; :class:`~napari_unet._widgets._workers.Jobs`), at most one measurement at a
time; a request made meanwhile runs once the current one is done.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QLabel, QWidget

logger = logging.getLogger(__name__)


def human_size(n_bytes: int) -> str:
    """``"850 bytes"``, ``"42 MB"``, ``"1.2 GB"`` (powers of 1000, as file managers show)."""
    if n_bytes < 1000:
        return f"{n_bytes} bytes"
    size = float(n_bytes)
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            break
    return f"{size:.1f} {unit}" if size < 10 else f"{size:.0f} {unit}"


class DiskUseLabel(QLabel):
    """Shows ``Session: <size> on disk`` for the session given to :meth:`measure`.

    Args:
        jobs: the viewer's background jobs (:class:`~napari_unet._widgets._workers.Jobs`).
        parent: the Qt parent.

    Signals:
        measured(object, object): session root and bytes (None when unreadable), on the main
            thread.
    """

    measured = Signal(object, object)

    def __init__(self, jobs: Any, parent: QWidget | None = None) -> None:
        super().__init__("", parent, toolTip="Disk space the session folder takes")
        self._jobs = jobs
        self._key = (id(self), "disk use")
        self._session: Any = None
        self._busy = False
        self._again = False
        self.measured.connect(self._show)

    def measure(self, session: Any) -> None:
        """Measure ``session`` (a :class:`~napari_unet.session.Session`) in a thread."""
        if session is not self._session:
            self._session = session
            self.setText("")
        if session is None:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        self._jobs.start(
            self._key,
            _measure,
            session,
            what="Measuring the session",
            on_done=self._on_measured,
            on_error=self._on_failed,
        )

    def _on_measured(self, result: tuple[Any, int | None]) -> None:
        with contextlib.suppress(RuntimeError):  # the label was closed meanwhile
            self.measured.emit(*result)

    def _on_failed(self, text: str) -> None:
        logger.warning("%s", text)
        with contextlib.suppress(RuntimeError):
            self._busy = False

    def _show(self, root: Any, n_bytes: Any) -> None:
        self._busy = False
        if self._session is not None and root == self._session.root and n_bytes is not None:
            self.setText(f"Session: {human_size(n_bytes)} on disk")
        if self._again:
            self._again = False
            self.measure(self._session)


def _measure(session: Any) -> tuple[Any, int | None]:
    """``(session root, bytes on disk)``; None bytes when the folder cannot be read (a job)."""
    try:
        return session.root, session.disk_usage()
    except OSError as err:
        logger.debug("cannot measure %s: %s", session.root, err)
        return session.root, None
