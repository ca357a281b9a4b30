"""The "U-Net Fine-tune" dock widget: fine-tune panel, then versions and guidance panels.

Each panel is its own module; the versions and guidance panels are optional (a build without
them shows the fine-tune panel alone). Everything sits in a scroll area so the dock stays usable
on small screens.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

from napari_unet._widgets.finetune_panel import FinetunePanel

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: Panels shown under the fine-tune panel, as (module, class); missing ones are left out.
EXTRA_PANELS: tuple[tuple[str, str], ...] = (
    ("napari_unet._widgets.versions_panel", "VersionsPanel"),
    ("napari_unet._widgets.guidance_panel", "GuidancePanel"),
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


class FinetuneWidget(QWidget):
    """Dock widget: fine-tune (``finetune``), then the versions and guidance panels when present.

    Args:
        napari_viewer: the viewer (npe2 passes it by this name).

    Attributes:
        finetune: the :class:`~napari_unet._widgets.finetune_panel.FinetunePanel`.
        panels: every panel, in display order.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(6, 6, 6, 6)
        column.setSpacing(8)
        self.finetune = FinetunePanel(napari_viewer, parent=content)
        self.panels: list[QWidget] = [self.finetune]
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
        self.setMinimumWidth(320)
