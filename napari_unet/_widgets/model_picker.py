"""The model chooser: built-in checkpoints, the session's model versions, recent files, "Load…".

Session versions (newest first) come from :meth:`ModelPicker.set_versions` or, refreshed each
time the list opens, from a ``version_source`` callable (the hot-swap controller sets it), so a
version renamed or deleted in the versions list never lingers here.

Recent files are remembered in ``recent.json`` under the user config folder
(``$NAPARI_UNET_CONFIG_DIR``, else ``~/.config/napari-unet-loop`` or the platform's equivalent),
written atomically; a missing or damaged file is an empty list.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QWidget

from napari_unet.core.atomic import atomic_write_text

logger = logging.getLogger(__name__)

MAX_RECENT = 8
LOAD_ITEM = "__load__"
_TOOLTIP = Qt.ItemDataRole.ToolTipRole
#: Item role holding a session version's id (the item's data is its checkpoint path).
VERSION_ROLE = Qt.ItemDataRole.UserRole + 1
#: A session version as listed: (version id, label, absolute checkpoint path).
VersionItem = tuple[str, str, str]


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
    from napari_unet.core.checkpoint.format import builtin_checkpoints

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
        self._versions: list[VersionItem] = []
        #: Called by :meth:`populate` for the current session versions (None: keep the last set).
        self.version_source: Callable[[], list[VersionItem]] | None = None
        self.populate()
        self.activated.connect(self._on_activated)
        self.currentIndexChanged.connect(self._on_index)

    def populate(self, select: str | None = None, *, announce: bool = True) -> None:
        """Refill the list; select ``select`` (a path) or keep the current choice.

        ``model_changed`` is emitted afterwards (with ``announce=False`` only if the choice
        changed).
        """
        before = self.checkpoint()
        current = select or before
        self.blockSignals(True)
        self.clear()
        for name, path in builtin_models().items():
            self.addItem(f"{name} (built-in)", str(path))
            self.setItemData(self.count() - 1, str(path), _TOOLTIP)
        builtin_count = self.count()
        if self.version_source is not None:
            try:
                self._versions = list(self.version_source())
            except Exception as err:  # a session being rewritten must not break the list
                logger.warning("could not list the session's versions: %s", err)
        if builtin_count and self._versions:
            self.insertSeparator(self.count())
        for version_id, label, path in self._versions:
            self.addItem(label, path)
            self.setItemData(self.count() - 1, f"{version_id}: {path}", _TOOLTIP)
            self.setItemData(self.count() - 1, version_id, VERSION_ROLE)
        recent = [
            p for p in load_recent() if p not in {self.itemData(i) for i in range(self.count())}
        ]
        if self.count() and recent:
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
        if announce or self.checkpoint() != before:
            self.model_changed.emit(self.checkpoint() or "")

    def checkpoint(self) -> str | None:
        """The chosen checkpoint path, or None."""
        data = self.currentData()
        return data if isinstance(data, str) and data and data != LOAD_ITEM else None

    def version_id(self) -> str | None:
        """The chosen session version's id, or None when the choice is not a session version."""
        value = self.itemData(self.currentIndex(), VERSION_ROLE)
        return str(value) if value else None

    def set_versions(self, versions: list[VersionItem], select: str | None = None) -> None:
        """List the session's ``versions`` (newest first); select the version id ``select``."""
        self._versions = list(versions)
        source, self.version_source = self.version_source, None
        try:
            path = next((p for v, _, p in self._versions if v == select), None)
            self.populate(select=path)
        finally:
            self.version_source = source

    def select_version(self, version_id: str) -> bool:
        """Select a listed session version (emits ``model_changed``); False when not listed."""
        for index in range(self.count()):
            if self.itemData(index, VERSION_ROLE) == version_id:
                self.setCurrentIndex(index)
                return True
        return False

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        """Refresh the session versions before the list opens."""
        if self.version_source is not None:
            self.populate(announce=False)
        super().showPopup()

    def add_checkpoint(self, path: str | os.PathLike) -> None:
        """Remember ``path`` as a recent model and select it."""
        self.populate(select=remember(path)[0])

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) != LOAD_ITEM:
            return
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Load a U-Net checkpoint",
            str(Path.home()),
            "Models: checkpoints, bioimage.io packages (*.pt *.pth *.zip);;All (*)",
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
