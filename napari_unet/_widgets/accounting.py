"""Accounting of the human effort: correction time, and what each round of it bought.

:class:`CorrectionClock` measures the time spent correcting: it listens to the edit events of
the plugin's labels layers (brush strokes, fills, reviewed marks) and adds the time between
consecutive edits while the napari window is active; a gap longer than :data:`IDLE_S` (the user
went for coffee) is not counted. The time is added to the open accounting round of the session
(``Session.add_correction_time``) every :data:`FLUSH_MS`, when a version closes a round, and when
the panel closes. :func:`round_rows` turns ``Session.rounds()`` into table rows: minutes,
pixels and objects edited, and the validation gain of the version that closed the round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QTimer, Signal

from napari_unet._widgets import layers as L
from napari_unet._widgets.label_history import is_plugin_write
from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.version_compare import primary_metric

logger = logging.getLogger(__name__)

IDLE_S = 120.0
FLUSH_MS = 15_000
EDIT_EVENTS = ("paint", "metadata")


def window_active() -> bool:
    """True when one of this application's windows has the keyboard focus."""
    from qtpy.QtWidgets import QApplication

    return QApplication.activeWindow() is not None


class CorrectionClock(QObject):
    """Measures correction time from edit events and saves it into the session.

    Args:
        viewer: the napari viewer whose plugin labels layers are watched.
        parent: the Qt parent.

    Attributes:
        session: where the time goes (the viewer's open session, read from its
            :class:`~napari_unet._widgets.loop_state.LoopState`); None: kept pending.
        is_active: returns whether edits count now (default: a napari window is active).
        pending: seconds measured and not saved yet.

    Signals:
        changed(float): seconds measured in this session since the clock started.
    """

    changed = Signal(float)

    def __init__(self, viewer: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop = LoopState.for_viewer(viewer)
        self.loop.session_leaving.connect(self.flush)  # the time goes into the old session
        self.loop.session_changed.connect(self._restart)
        self.is_active: Callable[[], bool] = window_active
        self.pending = 0.0
        self.total = 0.0
        self._last: float | None = None
        self._layers: list[Any] = []
        self._timer = QTimer(self, interval=FLUSH_MS)
        self._timer.timeout.connect(self.flush)
        self._timer.start()
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        for layer in viewer.layers:
            self._watch(layer)

    def _watch(self, layer: Any) -> None:
        if (L.plugin_tag(layer) or {}).get("role") != "labels" or layer in self._layers:
            return
        self._layers.append(layer)
        for name in EDIT_EVENTS:
            getattr(layer.events, name).connect(self._on_edit)

    def _on_inserted(self, event: Any) -> None:
        self._watch(event.value)

    def _on_removed(self, event: Any) -> None:
        layer = event.value
        if layer in self._layers:
            self._layers.remove(layer)
            for name in EDIT_EVENTS:
                getattr(layer.events, name).disconnect(self._on_edit)

    def _on_edit(self, event: Any = None) -> None:
        if getattr(event, "napari_unet_source", None) is not None:
            return  # a prediction written by the plugin, not the user's edit
        if is_plugin_write(getattr(event, "source", None), getattr(event, "value", None)):
            return  # the history item of a prediction the plugin merged in
        self.record_edit()

    def record_edit(self, at: float | None = None) -> None:
        """Count an edit made at ``at`` (``time.monotonic()``; default now)."""
        if not self.is_active():
            return
        at = time.monotonic() if at is None else float(at)
        if self._last is not None and 0.0 <= at - self._last <= IDLE_S:
            gap = at - self._last
            self.pending += gap
            self.total += gap
            self.changed.emit(self.total)
        self._last = at

    @property
    def session(self) -> Any:
        """The open session (None: none)."""
        return self.loop.session

    def flush(self, session: Any = None) -> float:
        """Save the pending time into ``session`` (default: the open one); returns the seconds."""
        session = self.session if session is None else session
        seconds = self.pending
        if session is None or seconds <= 0 or getattr(session, "readonly", False):
            return 0.0
        try:
            session.add_correction_time(seconds)
        except Exception as err:  # a full disk: keep it pending, retry at the next flush
            logger.warning("could not save the correction time: %s", err)
            return 0.0
        self.pending = 0.0
        return seconds

    def _restart(self, *_: Any) -> None:
        """A new session: count from zero (the old one got its time on ``session_leaving``)."""
        self.pending = 0.0
        self._last = None


def round_rows(rounds: list[dict], versions: list[Any]) -> list[tuple[str, ...]]:
    """Table rows ``(round, version, minutes, pixels, objects, gain)``, oldest round first.

    The gain is the version's validation score minus its parent's (when the parent is a version
    of the session with a score), else minus the previous version's; "—" when unknown.
    """
    by_id = {v.id: v for v in versions}
    order = [v.id for v in versions]
    rows = []
    for number, record in enumerate(rounds, start=1):
        version = by_id.get(record.get("version") or "")
        gain = "—"
        if version is not None:
            score = primary_metric(version.metrics)
            parent = by_id.get(version.parent or "")
            if parent is None and order.index(version.id) > 0:
                parent = by_id[order[order.index(version.id) - 1]]
            base = primary_metric(parent.metrics) if parent is not None else None
            if score is not None and base is not None:
                gain = f"{score - base:+.3f}"
            elif score is not None:
                gain = f"score {score:.3f}"
        label = version.id if version is not None else ("open" if not record.get("ended") else "—")
        rows.append(
            (
                str(number),
                label,
                f"{float(record.get('seconds_correcting', 0.0)) / 60:.1f}",
                str(int(record.get("pixels_edited", 0))),
                str(int(record.get("objects_edited", 0))),
                gain,
            )
        )
    return rows
