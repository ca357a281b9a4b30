"""Hot swap: the predict panel follows the session's model versions.

:class:`HotSwap` ties the predict panel to the viewer's
:class:`~napari_unet._widgets.loop_state.LoopState`:

- the model picker lists the session's versions (after the built-ins), refreshed whenever the
  session changes, a version is added, or the list opens;
- opening a session with versions selects the newest when "Follow the newest version" is ticked
  (without re-predicting: the user presses Run);
- a new version (``version_added``) becomes the active version when "Follow the newest version"
  is ticked (``LoopState.auto_switch``, saved in the session);
- whenever the active version changes (a new version, or a rollback from the versions list) the
  picker selects it and the :class:`~napari_unet._widgets.repredict.Repredictor` refreshes the
  unreviewed slices in the background (cancelling a re-prediction with an older version);
- choosing a session version in the picker by hand makes it active without re-predicting (the
  user presses Run).
"""

from __future__ import annotations

import logging
from typing import Any

from qtpy.QtCore import QObject
from qtpy.QtWidgets import QCheckBox

from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.prediction_target import PredictionTarget
from napari_unet._widgets.repredict import Repredictor

logger = logging.getLogger(__name__)


def version_items(session: Any) -> list[tuple[str, str, str]]:
    """``(id, label, checkpoint path)`` of the session's versions, newest first."""
    if session is None:
        return []
    items = []
    for entry in reversed(session.versions()):
        try:
            path = str(session.version_path(entry.id))
        except Exception as err:  # a version whose file left models/: not offered
            logger.warning("version %s is not usable: %s", entry.id, err)
            continue
        items.append((entry.id, f"{entry.name} ({entry.id})", path))
    return items


class HotSwap(QObject):
    """Keeps the predict panel's model in step with the session's active version.

    Args:
        target: the predict panel (its model picker, status line, writer and settings).
        parent: the Qt parent.

    Attributes:
        follow: the "Follow the newest version" check box (add it to a layout).
        repredictor: the background re-prediction.
    """

    def __init__(self, target: PredictionTarget, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.target = target
        self.loop = LoopState.for_viewer(target.viewer)
        self.repredictor = Repredictor(target, self)
        self.follow = QCheckBox("Follow the newest model version")
        self.follow.setToolTip(
            "Switch to each new fine-tuned version as soon as it is published and re-predict "
            "the slices you have not corrected (your corrections are never overwritten)"
        )
        self.follow.setChecked(self.loop.auto_switch)
        self._picking = False
        picker = target.picker
        picker.version_source = lambda: version_items(self.loop.session)
        self.follow.toggled.connect(self.loop.set_auto_switch)
        self.loop.auto_switch_changed.connect(self._on_auto_switch)
        self.loop.session_changed.connect(self._on_session_changed)
        self.loop.version_added.connect(self._on_version_added)
        self.loop.active_version_changed.connect(self._on_active_version)
        self.repredictor.started.connect(
            lambda v: target.show_status(f"Refreshing around your corrections with {v}…")
        )
        self.repredictor.finished.connect(self._on_repredicted)
        picker.model_changed.connect(self._on_picked)
        if self.loop.session is not None:
            picker.populate(announce=False)

    def _on_auto_switch(self, value: bool) -> None:
        if self.follow.isChecked() != value:
            self.follow.blockSignals(True)
            self.follow.setChecked(value)
            self.follow.blockSignals(False)

    def _on_session_changed(self, session: Any) -> None:
        self.repredictor.cancel()
        self._on_auto_switch(self.loop.auto_switch)
        picker = self.target.picker
        picker.populate(announce=False)
        try:
            newest = version_items(session)
        except Exception as err:  # a damaged index must not block opening the session
            logger.warning("cannot list the session's versions: %s", err)
            newest = []
        if newest and self.loop.auto_switch:  # "follow the newest": show it, predict with it
            picker.select_version(newest[0][0])  # made active without re-predicting

    def _on_version_added(self, version_id: str) -> None:
        self.target.picker.populate(announce=False)
        if self.loop.auto_switch:
            self.loop.set_active_version(version_id)

    def _on_active_version(self, version_id: str) -> None:
        if not version_id or self._picking:
            return
        session = self.loop.session
        if session is None:
            return
        try:
            path = str(session.version_path(version_id))
        except Exception as err:
            self.target.show_message(f"Model version {version_id} cannot be used: {err}", "model")
            return
        picker = self.target.picker
        self._picking = True
        try:
            if not picker.select_version(version_id):
                picker.populate(announce=False)
                picker.select_version(version_id)
        finally:
            self._picking = False
        self.repredictor.start(path, version_id)

    def _on_picked(self, path: str) -> None:
        if self._picking:
            return
        version_id = self.target.picker.version_id()
        if version_id == (self.loop.active_version or None):
            return
        self._picking = True
        try:
            self.loop.set_active_version(version_id)
        finally:
            self._picking = False

    def _on_repredicted(self, version_id: str, done: list) -> None:
        if done:
            slices = len(done)
            self.target.show_status(
                f"Refreshed {slices} slice(s) with {version_id}; your edits and reviewed "
                "regions kept (Ctrl+Z on the labels layer takes the refresh back)."
            )
        elif version_id:
            self.target.show_status(f"Now using {version_id}; nothing needed refreshing.")
