"""Delete, export and compare of the versions panel (moved out of ``versions_panel``): a mixin
of :class:`~napari_unet._widgets.versions_panel.VersionsPanel`, which provides ``_one``,
``_session``, ``selected_ids``, ``refresh``, ``info``, ``loop``, ``exporter`` and ``comparer``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QMessageBox

from napari_unet.core.atomic import atomic_write_with
from napari_unet.core.errors import UserInputError

logger = logging.getLogger(__name__)

CHECKPOINT_FILTER = "Checkpoint for napari-unet-loop (*.pt)"
PACKAGE_FILTER = "bioimage.io model package (*.zip)"


class VersionActions:
    """The versions panel's actions on one or two selected versions."""

    def _ask_delete(self) -> None:
        version_id = self._one()
        entry = self._session().version(version_id)
        answer = QMessageBox.question(
            self,
            "Delete version",
            f"Delete {entry.name} ({version_id}) and its checkpoint file? This cannot be undone.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_version(version_id)

    def delete_version(self, version_id: str) -> None:
        """Delete a version; the active one is first replaced by the newest other version."""
        session = self._session()
        session.version(version_id)
        if version_id == self.loop.active_version:
            others = [v.id for v in reversed(session.versions()) if v.id != version_id]
            self.loop.set_active_version(others[0] if others else None)
        session.delete_version(version_id)
        self.refresh()
        self.info.setText(f"Deleted {version_id}.")

    def _ask_export(self) -> None:
        version_id = self._one()
        entry = self._session().version(version_id)
        suggested = str(Path.home() / f"{entry.name.replace(' ', '-')}.pt")
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export a model version", suggested, f"{CHECKPOINT_FILTER};;{PACKAGE_FILTER}"
        )
        if not path:
            return
        if chosen == PACKAGE_FILTER or path.lower().endswith(".zip"):
            self.export_bioimageio(version_id, str(Path(path).with_suffix(".zip")))
        else:
            self.export_version(version_id, path)

    def export_bioimageio(self, version_id: str, path: str | Path) -> None:
        """Write a version as a bioimage.io package in a worker (``exporter.done`` when written).

        The slice on screen is the package's test input when its channels fit the model; the
        version's lineage in this session goes into the package's README and config.
        """
        self.exporter.start(self._session(), version_id, path)
        self.info.setText(f"Exporting {version_id} as a bioimage.io package…")

    def _on_exported(self, path: str) -> None:
        self.info.setText(f"Exported the bioimage.io package {path}.")

    def export_version(self, version_id: str, path: str | Path) -> Path:
        """Copy a version's checkpoint to ``path`` (atomically: never a half-written file)."""
        source = self._session().version_path(version_id)
        target = Path(path).expanduser()
        try:
            with open(source, "rb") as handle:
                atomic_write_with(target, lambda out: shutil.copyfileobj(handle, out))
        except OSError as err:
            raise UserInputError(
                f"Could not write {target} ({err.strerror or err}); choose another folder."
            ) from None
        self.info.setText(f"Exported {version_id} to {target}.")
        return target

    def compare_selected(self) -> None:
        """Compare the two selected versions (older first), or the selected one with the active."""
        ids = self.selected_ids()[::-1]
        if len(ids) == 1 and self.loop.active_version and ids[0] != self.loop.active_version:
            ids = [self.loop.active_version, ids[0]]
        if len(ids) != 2:
            raise UserInputError(
                "Select two versions to compare (or one, to compare it with the active version)."
            )
        self.compare(ids[0], ids[1])

    def compare(self, first: str, second: str) -> None:
        """Predict the current slice with both versions (worker) into two labels layers."""
        session = self._session()
        entries = [session.version(first), session.version(second)]
        paths = [str(session.version_path(v)) for v in (first, second)]
        self.info.setText(f"Comparing {first} and {second} on the current slice…")
        self.comparer.start(entries, paths)
