"""The "U-Net Segment" dock widget: predict, correct and session panels, scrollable."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_unet._widgets.class_legend import ClassLegend
from napari_unet._widgets.correct_panel import CorrectPanel
from napari_unet._widgets.dock import PanelDock
from napari_unet._widgets.segment_panel import SegmentPanel
from napari_unet._widgets.session_panel import SessionPanel
from napari_unet._widgets.shortcuts import ShortcutsPanel, bind_viewer_keys

if TYPE_CHECKING:
    import napari


class SegmentWidget(PanelDock):
    """Dock widget: predict (:attr:`segment`), then the correction and session panels.

    Args:
        napari_viewer: the viewer (npe2 passes it by this name).
    """

    panel_classes = (SegmentPanel, CorrectPanel, SessionPanel, ClassLegend, ShortcutsPanel)

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        bind_viewer_keys(napari_viewer, {"run": self.segment.run, "mark": self.panels[1].mark_view})

    @property
    def segment(self) -> SegmentPanel:
        """The predict panel."""
        return self.panels[0]
