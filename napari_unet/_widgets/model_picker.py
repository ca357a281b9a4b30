"""The model chooser: built-in checkpoints, recently used files, then "Load…".

Recent files are remembered in ``recent.json`` under the user config folder
(``$NAPARI_UNET_CONFIG_DIR``, else ``~/.config/napari-unet-loop`` or the platform's equivalent),
written atomically; a missing or damaged file is an empty list.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QWidget

from napari_unet.core.atomic import atomic_write_text

logger = logging.getLogger(__name__)

MAX_RECENT = 8
LOAD_ITEM = "__load__"
_TOOLTIP = Qt.ItemDataRole.ToolTipRole


def config_dir() -> Path:
    """The plugin's user configuration folder (not created here)."""
    override = os.environ.get("NAPARI_UNET_CONFIG_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or (Path.home() / ".config")
    return Path(base) / "napari-unet-loop"


def recent_path() -> Path:
    """The JSON file listing recently used checkpoints."""
    return config_dir() / "recent.json"


def load_recent() -> list[str]:
    """Recently used checkpoint paths, newest first (only files that still exist)."""
    try:
        items = json.loads(recent_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(items, list):
        return []
    return [str(p) for p in items if isinstance(p, str) and Path(p).is_file()][:MAX_RECENT]


def remember(path: str | os.PathLike) -> list[str]:
    """Put ``path`` first in the recent list (saved); returns the new list."""
    path = str(Path(path).expanduser().resolve())
    items = [path, *(p for p in load_recent() if p != path)][:MAX_RECENT]
    try:
        recent_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(recent_path(), json.dumps(items, indent=1))
    except OSError as err:  # a read-only home must not stop prediction
        logger.warning("could not save the recent models list: %s", err)
    return items


def builtin_models() -> dict[str, Path]:
    """Built-in checkpoints ``{name: path}`` (no torch import)."""
    from napari_unet.core.checkpoint import builtin_checkpoints

    return builtin_checkpoints()


class ModelPicker(QComboBox):
    """A combo box of checkpoints; ``checkpoint()`` is the chosen path or None.

    Signals:
        model_changed(str): the chosen checkpoint path ("" when none).
    """

    model_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setToolTip("Built-in models, recently used checkpoints, or Load… a .pt file")
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(16)
        self._previous = -1
        self.populate()
        self.activated.connect(self._on_activated)
        self.currentIndexChanged.connect(self._on_index)

    def populate(self, select: str | None = None) -> None:
        """Refill the list; select ``select`` (a path) or keep the current choice."""
        current = select or self.checkpoint()
        self.blockSignals(True)
        self.clear()
        for name, path in builtin_models().items():
            self.addItem(f"{name} (built-in)", str(path))
            self.setItemData(self.count() - 1, str(path), _TOOLTIP)
        builtin_count = self.count()
        recent = [
            p for p in load_recent() if p not in {self.itemData(i) for i in range(self.count())}
        ]
        if builtin_count and recent:
            self.insertSeparator(self.count())
        for path in recent:
            self.addItem(Path(path).name, path)
            self.setItemData(self.count() - 1, path, _TOOLTIP)
        if self.count():
            self.insertSeparator(self.count())
        self.addItem("Load…", LOAD_ITEM)
        index = self.findData(current) if current else -1
        if index < 0:
            index = 0 if self.itemData(0) != LOAD_ITEM else -1
        self.setCurrentIndex(index)
        self._previous = index
        self.blockSignals(False)
        self.model_changed.emit(self.checkpoint() or "")

    def checkpoint(self) -> str | None:
        """The chosen checkpoint path, or None."""
        data = self.currentData()
        return data if isinstance(data, str) and data and data != LOAD_ITEM else None

    def add_checkpoint(self, path: str | os.PathLike) -> None:
        """Remember ``path`` as a recent model and select it."""
        self.populate(select=remember(path)[0])

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) != LOAD_ITEM:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a U-Net checkpoint", str(Path.home()), "Checkpoints (*.pt *.pth);;All (*)"
        )
        if path:
            self.add_checkpoint(path)
        else:
            self.setCurrentIndex(self._previous)

    def _on_index(self, index: int) -> None:
        if self.itemData(index) == LOAD_ITEM:
            return  # the dialog decides (activated)
        self._previous = index
        self.model_changed.emit(self.checkpoint() or "")
