"""The plugin's keyboard shortcuts, listed in a collapsible "Keyboard shortcuts" section.

Two kinds: keys of a focused dock (Qt shortcuts, e.g. Ctrl+Enter runs the prediction) and
:data:`VIEWER_KEYS`, napari key bindings of the viewer (they work while the canvas has the focus,
the usual place of the hands while correcting). The viewer keys are Shift+letter combinations that
napari's own keymap leaves free (``tests/test_widget_keys.py`` checks them against it); each is
bound through a weak reference, so a closed dock's key does nothing rather than keeping it alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from napari_unet._widgets.collapsible import CollapsibleForm
from napari_unet._widgets.correct_panel import NEXT_LABEL_KEY
from napari_unet._widgets.finetune_panel import START_HINT, STOP_HINT
from napari_unet._widgets.segment_panel import RUN_HINT

if TYPE_CHECKING:
    import napari

#: The plugin's napari viewer keys: action -> (keys, what they do).
VIEWER_KEYS: dict[str, tuple[str, str]] = {
    "run": ("Shift+R", "Run the prediction (anywhere in the viewer)"),
    "mark": ("Shift+M", "Mark the visible part of the slice reviewed"),
    "next": ("Shift+N", "Next region to review (Fine-tune dock's guidance)"),
    "stop": ("Shift+S", "Stop fine-tuning (anywhere in the viewer)"),
}

#: (keys, what they do, where they work).
SHORTCUTS: tuple[tuple[str, str], ...] = (
    *VIEWER_KEYS.values(),
    (RUN_HINT, "Run the prediction (Segment dock focused)"),
    (NEXT_LABEL_KEY, "Next free label id (labels layer selected)"),
    ("Ctrl+Z", "Undo a paint or a deletion (napari's)"),
    (START_HINT, "Start fine-tuning (Fine-tune dock focused)"),
    (STOP_HINT, "Stop fine-tuning (Fine-tune dock focused)"),
    ("Ctrl+Alt+/", "All of napari's keys (painting, erasing…)"),
)


class _WeakAction:
    """A viewer key binding calling a panel method through a weak reference (dead: no-op)."""

    def __init__(self, method: Callable[[], Any]) -> None:
        self._method = weakref.WeakMethod(method)
        self.__doc__ = method.__doc__

    def __call__(self, viewer: Any) -> None:
        method = self._method()
        if method is not None:
            method()


def bind_viewer_keys(viewer: Any, actions: dict[str, Callable[[], Any]]) -> None:
    """Bind ``actions`` (:data:`VIEWER_KEYS` name -> bound panel method) to ``viewer``'s keys."""
    for name, method in actions.items():
        viewer.bind_key(VIEWER_KEYS[name][0], _WeakAction(method), overwrite=True)


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
