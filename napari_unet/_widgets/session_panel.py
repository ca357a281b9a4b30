"""Session panel of the "U-Net Segment" dock widget: create, open, autosave status.

"Create session" is one click: the folder goes next to the image file, or for an image without
a file under the user's data folder named after the layer
(:func:`napari_unet.session.paths.default_session_folder`). "Open session…" restores every image,
its labels (with the prediction snapshot and the reviewed mask) and the reviewed overlay. Every
edit is then saved by :class:`~napari_unet._widgets.autosave.Autosave` a moment after the last
brush stroke; the panel shows when the last save happened, or a red line when it failed, and
how much disk the session takes (measured in a thread when it opens, after saves and new
versions). Linking an image layer and restoring a session's layers:
:mod:`napari_unet._widgets.session_images`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets import reviewed as rv
from napari_unet._widgets._workers import guard
from napari_unet._widgets.disk_use import DiskUseLabel
from napari_unet._widgets.logic.layer_choice import image_of, labels_to_link
from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.pending_stores import PendingStores
from napari_unet._widgets.session_files import ago, free_folder, image_source
from napari_unet._widgets.session_images import (
    ReportingAutosave,
    image_axes,
    restore_labels,
    store_image,
)
from napari_unet.core.errors import UserInputError
from napari_unet.session.paths import default_session_folder

if TYPE_CHECKING:
    import napari

    from napari_unet.session import Session

logger = logging.getLogger(__name__)


class SessionPanel(QWidget):
    """Create or open a session; autosave of every linked labels layer."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop_state = LoopState.for_viewer(viewer)
        self.autosave = ReportingAutosave(viewer, self)
        self._restoring = False

        self.path_label = QLabel("No session: corrections are not saved.", wordWrap=True)
        self.state_label = QLabel("", wordWrap=True)
        self.disk_label = DiskUseLabel(self.loop_state.jobs)
        self.create_button = QPushButton(
            "Create session",
            toolTip="Save corrections next to the "
            "image file (or in your data folder) automatically",
        )
        self.open_button = QPushButton("Open session…", toolTip="Restore a saved session")
        self.add_button = QPushButton(
            "Add image", toolTip="Add the image of the current labels layer to the open session"
        )
        box = QGroupBox("Session")
        column = QVBoxLayout(box)
        row = QHBoxLayout()
        for button in (self.create_button, self.open_button, self.add_button):
            row.addWidget(button)
        column.addLayout(row)
        column.addWidget(self.path_label)
        column.addWidget(self.state_label)
        column.addWidget(self.disk_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)
        self.add_button.setEnabled(False)

        self.create_button.clicked.connect(lambda: self._guard(self.create_session))
        self.open_button.clicked.connect(lambda: self._guard(self._ask_open))
        self.add_button.clicked.connect(lambda: self._guard(self.add_labels_layer))
        self.autosave.saved.connect(lambda _: self._show_state())
        self.autosave.saved.connect(lambda _: self.measure_disk())
        # a bound method, not a lambda: the viewer's loop state must not keep this panel alive
        self.loop_state.version_added.connect(self.measure_disk)
        self.autosave.failed.connect(self._on_failed)
        self.autosave.slices_saved.connect(self._publish_reviewed)
        self.autosave.busy.connect(lambda busy: busy and self.state_label.setText("saving…"))
        self._clock = QTimer(self, interval=1000)
        self._clock.timeout.connect(self._show_state)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.loop_state.session_changed.connect(self._on_session_changed)
        self.loop_state.closing.connect(self.flush)  # the viewer's one shutdown hook
        self._stores = PendingStores()  # stacks whose image a worker stores (flush waits)

    # ------------------------------------------------------------------ helpers
    def _guard(self, action: Any) -> Any:
        """Run a button action; a user-caused failure becomes a message, not a traceback."""
        return guard(action, self._error)

    def _error(self, text: str) -> None:
        from napari.utils.notifications import show_warning

        self.state_label.setStyleSheet("color: #e04040")
        self.state_label.setText(text)
        show_warning(text)

    def _on_failed(self, text: str) -> None:
        self._error(text)

    def _show_state(self) -> None:
        if self.session is None:
            return
        if self.autosave.error:
            return
        self.state_label.setStyleSheet("")
        last = self.autosave.last_saved
        self.state_label.setText(
            "not saved yet" if last is None else f"saved {ago(time.time() - last)}"
        )

    def target_labels(self) -> Any:
        """The labels layer to link: the one being corrected, else the active or a plugin one."""
        layers = self.viewer.layers
        return labels_to_link(layers, layers.selection.active, self.loop_state.labels_layer)

    def image_for(self, labels: Any) -> Any:
        """The image layer a labels layer belongs to (its tag, else the first of its shape)."""
        image = image_of(self.viewer.layers, labels)
        if image is None:
            raise UserInputError(
                f"No image layer found for the labels layer '{labels.name}'; add "
                "the image it belongs to, then try again."
            )
        return image

    # ------------------------------------------------------------------ create / add
    def create_session(self, folder: str | Path | None = None) -> Session:
        """Create a session for the current labels layer's image and start autosaving."""
        from napari_unet.session import Session

        labels = self.target_labels()
        if labels is None:
            raise UserInputError(
                "No labels layer to save: predict an image or add a Labels layer first."
            )
        image = self.image_for(labels)
        if folder is None:
            folder = free_folder(default_session_folder(image_source(image), image.name))
        self.flush()
        self._set_session(Session.create(folder))
        self.add_labels_layer(labels)
        return self.session

    def add_labels_layer(self, labels: Any = None, *, in_worker: bool = False) -> str | None:
        """Add the image of ``labels`` (default: the current one) to the session and link it;
        ``in_worker``: store it in a background job (a volume's copy takes a second), link the
        layer once stored (or at the next :meth:`flush`) and return None."""
        if self.session is None:
            raise UserInputError("No session is open: create or open one first.")
        labels = labels if labels is not None else self.target_labels()
        image = self.image_for(labels)
        axes = image_axes(image, labels)
        tag = rv.plugin_meta(labels, create=True)
        kind = rv.label_kind(labels)
        task = "instances" if kind == "instances" else tag.get("task") or "semantic"
        if not in_worker:
            return self._link(labels, store_image(self.session, image, axes, task))
        session, stores = self.session, self._stores
        self.loop_state.jobs.start(
            (id(labels), "store image"), stores.add(labels, session), store_image, session,
            image, axes, task, what="Adding the image to the session", on_error=self._error,
            on_done=lambda image_id: stores.forget(labels)
            and (self.session is session and self._link(labels, image_id)),
        )  # fmt: skip
        return None

    def _link(self, labels: Any, image_id: str) -> str:
        """Link ``labels`` to the session image ``image_id`` and autosave it from now on."""
        if labels in self.viewer.layers:  # not removed while its image was stored
            rv.plugin_meta(labels, create=True)["session_image_id"] = image_id
            rv.reviewed_mask(labels)
            self.autosave.watch(labels, image_id)
        return image_id

    # ------------------------------------------------------------------ open
    def _ask_open(self) -> Session | None:
        folder = QFileDialog.getExistingDirectory(self, "Open a napari-unet session")
        return self.open_session(folder) if folder else None

    def open_session(self, folder: str | Path) -> Session:
        """Open a session and restore its images, labels, snapshots and reviewed masks."""
        from napari_unet.session import Session

        self.flush()
        session = Session.open(folder)
        self._set_session(session)
        problems = list(session.problems)
        self._restoring = True
        try:
            for entry in session.images():
                try:
                    self._restore(entry)
                except UserInputError as err:  # e.g. a moved image file: restore the others
                    problems.append(str(err))
        finally:
            self._restoring = False
        for problem in problems:
            self._error(problem)
        return session

    def _restore(self, entry: Any) -> Any:
        return restore_labels(self.viewer, self.session, self.autosave, entry)

    # ------------------------------------------------------------------ state
    def _set_session(self, session: Session) -> None:
        self.loop_state.set_session(session)  # the one owner; _on_session_changed follows

    @property
    def session(self) -> Session | None:
        """The open session (the viewer's :class:`LoopState` owns it)."""
        return self.loop_state.session

    def _on_session_changed(self, session: Session | None) -> None:
        for layer, _ in self.autosave.watched():
            self.autosave.unwatch(layer)  # linked to the previous session
        self.autosave.error = None
        self.autosave.last_saved = None
        self.add_button.setEnabled(session is not None)
        if session is None:
            self.path_label.setText("No session: corrections are not saved.")
            self._clock.stop()
        else:
            self.path_label.setText(f"Session: {session.root}")
            self._clock.start()
        self.loop_state.watch_window(self.window())
        self._show_state()
        self.measure_disk()

    def measure_disk(self, *_: Any) -> None:
        """Update "Session: … on disk" (measured in a thread)."""
        self.disk_label.measure(self.session)

    def _publish_reviewed(self, image_id: str, slices: list) -> None:
        """Tell the loop (keep-learning) which saved slices hold corrections."""
        if self.session is None:
            return
        try:
            statuses = self.session.statuses(image_id)
        except UserInputError as err:  # the image left the session meanwhile
            logger.debug("not publishing %s: %s", image_id, err)
            return
        annotated = [s for s in slices if 0 <= s < len(statuses)]
        annotated = [s for s in annotated if statuses[s] in ("edited", "reviewed")]
        if annotated:
            self.loop_state.publish_reviewed(image_id, annotated)

    def _on_layer_inserted(self, event: Any) -> None:
        """A new plugin labels layer (a first prediction) joins the open session."""
        layer = event.value
        if self.session is None or self._restoring or rv.role_of(layer) != "labels":
            return
        if not any(la is layer for la, _ in self.autosave.watched()):  # a stack: in a worker
            self._guard(lambda: self.add_labels_layer(layer, in_worker=layer.ndim > 2))

    def _on_layer_removed(self, event: Any) -> None:
        layer = event.value
        if any(la is layer for la, _ in self.autosave.watched()):
            self.flush()
            self.autosave.unwatch(layer)

    def flush(self) -> bool:
        """Save everything pending now (closing napari, switching sessions)."""
        if self.session is None:
            return True
        for labels, image_id in self._stores.finished(self.session):  # stored in a worker
            self.loop_state.jobs.cancel((id(labels), "store image"))  # linked here instead
            self._link(labels, image_id)
        ok = self.autosave.flush()
        self._show_state()
        return ok

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """Docked into the napari window: its closing flushes pending saves (the loop state)."""
        super().showEvent(event)
        self.loop_state.watch_window(self.window())
