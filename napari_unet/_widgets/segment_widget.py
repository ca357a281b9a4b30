"""The "U-Net Segment" dock widget: predict, correct and session panels, scrollable."""

from __future__ import annotations

from napari_unet._widgets.correct_panel import CorrectPanel
from napari_unet._widgets.dock import PanelDock
from napari_unet._widgets.segment_panel import SegmentPanel
from napari_unet._widgets.session_panel import SessionPanel
from napari_unet._widgets.shortcuts import ShortcutsPanel


class SegmentWidget(PanelDock):
    """Dock widget: predict (:attr:`segment`), then the correction and session panels.

    Args:
        napari_viewer: the viewer (npe2 passes it by this name).
    """

    panel_classes = (SegmentPanel, CorrectPanel, SessionPanel, ShortcutsPanel)

    @property
    def segment(self) -> SegmentPanel:
        """The predict panel."""
        return self.panels[0]
