"""A dock widget made of panels stacked in a scroll area (shared by both plugin docks)."""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Any, ClassVar

from qtpy.QtCore import QEvent, QThreadPool, QTimer
from qtpy.QtWidgets import (
    QDockWidget,
    QFrame,
    QMainWindow,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets.loop_state import LoopState

if TYPE_CHECKING:
    import napari


def _wait_for_workers(msecs: int = 10_000) -> None:
    """Let background workers still running finish (bounded) before Qt's teardown at exit."""
    QThreadPool.globalInstance().waitForDone(msecs)


_exit_hook: list[bool] = []


def _separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


class PanelDock(QWidget):
    """Panels (each ``cls(viewer, parent=...)``) stacked top to bottom, scrollable.

    Subclasses set :attr:`panel_classes`; the panels are kept in :attr:`panels` in display order.
    The scroll area keeps the dock usable on small screens. Once docked, the dock hands its
    top-level window (Qt's public ``QWidget.window()``) to the viewer's
    :meth:`~napari_unet._widgets.loop_state.LoopState.watch_window`: when that window closes,
    the loop state's one shutdown emits ``closing`` (each panel's ``shutdown()``, where it has
    one, cancels its work), cancels every job and waits for background workers, so none
    outlives the window (a worker still running when Qt tears its objects down crashes the
    process on exit).
    """

    panel_classes: ClassVar[tuple[type, ...]] = ()
    minimum_width: ClassVar[int] = 300

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        from napari_unet._widgets.spawn_guard import exit_if_trainer_child

        exit_if_trainer_child()  # a trainer re-running an unguarded script: stop here
        super().__init__()
        self.viewer = napari_viewer
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(6, 6, 6, 6)
        column.setSpacing(8)
        self.panels: list[Any] = []
        for index, cls in enumerate(self.panel_classes):
            if index:
                column.addWidget(_separator())
            panel = cls(napari_viewer, parent=content)
            self.panels.append(panel)
            column.addWidget(panel)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self._content, self._scroll = content, scroll
        self._fit_width()
        content.installEventFilter(self)  # re-fit when a section opens or a row grows
        self._join_timer = QTimer(self, singleShot=True, interval=0)
        self._join_timer.timeout.connect(self._on_docked)
        self.loop = LoopState.for_viewer(napari_viewer)
        self.loop.closing.connect(self.shutdown)
        if not _exit_hook:  # closing the window can start a last worker (e.g. model info)
            atexit.register(_wait_for_workers)
            _exit_hook.append(True)

    def event(self, event: Any) -> bool:
        """Once docked (the dock becomes the parent), join a sibling plugin dock as a tab."""
        if event.type() == QEvent.Type.ParentChange:
            self._join_timer.start()  # after napari has placed the dock in its area
            if hasattr(self, "loop"):
                self.loop.watch_window(self.window())  # a QMainWindow once docked
        return super().event(event)

    def _on_docked(self) -> None:
        """Watch the window the dock now lives in (its closing shuts down); join a sibling."""
        self.loop.watch_window(self.window())
        self.join_sibling_dock()

    def dock_widget(self) -> QDockWidget | None:
        """The ``QDockWidget`` holding this dock in the main window, or None."""
        parent = self.parentWidget()
        while parent is not None and not isinstance(parent, QDockWidget):
            parent = parent.parentWidget()
        return parent

    def join_sibling_dock(self) -> bool:
        """Tabify with another plugin dock in the same area (raised on top); True if joined."""
        dock = self.dock_widget()
        window = dock.parentWidget() if dock is not None else None
        if not isinstance(window, QMainWindow) or dock.isFloating():
            return False
        if window.tabifiedDockWidgets(dock):
            return False
        area = window.dockWidgetArea(dock)
        for other in window.findChildren(QDockWidget):
            if (
                other is dock
                or other.isFloating()
                or other.isHidden()
                or window.dockWidgetArea(other) != area
                or other.findChild(PanelDock) is None
            ):
                continue
            window.tabifyDockWidget(other, dock)
            dock.show()
            dock.raise_()
            QTimer.singleShot(0, dock.raise_)  # the tab bar is made on the next turn
            return True
        return False

    def _fit_width(self) -> None:
        """As wide as the panels' widest row needs, so no control hides behind a scrollbar."""
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        slack = 2 * self._scroll.frameWidth() + 8  # the style's scrollbar may be a bit wider
        needed = self._content.minimumSizeHint().width() + bar + slack
        if needed > self.minimumWidth() or self.minimumWidth() < self.minimum_width:
            self.setMinimumWidth(max(self.minimum_width, needed))

    def shutdown(self) -> None:
        """Cancel the panels' work (the loop state's shutdown then waits for the workers)."""
        for panel in self.panels:
            stop = getattr(panel, "shutdown", None)
            if stop is not None:
                stop()

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt API
        """Re-fit the width when the panels' layout changes."""
        if obj is self._content and event.type() == QEvent.Type.LayoutRequest:
            self._fit_width()
        return False
