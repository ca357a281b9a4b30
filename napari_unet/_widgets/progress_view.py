"""Feedback widgets: job progress (in the widget and napari's activity dock), the message line."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QProgressBar, QWidget

from napari_unet._widgets.predict_worker import JobProgress

ERROR_STYLE = "color: #e0503c; font-weight: bold;"


class MessageLine(QLabel):
    """A red, selectable, word-wrapped sentence; hidden when empty.

    Each message has a ``source`` (``run``, ``axes``, ``model``) so that clearing one kind (the
    model loaded fine) does not hide another (the axes still need choosing).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setStyleSheet(ERROR_STYLE)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setVisible(False)
        self.source = ""

    def show_text(self, text: str, source: str = "run") -> None:
        """Show ``text`` (from ``source``)."""
        self.source = source
        self.setText(text)
        self.setVisible(True)

    def clear_text(self, source: str | None = None) -> None:
        """Hide the line (only a message from ``source``, when given)."""
        if source is None or source == self.source:
            self.clear()
            self.setVisible(False)


class ProgressView(QProgressBar):
    """A progress bar that mirrors itself into a ``napari.utils.progress`` while a job runs.

    Updates are cheap (two setters and one event), so they can follow every batch of tiles.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(0, 1)
        self.setValue(0)
        self._pbar: Any = None

    def begin(self, description: str) -> None:
        """Show a busy bar and open the activity-dock entry."""
        from napari.utils import progress

        self.end(done=False)
        self._pbar = progress(total=0, desc=description)
        self.setRange(0, 0)  # busy until the first step says how much there is

    def step(self, step: JobProgress) -> None:
        """Follow ``step`` (tiles while predicting; the dock entry counts tiles only)."""
        if self._pbar is None:
            return  # not running (a late step after end())
        if step.total:
            self.setRange(0, step.total)
            self.setValue(step.done)
        pbar = self._pbar
        if pbar is not None and step.stage == "predicting":
            if pbar.total != step.total:
                pbar.total = step.total
            pbar.update(step.done - pbar.n)

    def end(self, *, done: bool) -> None:
        """Full (``done``) or empty bar; close the activity-dock entry."""
        self.setRange(0, 1)
        self.setValue(1 if done else 0)
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
