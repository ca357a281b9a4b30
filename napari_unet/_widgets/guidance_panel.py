"""Guidance and accounting panel of the Fine-tune dock.

- "Show uncertainty": an Image layer (role ``uncertainty``, inferno, half transparent) with the
  entropy of the active model's probabilities on the current slice — reusing the probability
  layer when the slice has one, else predicting in a worker — or the disagreement between the
  last two versions (:mod:`napari_unet.core.inference.uncertainty`).
- "Next region to review": the most uncertain 128² tile not yet reviewed, over the current
  slice and up to :data:`MAX_SLICES` unreviewed slices around it; the camera centres and zooms
  on it (and the stack moves to its slice), and a line says why.
- Accounting: per round, minutes correcting, pixels and objects edited and the validation gain
  of the version that closed it (``Session.rounds()``); the time is measured by
  :class:`~napari_unet._widgets.accounting.CorrectionClock`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets import layers as L
from napari_unet._widgets import volume_run as V
from napari_unet._widgets._workers import guard, training_running
from napari_unet._widgets.accounting import CorrectionClock, round_rows
from napari_unet._widgets.guidance_jump import (  # noqa: F401 - importable from here too
    MAX_SLICES,
    ROLE,
    TILE,
    RegionJumps,
    scene_camera,
)
from napari_unet._widgets.logic.guidance import models_to_measure, reusable_probability
from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.predict_job import check_output_memory
from napari_unet._widgets.repredict import current_image_slice
from napari_unet._widgets.tables import fit_columns
from napari_unet._widgets.version_jobs import SliceJob, SliceResult, run_slice_job
from napari_unet.core.inference.uncertainty import entropy
from napari_unet.core.io.lazy import stack_slices

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

MEASURES = (("entropy", "Entropy (active model)"), ("disagreement", "Last two versions disagree"))
ROUND_COLUMNS = ("Round", "Version", "Minutes", "Pixels", "Objects", "Gain")


class GuidancePanel(RegionJumps, QWidget):
    """Where to look next, and what the corrections bought.

    Args:
        viewer: the napari viewer (its :class:`LoopState` gives session and active version).
        parent: the Qt parent.
    """

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop = LoopState.for_viewer(viewer)
        self.clock = CorrectionClock(viewer, self)
        self._key = (id(self), "uncertainty")
        self.measure = QComboBox()
        for key, text in MEASURES:
            self.measure.addItem(text, key)
        self.measure.setToolTip("How uncertainty is measured")
        self.show_button = QPushButton("Show uncertainty")
        self.show_button.setToolTip("Add an uncertainty layer for the current slice")
        self.next_button = QPushButton("Next region to review")
        self.next_button.setToolTip("Jump to the most uncertain tile you have not reviewed yet")
        self.why = QLabel("", wordWrap=True)
        self.rounds = QTableWidget(0, len(ROUND_COLUMNS))
        self.rounds.setHorizontalHeaderLabels(ROUND_COLUMNS)
        self.rounds.verticalHeader().setVisible(False)
        self.rounds.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.rounds.setMaximumHeight(140)
        fit_columns(self.rounds, stretch=(1,))  # the version name elides; the numbers show whole
        self.time_label = QLabel("")
        self._build()
        self.show_button.clicked.connect(lambda: self._guard(self.show_uncertainty))
        self.next_button.clicked.connect(lambda: self._guard(self.next_region))
        self.loop.session_changed.connect(self._on_session)
        self.loop.version_added.connect(self._on_version_added)
        self.clock.changed.connect(
            lambda s: self.time_label.setText(f"Correcting for {s / 60:.1f} min this session.")
        )
        self.clock._timer.timeout.connect(self.refresh_rounds)
        self.refresh_rounds()

    def _build(self) -> None:
        row = QHBoxLayout()
        row.addWidget(self.measure, 1)
        row.addWidget(self.show_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(QLabel("<b>Guidance</b>"))
        layout.addLayout(row)
        layout.addWidget(self.next_button)
        layout.addWidget(self.why)
        layout.addWidget(QLabel("<b>What each round bought</b>"))
        layout.addWidget(self.rounds)
        layout.addWidget(self.time_label)

    def _guard(self, action: Any) -> Any:
        return guard(action, self._warn)

    def _warn(self, text: str) -> None:
        from napari.utils.notifications import show_warning

        self.why.setText(text)
        show_warning(text)

    # ------------------------------------------------------------------ accounting
    def _on_session(self, session: Any) -> None:
        self.refresh_rounds()

    def _on_version_added(self, *_: object) -> None:
        self.refresh_rounds()

    def refresh_rounds(self) -> None:
        """Refill the rounds table from the session (after saving the pending time)."""
        session = self.loop.session
        self.clock.flush()
        rows = round_rows(session.rounds(), session.versions()) if session is not None else []
        self.rounds.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(value)
                self.rounds.setItem(r, c, item)

    # ------------------------------------------------------------------ uncertainty
    def _target(self) -> tuple[Any, str, Any, int]:
        return current_image_slice(self.viewer, then="first.")

    def _checkpoints(self, measure: str, image_name: str) -> tuple[str, ...]:
        loop = self.loop
        return models_to_measure(
            self.viewer, loop.session, loop.active_version, measure, image_name
        )

    def _layer(self, image: Any, axes: str, layout: Any, key: tuple) -> Any:
        layer = L.find_plugin_layer(self.viewer, role=ROLE, image_layer=image.name)
        if layer is not None and tuple(layer.data.shape) == tuple(layout.spatial_shape):
            tag = L.plugin_tag(layer)
            if tuple(tag.get("key", ())) != key:
                tag.update(key=key, computed=[])
                layer.data[...] = 0
            return layer
        check_output_memory(image.name, layout, 4)  # float32 over the whole volume
        data = np.zeros(layout.spatial_shape, dtype=np.float32)
        return self.viewer.add_image(
            data,
            name=f"{image.name} uncertainty",
            metadata={L.TAG: {"role": ROLE, "image_layer": image.name, "key": key, "computed": []}},
            colormap="inferno",
            opacity=0.5,
            blending="additive",
            contrast_limits=(0.0, 1.0),
            **L.spatial_transform(image, axes),
        )

    def _reusable_probability(self, image: Any, layout: Any, s: int) -> np.ndarray | None:
        return reusable_probability(self.viewer, image.name, layout, s)

    def show_uncertainty(self, slices: list[int] | None = None, then: Any = None) -> None:
        """Compute the uncertainty of the current slice (or ``slices``) into its layer."""
        image, axes, layout, current = self._target()
        slices = [current] if slices is None else slices
        measure = str(self.measure.currentData())
        checkpoints = self._checkpoints(measure, image.name)
        layer = self._layer(image, axes, layout, (measure, *checkpoints))
        tag = L.plugin_tag(layer)
        todo = [s for s in slices if s not in tag["computed"]]
        if measure == "entropy":
            for s in list(todo):
                fg = self._reusable_probability(image, layout, s)
                if fg is not None:
                    self._store(layer, layout, [s], entropy(fg[None])[None])
                    todo.remove(s)
        if not todo:
            layer.refresh()
            self.why.setText("Uncertainty shown (bright = unsure).")
            if then is not None:
                then()
            return
        self._run(image, axes, layout, todo, measure, checkpoints, then)

    @property
    def worker(self) -> Any:
        """The running measurement's worker, or None."""
        return self.loop.jobs.worker(self._key)

    def _run(self, image, axes, layout, todo, measure, checkpoints, then) -> None:
        volume = V.measure_volume(layout, todo)  # Z context for a 3-D model
        job = SliceJob(
            checkpoints=checkpoints,
            image=stack_slices(image.data, axes, volume.read if volume else todo),
            slices=tuple(todo),
            volume=volume,
            measure=measure,
            loaded=self.loop.models.get_many(checkpoints),
            num_threads=1 if training_running() else None,
        )
        key = (measure, *checkpoints)
        self.why.setText(f"Measuring uncertainty on {len(todo)} slice(s)…")
        self.show_button.setEnabled(False)
        self.loop.jobs.start(
            self._key,
            run_slice_job,
            job,
            what="Measuring uncertainty",
            on_done=lambda result: self._on_returned(image.name, key, result, then),
            on_error=self._on_error,
            torch_threads=job.num_threads,
        )

    def _on_error(self, text: str) -> None:
        self.show_button.setEnabled(True)
        self._warn(text)

    def _on_returned(self, name: str, key: tuple, result: SliceResult, then) -> None:
        self.show_button.setEnabled(True)
        self.loop.models.put_many(result.loaded)
        if name not in self.viewer.layers:
            return
        image, axes, layout, _ = self._target()
        if image.name != name:
            return
        layer = self._layer(image, axes, layout, key)
        self._store(layer, layout, list(result.slices), result.uncertainty)
        layer.refresh()
        self.why.setText("Uncertainty shown (bright = unsure).")
        if then is not None:
            then()

    @staticmethod
    def _store(layer: Any, layout: Any, slices: list[int], maps: np.ndarray) -> None:
        tag = L.plugin_tag(layer)
        for s, plane in zip(slices, maps):
            layer.data[L.slice_index(layout, s)] = plane
        tag["computed"] = sorted(set(tag["computed"]) | set(slices))

    def shutdown(self) -> None:
        """Save the correction time and stop a running measurement (the window is closing)."""
        self.clock.flush()
        self.loop.jobs.cancel(self._key)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """Save the correction time and stop a running measurement."""
        self.shutdown()
        super().closeEvent(event)
