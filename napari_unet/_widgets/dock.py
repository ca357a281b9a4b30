"""A dock widget made of panels stacked in a scroll area (shared by both plugin docks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

if TYPE_CHECKING:
    import napari


def _separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


class PanelDock(QWidget):
    """Panels (each ``cls(viewer, parent=...)``) stacked top to bottom, scrollable.

    Subclasses set :attr:`panel_classes`; the panels are kept in :attr:`panels` in display order.
    The scroll area keeps the dock usable on small screens.
    """

    panel_classes: ClassVar[tuple[type, ...]] = ()
    minimum_width: ClassVar[int] = 300

    def __init__(self, napari_viewer: napari.Viewer) -> None:
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
        self.setMinimumWidth(self.minimum_width)
