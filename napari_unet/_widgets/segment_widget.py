"""The "U-Net Segment" dock widget: predict, correct and session panels, scrollable."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

from napari_unet._widgets.segment_panel import SegmentPanel

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: Panels shown under the predict panel, as (module, class); missing ones are left out.
EXTRA_PANELS: tuple[tuple[str, str], ...] = (
    ("napari_unet._widgets.correct_panel", "CorrectPanel"),
    ("napari_unet._widgets.session_panel", "SessionPanel"),
)


def _optional_panel(module: str, name: str, viewer: Any, parent: QWidget) -> QWidget | None:
    try:
        cls = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        logger.debug("%s is not part of this build", module)
        return None
    return cls(viewer, parent=parent)


def _separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


class SegmentWidget(QWidget):
    """Dock widget: predict (``segment``), then correction and session panels when present.

    Args:
        napari_viewer: the viewer (npe2 passes it by this name).

    Attributes:
        segment: the :class:`~napari_unet._widgets.segment_panel.SegmentPanel`.
        panels: every panel, in display order.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(6, 6, 6, 6)
        column.setSpacing(8)
        self.segment = SegmentPanel(napari_viewer, parent=content)
        self.panels: list[QWidget] = [self.segment]
        for module, name in EXTRA_PANELS:
            panel = _optional_panel(module, name, napari_viewer, content)
            if panel is not None:
                self.panels.append(panel)
        for index, panel in enumerate(self.panels):
            if index:
                column.addWidget(_separator())
            column.addWidget(panel)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self.setMinimumWidth(300)
