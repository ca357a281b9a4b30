"""Background re-prediction of the slices nobody corrected yet, with a new model version.

When a version becomes active (a new one with "follow newest version" on, or a rollback), the
:class:`Repredictor` refreshes every plugin labels layer whose image is open: first the slice the
user is looking at (of the image chosen in the predict panel), then the other slices that hold
an untouched prediction, then the other images — one worker at a time (``loop.jobs``), with
the predict panel's job and writer, seen through a ``PredictionTarget``. Huge slices (more
than :data:`HUGE_PIXELS`) refresh only the visible region of the current slice. A 3-D version
refreshes an image's slices in one run, in 3-D with their Z context (``volume_run``).

Corrections are never overwritten: each result is merged around the user's work as it is when
the result arrives (:func:`~napari_unet._widgets.label_writes.write_prediction`: edited pixels,
the objects they touch and reviewed regions are kept; the user may have edited meanwhile), as
one undoable step. Slices reviewed in full (in the layer, or in the session's statuses) are left
out. A newer version cancels the running re-prediction. While a
trainer process runs, the worker uses one torch thread, so training keeps the cores.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from napari_unet._widgets import layers as L
from napari_unet._widgets import volume_run as V
from napari_unet._widgets._workers import training_running
from napari_unet._widgets.label_writes import MergePlan, merge_source, predict_and_merge
from napari_unet._widgets.logic.refresh import refresh_runs, session_protected
from napari_unet._widgets.loop_state import LoopState
from napari_unet._widgets.output import OutputTarget
from napari_unet._widgets.predict_worker import JobResult, PredictJob
from napari_unet._widgets.prediction_target import PredictionTarget
from napari_unet.core.errors import AxesError, UserInputError
from napari_unet.core.io.axes import StackLayout

logger = logging.getLogger(__name__)

#: Slices with more pixels than this refresh only their visible region.
HUGE_PIXELS = 4096 * 4096
#: ``napari_unet_source`` of the metadata events announcing re-predicted slices.
SOURCE = "repredict"


def image_axes(layer: Any, fallback: str | None = None) -> str | None:
    """The axes of an image layer, or ``fallback`` when they cannot be told from its shape."""
    try:
        return L.layer_axes(layer)
    except AxesError:
        return fallback


def current_image_layer(viewer: Any, preferred: Any = None) -> Any:
    """The image the user works on: ``preferred``, the active layer's image, else the first one."""
    from napari.layers import Image

    if isinstance(preferred, Image) and preferred in viewer.layers:
        return preferred
    active = viewer.layers.selection.active
    tag = L.plugin_tag(active) if active is not None else None
    if tag and tag.get("image_layer") in viewer.layers:
        return viewer.layers[tag["image_layer"]]
    if isinstance(active, Image) and tag is None:
        return active
    for layer in viewer.layers:
        if isinstance(layer, Image) and L.plugin_tag(layer) is None:
            return layer
    return None


def current_image_slice(viewer: Any, *, then: str) -> tuple[Any, str, Any, int]:
    """The image being worked on, its axes, its stack layout and the slice on screen.

    Args:
        viewer: the napari viewer.
        then: how the "predict it once" message ends, e.g. ``"then compare."``.

    Raises:
        UserInputError: no image layer, or its axes cannot be told from its shape.
    """
    image = current_image_layer(viewer)
    if image is None:
        raise UserInputError("No image layer: open an image and predict it first.")
    axes = image_axes(image)
    if axes is None:
        raise UserInputError(
            f"The axes of '{image.name}' are not known: predict it once in the Segment widget "
            f"(choosing its axes), {then}"
        )
    return image, axes, L.layout_of(image, axes), L.current_slice(viewer, image, axes)


@dataclasses.dataclass(frozen=True)
class _Task:
    """One planned worker run: some slices (or a region of one) of one image."""

    image: str
    axes: str
    layout: StackLayout
    slices: tuple[int, ...]
    region: tuple[slice, slice] | None
    probabilities: bool


class Repredictor(QObject):
    """Refreshes predictions around the user's work with a model, one worker at a time.

    Args:
        target: the predict panel (its settings give tiling, device and post-processing; its
            writer writes the results).
        parent: the Qt parent.

    Signals:
        started(str): a re-prediction with this version id started.
        finished(str, list): it ended (version id, ``[(image name, slice), ...]`` refreshed).
    """

    started = Signal(str)
    finished = Signal(str, list)

    def __init__(self, target: PredictionTarget, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.target = target
        self.viewer = target.viewer
        self.loop = LoopState.for_viewer(target.viewer)
        self._key = (id(self), "repredict")
        self._queue: list[_Task] = []
        self._checkpoint = ""
        self._version = ""
        self._dims, self._context = 2, 0  # of the version being refreshed
        self._done: list[tuple[str, int]] = []

    @property
    def session(self) -> Any:
        """The open session (its statuses protect corrected slices)."""
        return self.loop.session

    @property
    def worker(self) -> Any:
        """The running worker, or None."""
        return self.loop.jobs.worker(self._key)

    @property
    def running(self) -> bool:
        """A re-prediction is queued or running."""
        return self.worker is not None or bool(self._queue)

    def cancel(self) -> None:
        """Drop what is queued and stop the running worker (nothing more is written)."""
        self._queue = []
        self.loop.jobs.cancel(self._key)

    def start(self, checkpoint: str, version_id: str = "") -> int:
        """Re-predict every unprotected slice with ``checkpoint``; returns the number of runs."""
        self.cancel()
        self._checkpoint, self._version, self._done = str(checkpoint), str(version_id), []
        self._dims = V.checkpoint_dims(self._checkpoint)  # 3: volumes refreshed in 3-D
        self._context = V.checkpoint_context(self._checkpoint)  # 2.5-D: Z neighbours
        self._queue = self.plan()
        if not self._queue:
            self.finished.emit(self._version, [])
            return 0
        self.started.emit(self._version)
        self._next()
        return len(self._queue) + 1

    # ------------------------------------------------------------------ planning
    def plan(self) -> list[_Task]:
        """The runs to do, the current image's current slice first."""
        chosen = current_image_layer(self.viewer, self.target.image_layer())
        targets = [
            la for la in self.viewer.layers if (L.plugin_tag(la) or {}).get("role") == "labels"
        ]
        targets.sort(
            key=lambda la: L.plugin_tag(la).get("image_layer") != getattr(chosen, "name", None)
        )
        tasks: list[_Task] = []
        for labels in targets:
            tasks += self._plan_image(labels, chosen)
        return tasks

    def _plan_image(self, labels: Any, chosen: Any) -> list[_Task]:
        from napari.layers import Image

        tag = L.plugin_tag(labels)
        name = tag.get("image_layer")
        image = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        if not isinstance(image, Image):
            return []
        fallback = self.target.chosen_axes() if image is chosen else None
        axes = image_axes(image, fallback)
        if axes is None:
            return []
        layout = L.layout_of(image, axes)
        if tuple(labels.data.shape) != tuple(layout.spatial_shape):
            return []
        current = L.current_slice(self.viewer, image, axes)
        probabilities = L.find_plugin_layer(self.viewer, role="probabilities", image_layer=name)
        candidates = sorted({current, *tag.get("predicted", [])})
        protected = self._protected(labels, layout, candidates)
        huge = int(np.prod(layout.yx_shape)) > HUGE_PIXELS
        runs = refresh_runs(current, candidates, protected, huge=huge)
        if self._dims == 3:  # one 3-D run: the written slices and their Z context together
            runs = [tuple(s for s in candidates if s not in protected)][: 1 if runs else 0]
        region = L.visible_region(self.viewer, image, axes) if huge and runs else None
        has_probabilities = probabilities is not None
        return [_Task(name, axes, layout, run, region, has_probabilities) for run in runs]

    def _protected(self, labels: Any, layout: StackLayout, slices: list[int]) -> set[int]:
        image_id = (L.plugin_tag(labels) or {}).get("session_image_id")
        return set(L.fully_reviewed(labels, layout, slices)) | session_protected(
            self.session, image_id
        )

    # ------------------------------------------------------------------ running
    def _next(self) -> None:
        while self._queue:
            task = self._queue.pop(0)
            try:
                job = self._job(task)
            except (UserInputError, KeyError) as err:  # the layer went away or changed
                logger.info("re-prediction of %s skipped: %s", task.image, err)
                continue
            labels = L.find_plugin_layer(self.viewer, role="labels", image_layer=task.image)
            volume = job.volume is not None
            source = merge_source(labels, task.layout, task.slices, task.region, volume=volume)
            self.loop.jobs.start(
                self._key,
                predict_and_merge,
                job,
                source,
                what="Re-prediction with the new version",
                on_done=lambda out, t=task: self._on_returned(t, *out),
                on_error=self._on_error,
                on_end=self._next,
                torch_threads=job.num_threads,
            )
            return
        self.finished.emit(self._version, list(self._done))

    def _job(self, task: _Task) -> PredictJob:
        image = self.viewer.layers[task.image]
        labels = L.find_plugin_layer(self.viewer, role="labels", image_layer=task.image)
        if labels is None:
            raise KeyError(task.image)
        post = self.target.postprocess_settings().replace(
            output=L.plugin_tag(labels).get("output") or "semantic"
        )
        threads = 1 if training_running() else self.target.num_threads
        volume = V.refresh_job(image, task.layout, task.slices) if self._dims == 3 else None
        return PredictJob(
            checkpoint=self._checkpoint,
            image=V.refresh_image(image.data, task.axes, volume, task.slices, self._context),
            axes="ZCYX" if volume else "SCYX",
            slices=task.slices,
            region=task.region,
            predict=self.target.predict_settings(),
            postprocess=post,
            probabilities=task.probabilities,
            loaded=self.loop.models.get(self._checkpoint),
            num_threads=threads,
            volume=volume,
        )

    def _on_returned(self, task: _Task, result: JobResult, plan: MergePlan | None) -> None:
        self.loop.models.put(self._checkpoint, "cpu", result.loaded)
        labels = L.find_plugin_layer(self.viewer, role="labels", image_layer=task.image)
        if labels is None or task.image not in self.viewer.layers:
            return
        now_protected = self._protected(labels, task.layout, list(result.slices))
        keep = [i for i, s in enumerate(result.slices) if s not in now_protected]
        if not keep:
            return
        if len(keep) < len(result.slices):
            plan = None  # merged again on the slices still to write
        result = dataclasses.replace(
            result,
            labels=result.labels[keep],
            probabilities=None if result.probabilities is None else result.probabilities[keep],
            slices=tuple(result.slices[i] for i in keep),
        )
        target = OutputTarget(image=task.image, layout=task.layout, model=self._checkpoint)
        try:
            self.target.writer.write(target, result, plan)
        except UserInputError as err:
            logger.info("re-prediction of %s not written: %s", task.image, err)
            return
        labels = L.find_plugin_layer(self.viewer, role="labels", image_layer=task.image)
        # the autosave saves these slices; the correction clock ignores it (not an edit)
        labels.events.metadata(napari_unet_slices=tuple(result.slices), napari_unet_source=SOURCE)
        self._done += [(task.image, s) for s in result.slices]

    def _on_error(self, text: str) -> None:
        logger.warning("background re-prediction failed: %s", text)
        self._queue = []
        self.target.show_message(text, "run")
