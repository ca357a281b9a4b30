"""Run, cancel and the end of a prediction: the run half of the predict panel.

A mixin of :class:`~napari_unet._widgets.segment_panel.SegmentPanel` (moved out of it, same
behaviour): it uses the panel's ``viewer``, ``form``, ``writer``, ``loop``, buttons, ``progress``
and ``status``. A run covers the slices of the chosen scope (minus wholly reviewed ones); its
worker predicts and then merges the labels around the user's work on copies
(:func:`~napari_unet._widgets.label_writes.predict_and_merge`), and the main thread writes the
result as one undoable step when it returns.
"""

from __future__ import annotations

import logging

from napari_unet._widgets import layers as L
from napari_unet._widgets import predict_job as J
from napari_unet._widgets import volume_run as V
from napari_unet._widgets.label_writes import (
    MergePlan,
    merge_source,
    predict_and_merge,
)
from napari_unet._widgets.output import OutputTarget
from napari_unet._widgets.predict_worker import JobProgress, JobResult, PredictJob
from napari_unet.core.errors import UserInputError

logger = logging.getLogger(__name__)


class RunActions:
    """Run / Cancel of the predict panel and the callbacks of its worker (a mixin)."""

    #: checkpoint -> the 2.5-D neighbour slices of its model (replaced, never mutated, when the
    #: panel reads a model's info); 0 for a model not read yet or without context.
    model_context: dict[str, int] = {}  # noqa: RUF012

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
        if self._spatial_dims(checkpoint) == 3:
            return self._volume_job(layer, axes, plan, checkpoint)
        self._merge_source = merge_source(
            self.writer.labels_layer(layer.name, plan.layout),
            plan.layout,
            plan.todo,
            plan.region,
            overwrite=self._target.overwrite,
        )
        return PredictJob(
            checkpoint=checkpoint,
            image=J.job_image(layer, axes, plan, self.model_context.get(checkpoint, 0)),
            axes="SCYX",
            slices=tuple(plan.todo),
            region=plan.region,
            predict=self.form.predict_settings(),
            postprocess=self.form.postprocess_settings(),
            probabilities=self.form.probabilities.isChecked(),
            loaded=self.loop.models.get(checkpoint),
            num_threads=self.num_threads,
        )

    def _spatial_dims(self, checkpoint: str) -> int:
        """2 or 3 for the chosen model (read now if its info has not arrived yet)."""
        if checkpoint not in self.model_dims:
            self.model_dims[checkpoint] = V.checkpoint_dims(checkpoint)
        return self.model_dims[checkpoint]

    def _volume_job(self, layer: object, axes: str, plan: J.Plan, checkpoint: str) -> PredictJob:
        """A 3-D model's job: the volume (or a slab around the displayed slice) in 3-D."""
        import dataclasses

        V.check_volume_image(plan.layout, layer.name, self.form.model.currentText())
        scope = self.form.scope_key()
        read, write = V.volume_slices(plan.layout.stack_shape[0], scope, plan.todo)
        if scope == "stack":  # merged as one block: reviewed pixels are kept in every slice
            self._target = dataclasses.replace(self._target, skipped=())
        self._merge_source = merge_source(
            self.writer.labels_layer(layer.name, plan.layout),
            plan.layout,
            write,
            plan.region,
            overwrite=self._target.overwrite,
            volume=True,
        )
        return PredictJob(
            checkpoint=checkpoint,
            image=J.job_image(layer, axes, dataclasses.replace(plan, todo=read)),
            axes="ZCYX",
            slices=tuple(write),
            region=plan.region,
            predict=self.form.predict_settings(),
            postprocess=self.form.postprocess_settings(),
            probabilities=self.form.probabilities.isChecked(),
            loaded=self.loop.models.get(checkpoint),
            num_threads=self.num_threads,
            volume=V.VolumeJob(tuple(read), tuple(write), spacing=V.layer_spacing(layer)),
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
        where = " (visible region)" if result.region is not None else ""
        text = f"Predicted {slice_list(result.slices)}{where} in {result.seconds:.1f} s."
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


def slice_list(slices: list[int]) -> str:
    """``slice 3``, ``slices 0, 4, 7``, or ``slices 0-50 (51)`` for a run of more than 3."""
    slices = sorted(int(s) for s in slices)
    if len(slices) == 1:
        return f"slice {slices[0]}"
    if len(slices) > 3 and slices[-1] - slices[0] == len(slices) - 1:
        return f"slices {slices[0]}-{slices[-1]} ({len(slices)})"
    return "slices " + ", ".join(str(s) for s in slices)
