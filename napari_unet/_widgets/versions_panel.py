"""The versions list of the Fine-tune dock: rename, roll back, delete, export, compare.

Lists the open session's model versions (newest first; the active one in bold) from the viewer's
:class:`~napari_unet._widgets.loop_state.LoopState`, refreshed when a version is added, the
session changes or the active version changes. "Use this version" makes the selected version
active: the predict panel switches to it and re-predicts the unreviewed slices (a rollback).
"Compare" predicts the current slice with two versions in a worker and shows both as Labels
layers (role ``compare``) with their stored validation metrics side by side, plus their score
against the slice's reviewed pixels when it has some (:mod:`version_compare`). A version's Score
tooltip says how it was judged against its parent and the post-processing chosen for it
(:func:`~napari_unet._widgets.version_compare.held_back_text`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets._workers import guard
from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.tables import fit_columns
from napari_unet._widgets.version_actions import (  # noqa: F401 - the filters stay importable here
    CHECKPOINT_FILTER,
    PACKAGE_FILTER,
    VersionActions,
)
from napari_unet._widgets.version_compare import (
    Comparer,
    data_text,
    held_back_text,
    primary_metric,
    time_text,
)
from napari_unet._widgets.version_export import BioimageioExporter
from napari_unet.core.errors import UserInputError

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

COLUMNS = ("Name", "Parent", "Steps", "Created", "Score", "Data")
_ID_ROLE = Qt.ItemDataRole.UserRole


class VersionsPanel(VersionActions, QWidget):
    """The session's model versions and what can be done with them.

    Args:
        viewer: the napari viewer (its :class:`LoopState` gives the session).
        parent: the Qt parent.
    """

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop = LoopState.for_viewer(viewer)
        self.comparer = Comparer(viewer, self)
        self.exporter = BioimageioExporter(viewer, self)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.table.verticalHeader().setVisible(False)
        # the name, parent and data columns share the width left and elide (tooltips have all)
        fit_columns(self.table, stretch=(0, 1, len(COLUMNS) - 1))
        self.table.setToolTip("Double-click a name to rename the version")
        self.use_button = QPushButton("Use this version")
        self.use_button.setToolTip(
            "Roll back (or forward): predict with the selected version and refresh the slices "
            "you have not corrected"
        )
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip(
            "Predict the current slice with two versions (the two selected, or the selected one "
            "and the active one) into two label layers"
        )
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip(
            "Save the selected version as a checkpoint file (.pt, for napari-unet-loop) or as a "
            "bioimage.io package (.zip, for bioimage.io, deepImageJ, ilastik, bioimageio.core)"
        )
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected version and its file")
        self.info = QLabel("", wordWrap=True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self._build()
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.use_button.clicked.connect(lambda: self._guard(self.use_selected))
        self.compare_button.clicked.connect(lambda: self._guard(self.compare_selected))
        self.export_button.clicked.connect(lambda: self._guard(self._ask_export))
        self.delete_button.clicked.connect(lambda: self._guard(self._ask_delete))
        self.comparer.done.connect(self.info.setText)
        self.comparer.failed.connect(self._error)
        self.exporter.done.connect(self._on_exported)
        self.exporter.failed.connect(self._error)
        # bound methods, not lambdas: the loop state lives as long as the viewer, and a lambda
        # capturing this panel would keep it (and the viewer) alive
        self.loop.session_changed.connect(self._on_loop_changed)
        self.loop.version_added.connect(self._on_loop_changed)
        self.loop.active_version_changed.connect(self._on_loop_changed)
        self.refresh()

    def _build(self) -> None:
        buttons = QHBoxLayout()
        for button in (self.use_button, self.compare_button, self.export_button):
            buttons.addWidget(button)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(QLabel("<b>Model versions</b>"))
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.info)

    # ------------------------------------------------------------------ helpers
    def _guard(self, action: Any) -> Any:
        return guard(action, self._error)

    def _error(self, text: str) -> None:
        from napari.utils.notifications import show_warning

        self.info.setText(f'<span style="color:#e04040">{text}</span>')
        show_warning(text)

    def _session(self) -> Any:
        if self.loop.session is None:
            raise UserInputError("No session is open: create or open one in the Segment widget.")
        return self.loop.session

    # ------------------------------------------------------------------ list
    def refresh(self) -> None:
        """Refill the table from the session (newest first)."""
        session = self.loop.session
        versions = list(reversed(session.versions())) if session is not None else []
        names = {v.id: v.name for v in versions}
        self.table.blockSignals(True)
        self.table.setRowCount(len(versions))
        for row, entry in enumerate(versions):
            score = primary_metric(entry.metrics)
            values = (
                entry.name,
                names.get(entry.parent, entry.parent if entry.parent else "—"),
                str(entry.steps),
                time_text(entry.created),
                "—" if score is None else f"{score:.3f}",
                data_text(entry.data),
            )
            for column, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                item.setData(_ID_ROLE, entry.id)
                if column:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                item.setToolTip(self._tooltip(entry, column, str(value)))
                font = item.font()
                font.setBold(entry.id == self.loop.active_version)
                item.setFont(font)
                self.table.setItem(row, column, item)
        self.table.blockSignals(False)
        if session is None:
            self.info.setText("No session: versions appear here once a model is fine-tuned.")
        elif not versions:
            self.info.setText("No version yet: fine-tune to make the first one.")
        else:
            active = next((v.name for v in versions if v.id == self.loop.active_version), None)
            self.info.setText(
                f"{len(versions)} version(s)"
                + (f" · in use: <b>{active}</b>" if active else "")
                + " · select two to compare them on the current view."
            )
        self._update_buttons()

    @staticmethod
    def _tooltip(entry: Any, column: int, value: str) -> str:
        """The Data column: its full text and the data line of the run that made it (patch,
        scale, channels, flipped intensities); Score: how the version was judged and the
        post-processing chosen for it; the others: the version's id and file."""
        if column == len(COLUMNS) - 1:
            line = (entry.data or {}).get("fingerprint") or ""
            return f"{value}\n{line[:1].upper()}{line[1:]}" if line else value
        judged = held_back_text(entry.metrics).strip()
        if column == COLUMNS.index("Score") and judged:
            return judged
        return f"{entry.id}: {entry.file}"

    def _on_loop_changed(self, *_: object) -> None:
        self.refresh()

    def version_ids(self) -> list[str]:
        """The listed version ids, in display order (newest first)."""
        return [self.table.item(r, 0).data(_ID_ROLE) for r in range(self.table.rowCount())]

    def selected_ids(self) -> list[str]:
        """Ids of the selected rows, in display order."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.table.item(r, 0).data(_ID_ROLE) for r in rows]

    def select(self, *version_ids: str) -> None:
        """Select the rows of ``version_ids`` (replacing the selection)."""
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row, version_id in enumerate(self.version_ids()):
            if version_id in version_ids:
                self.table.selectRow(row)
        self.table.setSelectionMode(mode)

    def _update_buttons(self) -> None:
        n = len(self.selected_ids())
        for button in (self.use_button, self.export_button, self.delete_button):
            button.setEnabled(n == 1)
        self.compare_button.setEnabled(n in (1, 2))

    def _one(self) -> str:
        ids = self.selected_ids()
        if len(ids) != 1:
            raise UserInputError("Select one version in the list first.")
        return ids[0]

    # ------------------------------------------------------------------ actions
    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 0:
            self._guard(lambda: self.rename_version(item.data(_ID_ROLE), item.text()))

    def rename_version(self, version_id: str, name: str) -> None:
        """Give a version a new display name (saved in the session)."""
        name = name.strip()
        if not name:
            self.refresh()
            raise UserInputError("A version needs a name: type one, or press Escape to cancel.")
        self._session().rename_version(version_id, name)
        self.refresh()

    def use_selected(self) -> str:
        """Make the selected version active (the predict panel re-predicts unreviewed slices)."""
        version_id = self._one()
        self.use_version(version_id)
        return version_id

    def use_version(self, version_id: str) -> None:
        """Make ``version_id`` active (a rollback when it is older than the current one)."""
        self._session().version(version_id)  # says so when it is gone
        if version_id == self.loop.active_version:
            self.loop.set_active_version(None)  # re-activating re-predicts again
        self.loop.set_active_version(version_id)
        self.info.setText(f"Using {version_id}; unreviewed slices are being refreshed.")

    def shutdown(self) -> None:
        """Stop a running comparison (the window is closing); a running export finishes."""
        self.comparer.cancel()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """Stop a running comparison when the panel closes."""
        self.shutdown()
        super().closeEvent(event)
