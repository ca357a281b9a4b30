"""The predict panel of the "U-Net Segment" dock widget.

Pick an image layer, a model, a device, the output and the scope, press Run: a worker thread
(:func:`~napari_unet._widgets.predict_worker.run_prediction`) loads the model, predicts tile by
tile and makes labels, yielding progress; layers change only here, on the main thread, when it
returns. Re-running updates the same tagged labels layer around the user's work: the pixels and
objects the user edited and the reviewed regions are kept (one undoable step of the layer's
history) unless "Overwrite corrected slices" is ticked. With a session open, the model
list also offers its fine-tuned versions, and "Follow the newest model version" (:mod:`hot_swap`)
switches to each new one and refreshes the unreviewed slices in the background.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_unet._widgets import layers as L
from napari_unet._widgets import predict_job as J
from napari_unet._widgets._workers import error_message
from napari_unet._widgets.hot_swap import HotSwap
from napari_unet._widgets.image_list import ImageList
from napari_unet._widgets.label_writes import (
    MergeInput,
    MergePlan,
    merge_source,
    predict_and_merge,
)
from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.measurements import MeasureButtons
from napari_unet._widgets.model_choice import propose_for
from napari_unet._widgets.output import OutputTarget, OutputWriter
from napari_unet._widgets.predict_form import PredictForm
from napari_unet._widgets.predict_worker import (
    JobProgress,
    JobResult,
    PostprocessChoice,
    PredictJob,
)
from napari_unet._widgets.progress_view import MessageLine, ProgressView
from napari_unet.core.errors import AxesError, UserInputError

if TYPE_CHECKING:
    import napari

    from napari_unet.core.inference.config import PredictConfig

logger = logging.getLogger(__name__)

RUN_SHORTCUT = "Ctrl+Return"
RUN_HINT = "Ctrl+Enter"


class SegmentPanel(QWidget):
    """Predict with a U-Net into an editable Labels layer, without freezing napari.

    Args:
        viewer: the napari viewer.
        parent: the Qt parent.
    """

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.form = PredictForm()
        self.writer = OutputWriter(viewer)
        self.run_button = QPushButton(f"Run ({RUN_HINT})")
        self.run_button.setToolTip(f"Predict with the chosen model ({RUN_HINT})")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current batch of tiles; nothing is written")
        self.cancel_button.setEnabled(False)
        self.progress = ProgressView()
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.message = MessageLine()
        self.loop = LoopState.for_viewer(viewer)
        self._run_key = (id(self), "run")
        self._info_key = (id(self), "model info")
        #: Where the running (or last) prediction writes, and how it ended.
        self._target: OutputTarget | None = None
        self._merge_source: MergeInput | None = None  # copies the worker merges around
        self._outcome: str | None = None
        self.num_threads: int | None = None  # torch threads in the worker (None: cores - 1)
        #: The user picked a model in the list: images no longer propose theirs.
        self.model_by_hand = False
        self._proposed_for: Any = None
        self.images = ImageList(viewer, self.form.image)
        self._build()
        self._connect()
        self.hot_swap = HotSwap(self, parent=self)
        self.layout().insertWidget(2, self.hot_swap.follow)
        self._on_image_changed()
        self._on_model_changed(self.form.model.checkpoint() or "")

    def _build(self) -> None:
        title = QLabel("<b>Predict</b>")
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(6)
        layout.addWidget(title)
        layout.addWidget(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.message)
        layout.addWidget(MeasureButtons(self.viewer, self.image_layer))
        order = [*self.form.focus_chain(), self.run_button, self.cancel_button]
        for first, second in itertools.pairwise([*order, self.form.advanced_toggle]):
            QWidget.setTabOrder(first, second)

    def _connect(self) -> None:
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        shortcut = QShortcut(QKeySequence(RUN_SHORTCUT), self)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(self.run)
        self.images.changed.connect(self._on_image_changed)
        self.form.model.model_changed.connect(self._on_model_changed)
        self.form.model.activated.connect(self._on_model_activated)

    # ----------------------------------------------------------------- layer list and axes
    def refresh_images(self, *_: Any) -> None:
        """Refill the image list from the viewer's layers."""
        self.images.refresh()

    def image_layer(self) -> Any:
        """The chosen layer (checked before use), or None."""
        return self.images.layer()

    # ----------------------------------------------------------------- PredictionTarget
    @property
    def picker(self) -> Any:
        """The model picker."""
        return self.form.model

    def chosen_axes(self) -> str | None:
        """The axes chosen by hand, or None."""
        return self.form.chosen_axes()

    def predict_settings(self) -> PredictConfig:
        """The ``PredictConfig`` chosen in the form."""
        return self.form.predict_settings()

    def postprocess_settings(self) -> PostprocessChoice:
        """The post-processing chosen in the form (over the model's stored defaults)."""
        return self.form.postprocess_settings()

    def _on_image_changed(self, *_: Any) -> None:
        self.clear_message()
        layer = self.image_layer()
        choices: tuple[str, ...] = ()
        if layer is not None and L.n_values(layer):
            try:
                L.layer_axes(layer)
            except AxesError:
                choices = L.axes_choices(np.ndim(layer.data))
                if choices:
                    self.show_message(
                        f"The axes of '{layer.name}' (shape {tuple(np.shape(layer.data))}) "
                        "cannot be told from its shape: choose them in the Axes list.",
                        source="axes",
                    )
        self.form.show_axes(choices)
        if layer is not None and layer is not self._proposed_for:
            self._proposed_for = layer
            self.propose_model(layer)

    def _on_model_activated(self, *_: Any) -> None:
        self.model_by_hand = True

    def propose_model(self, layer: Any) -> str | None:
        """Pick the built-in model that fits ``layer`` and say why; returns its name.

        Nothing changes once the user picked a model by hand, or while a session version or a
        checkpoint file is chosen.
        """
        choice, changed = propose_for(self.form.model, layer, by_hand=self.model_by_hand)
        if choice is None:
            return None
        if changed or self.status.text() == "Ready.":  # never hide the result of a run
            self.status.setText(
                f"Model {choice.name} chosen for '{layer.name}' ({choice.reason}); pick another "
                "in the Model list if it does not fit."
            )
        logger.info("proposed %s for %s: %s", choice.name, layer.name, choice.reason)
        return choice.name

    # ----------------------------------------------------------------- model defaults
    @property
    def worker(self) -> Any:
        """The running prediction's worker, or None."""
        return self.loop.jobs.worker(self._run_key)

    def _on_model_changed(self, path: str) -> None:
        if not path:
            return
        self.loop.jobs.start(
            self._info_key,
            J.model_info,
            path,
            what="Reading the model",
            on_done=self._on_model_info,
            on_error=lambda text: self._report(text, source="model"),
        )

    def _on_model_info(self, result: tuple[str, Any, list[str]]) -> None:
        path, info, devices = result
        if path != self.form.model.checkpoint():
            return  # an answer about a model chosen before the current one
        self.form.set_devices(devices)
        if isinstance(info, UserInputError):
            self._on_error(info, source="model")
            return
        self.form.set_model_defaults(
            task=info.task,
            tile_shape=info.tile_shape,
            overlap=info.overlap,
            postprocess=info.postprocess_config(),
        )
        self.clear_message("model")

    def show_message(self, text: str, source: str = "run") -> None:
        """Show ``text`` in the red message line (``source``: run, axes or model)."""
        self.message.show_text(text, source)

    def clear_message(self, source: str | None = None) -> None:
        """Hide the message line (only if it came from ``source``, when given)."""
        self.message.clear_text(source)

    def show_status(self, text: str) -> None:
        """Show ``text`` in the status line."""
        self.status.setText(text)

    def _on_error(self, error: BaseException, source: str = "run") -> None:
        self._report(error_message(error, "Prediction"), source)

    def _report(self, text: str, source: str = "run") -> None:
        from napari.utils.notifications import show_error

        self.show_message(text, source=source)
        if source == "run":
            self.status.setText("Stopped by an error; the layers were left as they were.")
        show_error(text)

    # ----------------------------------------------------------------- run
    def run(self) -> None:
        """Start a prediction with the current choices (no-op while one runs)."""
        if self.worker is not None:
            return
        self.clear_message()
        try:
            job = self._make_job()
        except UserInputError as err:
            self._on_error(err)
            return
        if job is not None:
            self._start(job)

    def _make_job(self) -> PredictJob | None:
        layer = self.image_layer()
        J.check_image(layer)
        checkpoint = self.form.model.checkpoint()
        if not checkpoint:
            raise UserInputError("No model chosen: pick a built-in model or Load… a checkpoint.")
        axes = J.resolve_axes(layer, bool(self.form.axes.count()), self.form.chosen_axes())
        plan = J.plan_run(
            self.viewer,
            layer,
            axes,
            scope=self.form.scope_key(),
            overwrite=self.form.overwrite.isChecked(),
            writer=self.writer,
        )
        J.check_new_layers_fit(
            self.viewer,
            layer.name,
            plan.layout,
            labels=self.writer.labels_layer(layer.name, plan.layout) is None,
            instances=self.form.postprocess_settings().output == "instances",
            probabilities=self.form.probabilities.isChecked(),
        )
        self._target = OutputTarget(
            image=layer.name,
            layout=plan.layout,
            model=checkpoint,
            skipped=tuple(plan.skipped),
            overwrite=self.form.overwrite.isChecked(),
        )
        if not plan.todo:
            self.status.setText(J.skipped_text(plan.skipped, nothing_done=True))
            return None
        self._merge_source = merge_source(
            self.writer.labels_layer(layer.name, plan.layout),
            plan.layout,
            plan.todo,
            plan.region,
            overwrite=self._target.overwrite,
        )
        return PredictJob(
            checkpoint=checkpoint,
            image=J.job_image(layer, axes, plan),
            axes="SCYX",
            slices=tuple(plan.todo),
            region=plan.region,
            predict=self.form.predict_settings(),
            postprocess=self.form.postprocess_settings(),
            probabilities=self.form.probabilities.isChecked(),
            loaded=self.loop.models.get(checkpoint),
            num_threads=self.num_threads,
        )

    def _start(self, job: PredictJob) -> None:
        self.progress.begin("U-Net prediction")
        self._outcome = None
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("Starting…")
        self.loop.jobs.start(
            self._run_key,
            predict_and_merge,
            job,
            self._merge_source,
            what="Prediction",
            on_yield=self._on_yielded,
            on_done=self._on_returned,
            on_error=self._on_failed,
            on_abort=self._on_aborted,
            on_end=self._on_finished,
            torch_threads=job.num_threads,
        )

    def cancel(self) -> None:
        """Ask the worker to stop at the next batch of tiles; nothing will be written."""
        if self.worker is not None:
            self.status.setText("Cancelling…")
            self.loop.jobs.quit(self._run_key)

    def _on_yielded(self, step: JobProgress) -> None:
        if self.worker is None or self._outcome is not None:
            return  # a queued step arriving after the end must not overwrite the final status
        self.status.setText(step.text())
        self.progress.step(step)  # last: napari's progress may process events (even our end)

    def _on_returned(self, out: tuple[JobResult, MergePlan | None]) -> None:
        self._outcome = "done"
        target = self._target
        if target is None:  # no job was started: nothing to write
            return
        result, plan = out
        self.loop.models.put(target.model, "cpu", result.loaded)
        try:
            kept = self.writer.write(target, result, plan)
        except UserInputError as err:
            self._on_error(err)
            return
        except MemoryError:
            self._on_error(
                UserInputError(
                    f"Not enough memory for the output layers of '{target.image}'; "
                    "nothing was written. Close other layers, or predict it with the command "
                    "line, which streams a volume slice by slice."
                )
            )
            return
        labels = L.find_plugin_layer(self.viewer, role="labels", image_layer=target.image)
        if labels is not None:  # the correction tools and the Fine-tune dock follow it
            self.loop.announce_prediction(labels)
        done = ", ".join(str(s) for s in result.slices)
        where = " (visible region)" if result.region is not None else ""
        text = f"Predicted slice(s) {done}{where} in {result.seconds:.1f} s."
        if kept:
            text += " " + J.kept_text(kept)
        if target.skipped:
            text += " " + J.skipped_text(list(target.skipped))
        self.status.setText(text)

    def _on_failed(self, text: str) -> None:
        self._outcome = "error"
        self._report(text)

    def _on_aborted(self) -> None:
        self._outcome = "cancelled"

    def _on_finished(self) -> None:
        if self._outcome in (None, "cancelled"):
            self.status.setText("Cancelled: the labels were left as they were.")
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.end(done=self._outcome == "done")

    def shutdown(self) -> None:
        """Stop a running prediction and background re-prediction (the window is closing)."""
        self.cancel()
        self.hot_swap.repredictor.cancel()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """Stop a running prediction (and background re-prediction) when the widget closes."""
        self.shutdown()
        super().closeEvent(event)
