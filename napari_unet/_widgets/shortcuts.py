"""The plugin's keyboard shortcuts, listed in a collapsible "Keyboard shortcuts" section."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from napari_unet._widgets.collapsible import CollapsibleForm
from napari_unet._widgets.correct_panel import NEXT_LABEL_KEY
from napari_unet._widgets.finetune_panel import START_HINT, STOP_HINT
from napari_unet._widgets.segment_panel import RUN_HINT

if TYPE_CHECKING:
    import napari

#: (keys, what they do, where they work).
SHORTCUTS: tuple[tuple[str, str], ...] = (
    (RUN_HINT, "Run the prediction (Segment dock focused)"),
    (NEXT_LABEL_KEY, "Next free label id (labels layer selected)"),
    ("Ctrl+Z", "Undo a paint or a deletion (napari's)"),
    (START_HINT, "Start fine-tuning (Fine-tune dock focused)"),
    (STOP_HINT, "Stop fine-tuning (Fine-tune dock focused)"),
    ("Ctrl+Alt+/", "All of napari's keys (painting, erasing…)"),
)


def shortcuts_text() -> str:
    """The shortcuts as plain lines, ``"Ctrl+Enter: Run the prediction (…)"``."""
    return "\n".join(f"{keys}: {what}" for keys, what in SHORTCUTS)


class ShortcutsPanel(QWidget):
    """A collapsed "Keyboard shortcuts" section (its header's tooltip lists them too)."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.section = CollapsibleForm("Keyboard shortcuts")
        self.section.toggle.setToolTip(shortcuts_text())
        for keys, what in SHORTCUTS:
            label = QLabel(what, wordWrap=True)
            self.section.add_row(f"<b>{keys}</b>", label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.section)
