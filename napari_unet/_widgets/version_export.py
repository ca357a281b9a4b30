"""Exporting a model version as a bioimage.io package (the versions panel's "Export…" as .zip).

:class:`BioimageioExporter` writes the package in a worker (tracing and saving a large U-Net
takes seconds), with the slice on screen as the test input when its channels fit the model and
the version's lineage (it, its parent, the parent's parent ... as recorded in the session).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.repredict import current_image_slice
from napari_unet.core.errors import UserInputError

logger = logging.getLogger(__name__)


def version_lineage(session: Any, version_id: str) -> list[dict]:
    """The version and its ancestors in the session, newest first, as plain dicts.

    The chain ends at a parent that is not a session version (a built-in name or a file).
    """
    known = {entry.id: entry for entry in session.versions()}
    chain, seen = [], set()
    current: str | None = version_id
    while current in known and current not in seen:
        seen.add(current)
        entry = dataclasses.asdict(known[current])
        chain.append(entry)
        current = entry.get("parent")
    return chain


def export_job(checkpoint: str, target: str, sample: Any, lineage: list[dict], name: str) -> str:
    """Load ``checkpoint`` and write its package at ``target`` (runs in a worker thread)."""
    from napari_unet.core.checkpoint.bioimageio_export import (
        BioimageioExportConfig,
        export_bioimageio,
    )
    from napari_unet.core.checkpoint.format import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    if sample is not None and sample.shape[0] != loaded.info.in_channels:
        sample = None  # the image on screen does not fit this model: a synthetic sample instead
    config = BioimageioExportConfig(name=name)
    return str(export_bioimageio(loaded, target, sample=sample, lineage=lineage, config=config))


class BioimageioExporter(QObject):
    """Runs one export at a time.

    Signals:
        done(str): the written package's path.
        failed(str): the sentence to show.
    """

    done = Signal(str)
    failed = Signal(str)

    def __init__(self, viewer: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop = LoopState.for_viewer(viewer)
        self._key = (id(self), "export")

    @property
    def worker(self) -> Any:
        """The running export's worker, or None."""
        return self.loop.jobs.worker(self._key)

    def _sample(self) -> np.ndarray | None:
        """The slice on screen as (C, Y, X), or None (no image, unknown axes)."""
        from napari_unet.core.io.lazy import stack_slices

        try:
            image, axes, _, current = current_image_slice(self.viewer, then="then export.")
            data = image.data[0] if getattr(image, "multiscale", False) else image.data
            return stack_slices(data, axes, [current])[0]
        except (UserInputError, ValueError, IndexError) as err:  # a sample is a nicety
            logger.info("no sample from the screen for the export (%s); a synthetic one", err)
            return None

    def start(self, session: Any, version_id: str, target: str | Path) -> None:
        """Export ``version_id`` of ``session`` to ``target`` (``.zip`` added when missing)."""
        if self.worker is not None:
            raise UserInputError("An export is already running; wait for it to finish.")
        entry = session.version(version_id)
        checkpoint = str(session.version_path(version_id))
        lineage = version_lineage(session, version_id)
        self.loop.jobs.start(
            self._key,
            export_job, checkpoint, str(target), self._sample(), lineage, entry.name,
            what="The bioimage.io export",
            on_done=self.done.emit,
            on_error=self.failed.emit,
        )  # fmt: skip
