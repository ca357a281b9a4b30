"""The "U-Net Fine-tune" dock widget: fine-tune panel, then versions and guidance panels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_unet._widgets.dock import PanelDock
from napari_unet._widgets.finetune_panel import FinetunePanel
from napari_unet._widgets.guidance_panel import GuidancePanel
from napari_unet._widgets.shortcuts import ShortcutsPanel, bind_viewer_keys
from napari_unet._widgets.versions_panel import VersionsPanel

if TYPE_CHECKING:
    import napari


class FinetuneWidget(PanelDock):
    """Dock widget: fine-tune (:attr:`finetune`), then the versions and guidance panels.

    Args:
        napari_viewer: the viewer (npe2 passes it by this name).
    """

    panel_classes = (FinetunePanel, VersionsPanel, GuidancePanel, ShortcutsPanel)
    minimum_width = 320

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        bind_viewer_keys(
            napari_viewer, {"next": self.panels[2].next_region, "stop": self.finetune.stop}
        )

    @property
    def finetune(self) -> FinetunePanel:
        """The fine-tune panel."""
        return self.panels[0]
