"""Per-viewer state of the human-in-the-loop cycle, shared by the Segment and Fine-tune docks.

:meth:`LoopState.for_viewer` returns the one :class:`LoopState` of a viewer (held in a
``WeakKeyDictionary`` keyed by the viewer, so it dies with it). The docks publish into it and
listen to it instead of knowing each other:

- the session panel calls :meth:`LoopState.set_session` when a session is created or opened
  (signal ``session_changed(object)``: the ``Session`` or None);
- the session panel / correction tools call :meth:`LoopState.publish_reviewed` after reviewed or
  edited slices were saved (signal ``reviewed(str, list)``: image id, slice indices);
- the Fine-tune dock calls :meth:`LoopState.add_version` when the trainer published a version
  (signal ``version_added(str)``);
- the correction tools call :meth:`LoopState.set_labels_layer` with the labels layer they correct
  (signal ``labels_layer_changed(object)``), and the predict panel calls
  :meth:`LoopState.announce_prediction` after writing a prediction (signal
  ``labels_predicted(object)``: the labels layer): the correction tools switch to it, and the
  Fine-tune dock starts from the model that made it;
- the Segment and Fine-tune docks (and the session panel) call :meth:`LoopState.watch_window`
  with their top-level window: when it closes (or the application quits) :meth:`shutdown` emits
  ``closing`` once (the session panel flushes its autosave, the trainer client stops the
  trainer, panels cancel their work), cancels every background job and waits for the workers;
- whoever switches models calls :meth:`LoopState.set_active_version`
  (signal ``active_version_changed(str)``); ``auto_switch`` (signal ``auto_switch_changed(bool)``)
  says whether the Segment widget follows the newest version (saved in the session's settings as
  ``auto_switch_version``).

It is the one owner of the open session (``session``: nothing else keeps a copy), of the loaded
models (``models``, a :class:`~napari_unet._widgets.model_cache.ModelCache`) and of the
background jobs (``jobs``, :class:`~napari_unet._widgets._workers.Jobs`).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from qtpy.QtCore import QEvent, QObject, QThreadPool, Signal

from napari_unet._widgets._workers import Jobs
from napari_unet._widgets.model_cache import ModelCache

logger = logging.getLogger(__name__)

AUTO_SWITCH_SETTING = "auto_switch_version"

_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class LoopState(QObject):
    """The open session, the active model version and the review stream of one viewer.

    Signals:
        session_changed(object): a session was created/opened (the ``Session``) or closed (None).
        session_leaving(object): the open session is about to be replaced (the old ``Session``):
            save what is pending into it now.
        version_added(str): a new model version id was registered in the session.
        active_version_changed(str): the version the Segment widget predicts with.
        reviewed(str, list): slices of an image were reviewed/edited and saved
            (image id, sorted slice indices).
        auto_switch_changed(bool): the "follow the newest version" setting changed.
        labels_layer_changed(object): the correction tools now work on this labels layer (or None).
        labels_predicted(object): a prediction was just written into this labels layer.
        closing(): the viewer's window is closing (once): flush, stop, cancel.
    """

    session_changed = Signal(object)
    session_leaving = Signal(object)
    version_added = Signal(str)
    active_version_changed = Signal(str)
    reviewed = Signal(str, list)
    auto_switch_changed = Signal(bool)
    labels_layer_changed = Signal(object)
    labels_predicted = Signal(object)
    closing = Signal()
    #: How long :meth:`shutdown` waits for background workers to end.
    close_wait_ms = 10_000

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session: Any = None
        #: The labels layer the correction tools work on (None: none).
        self.labels_layer: Any = None
        self.active_version: str | None = None
        self._auto_switch = True
        self.models = ModelCache()
        self.jobs = Jobs(self)
        self._windows: set[int] = set()  # ids only: a reference would keep the viewer alive
        self._closed = False
        self._quit_hooked = False
        self._hook_quit()

    @classmethod
    def for_viewer(cls, viewer: Any) -> LoopState:
        """The one state object of ``viewer`` (created on first use, dies with the viewer)."""
        state = _STATES.get(viewer)
        if state is None:
            state = cls()
            _STATES[viewer] = state
        return state

    # ------------------------------------------------------------------ session
    def set_session(self, session: Any) -> None:
        """Publish the open session (None: closed); reads its ``auto_switch_version`` setting."""
        if self.session is not None and session is not self.session:
            self.session_leaving.emit(self.session)
        self.session = session
        self.active_version = None
        if session is not None:
            try:
                value = session.settings.get(AUTO_SWITCH_SETTING)
            except Exception as err:  # a damaged settings entry must not block opening
                logger.warning("cannot read session settings: %s", err)
                value = None
            if value is not None:
                self._auto_switch = bool(value)
        self.session_changed.emit(session)

    # ------------------------------------------------------------------ shutdown
    def watch_window(self, window: Any) -> None:
        """Shut down when ``window`` (a top-level ``QWidget``: napari's main window) closes.

        Public Qt API only: the docks pass ``self.window()`` once napari has docked them. The
        application quitting shuts down too. Anything but a ``QMainWindow`` (a floating dock,
        whose close button only hides it) is ignored.
        """
        from qtpy.QtWidgets import QMainWindow

        if not isinstance(window, QMainWindow) or id(window) in self._windows:
            return
        self._hook_quit()
        self._windows.add(id(window))
        window.installEventFilter(self)

    def _hook_quit(self) -> None:
        """Shut down when the application quits (once the QApplication exists)."""
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None and not self._quit_hooked:
            app.aboutToQuit.connect(self.shutdown)
            self._quit_hooked = True

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt API
        """A watched window closing shuts the loop down."""
        if event.type() == QEvent.Type.Close and id(obj) in self._windows:
            self.shutdown()
        return False

    def shutdown(self) -> None:
        """Emit ``closing`` (once), cancel every job and wait (bounded) for the workers."""
        if self._closed:
            return
        self._closed = True
        self.closing.emit()
        self.jobs.cancel_all()
        QThreadPool.globalInstance().waitForDone(self.close_wait_ms)

    # ------------------------------------------------------------------ labels in use
    def set_labels_layer(self, layer: Any) -> None:
        """The labels layer being corrected (emits ``labels_layer_changed`` when it changed)."""
        if layer is self.labels_layer:
            return
        self.labels_layer = layer
        self.labels_layer_changed.emit(layer)

    def announce_prediction(self, layer: Any) -> None:
        """A prediction was just written into ``layer`` (emits ``labels_predicted``)."""
        self.labels_predicted.emit(layer)

    # ------------------------------------------------------------------ versions
    def add_version(self, version_id: str) -> None:
        """Announce a new version (emits ``version_added``; Segment may switch to it)."""
        self.version_added.emit(str(version_id))

    def set_active_version(self, version_id: str | None) -> None:
        """The version now used for prediction (emits when it changed)."""
        if version_id == self.active_version:
            return
        self.active_version = version_id
        self.active_version_changed.emit("" if version_id is None else str(version_id))

    @property
    def auto_switch(self) -> bool:
        """Whether the Segment widget switches to each new version automatically."""
        return self._auto_switch

    @auto_switch.setter
    def auto_switch(self, value: bool) -> None:
        self.set_auto_switch(value)

    def set_auto_switch(self, value: bool) -> None:
        """Set ``auto_switch`` (saved in the open session's settings)."""
        value = bool(value)
        if value == self._auto_switch:
            return
        self._auto_switch = value
        if self.session is not None and not getattr(self.session, "readonly", False):
            try:
                self.session.update_settings(**{AUTO_SWITCH_SETTING: value})
            except Exception as err:  # the setting is a convenience: never fail on it
                logger.warning("cannot save the auto-switch setting: %s", err)
        self.auto_switch_changed.emit(value)

    # ------------------------------------------------------------------ corrections
    def publish_reviewed(self, image_id: str, slices: Any) -> None:
        """Announce that ``slices`` of ``image_id`` were reviewed/edited and saved."""
        slices = sorted({int(s) for s in slices})
        if slices:
            self.reviewed.emit(str(image_id), slices)


__all__ = ["AUTO_SWITCH_SETTING", "LoopState"]
