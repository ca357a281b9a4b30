"""The "U-Net Fine-tune" dock widget: fine-tune panel, then versions and guidance panels."""

from __future__ import annotations

from napari_unet._widgets.dock import PanelDock
from napari_unet._widgets.finetune_panel import FinetunePanel
from napari_unet._widgets.guidance_panel import GuidancePanel
from napari_unet._widgets.shortcuts import ShortcutsPanel
from napari_unet._widgets.versions_panel import VersionsPanel


class FinetuneWidget(PanelDock):
    """Dock widget: fine-tune (:attr:`finetune`), then the versions and guidance panels.

    Args:
        napari_viewer: the viewer (npe2 passes it by this name).
    """

    panel_classes = (FinetunePanel, VersionsPanel, GuidancePanel, ShortcutsPanel)
    minimum_width = 320

    @property
    def finetune(self) -> FinetunePanel:
        """The fine-tune panel."""
        return self.panels[0]
