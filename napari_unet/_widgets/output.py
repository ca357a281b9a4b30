"""Writing a finished prediction into the viewer: one labels layer (and probability layer) per
image, created once and updated in place afterwards. Main thread only.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet._widgets import layers as L
from napari_unet._widgets.label_writes import write_prediction
from napari_unet._widgets.measurements import measure_after_prediction
from napari_unet._widgets.restored_output import write_restored
from napari_unet.core.errors import UserInputError

if TYPE_CHECKING:
    import napari

    from napari_unet._widgets.label_writes import MergePlan
    from napari_unet._widgets.predict_worker import JobResult
    from napari_unet.core.io.axes import StackLayout

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OutputTarget:
    """Where a prediction's result goes, fixed when the job starts.

    Attributes:
        image: the name of the image layer predicted (its output layers are found by tag).
        layout: the image's :class:`~napari_unet.core.io.axes.StackLayout` (``spatial_shape``
            of the labels layer, slice indexing).
        model: the checkpoint (name or path) written into the labels layer's tag.
        skipped: slices left alone (every pixel reviewed), for the status line.
        overwrite: replace the user's edited and reviewed pixels too.
    """

    image: str
    layout: StackLayout
    model: str
    skipped: tuple[int, ...] = ()
    overwrite: bool = False


class OutputWriter:
    """Finds, creates and updates the plugin's output layers of an image layer."""

    def __init__(self, viewer: napari.Viewer) -> None:
        self.viewer = viewer

    def labels_layer(self, image_name: str, layout: StackLayout) -> Any:
        """The tagged labels layer of ``image_name``, or None.

        Raises:
            UserInputError: it exists but no longer fits the image's shape.
        """
        layer = L.find_plugin_layer(self.viewer, role="labels", image_layer=image_name)
        if layer is not None and tuple(layer.data.shape) != tuple(layout.spatial_shape):
            raise UserInputError(
                f"The labels layer '{layer.name}' has shape {tuple(layer.data.shape)} but the "
                f"image '{image_name}' needs {tuple(layout.spatial_shape)}: rename or delete that "
                "layer, then run again."
            )
        return layer

    def write(self, target: OutputTarget, result: JobResult, plan: MergePlan | None = None) -> int:
        """Put ``result`` into the output layers of ``target.image`` (one redraw each).

        An existing labels layer gets the prediction around the user's work, as one undo step
        (:func:`~napari_unet._widgets.label_writes.write_prediction`; ``plan``: the worker's merge).

        Returns:
            How many pixels of the user's work (edited or reviewed) were kept.

        Raises:
            UserInputError: the image layer was removed or changed shape during the run.
        """
        name, layout = target.image, target.layout
        if name not in self.viewer.layers:
            raise UserInputError(
                f"The image layer '{name}' was removed while it was predicted; nothing was written."
            )
        image = self.viewer.layers[name]
        if result.restored is not None:  # a restoration model: an Image layer, no labels
            write_restored(
                self.viewer, image, layout, result.restored, list(result.slices), result.region
            )
            return
        layer = self.labels_layer(name, layout)
        slices = list(result.slices)
        if result.probabilities is not None:
            self._write_probabilities(image, layout, result, slices)
        if layer is None:
            data = np.zeros(layout.spatial_shape, dtype=result.labels.dtype)
            meta = L.labels_metadata(
                name,
                layout.spatial_shape,
                task=result.task,
                output=result.output,
                model=str(target.model),
                dtype=result.labels.dtype,
            )
            data = L.write_into(data, meta, layout, result.labels, slices, result.region)
            added = self.viewer.add_labels(
                data,
                name=f"{name} labels",
                metadata={L.TAG: meta},
                **L.spatial_transform(image, layout.axes),
            )
            measure_after_prediction(self.viewer, added, layout)
            return 0
        tag = L.plugin_tag(layer)
        tag.update(task=result.task, output=result.output, model=str(target.model))
        kept = write_prediction(
            layer,
            layout,
            result.labels,
            slices,
            result.region,
            overwrite=target.overwrite,
            plan=plan,
            volume=result.volume,
        )
        measure_after_prediction(self.viewer, layer, layout)
        return kept

    def _write_probabilities(
        self, image: Any, layout: StackLayout, result: JobResult, slices: list[int]
    ) -> None:
        layer = L.find_plugin_layer(self.viewer, role="probabilities", image_layer=image.name)
        if layer is not None and tuple(layer.data.shape) != tuple(layout.spatial_shape):
            layer = None  # a stale layer for another shape: leave it, make a new one
        if layer is None:
            data = np.zeros(layout.spatial_shape, dtype=np.float32)
            L.write_probabilities_into(data, layout, result.probabilities, slices, result.region)
            self.viewer.add_image(
                data,
                name=f"{image.name} probability",
                metadata={L.TAG: {"role": "probabilities", "image_layer": image.name}},
                colormap="magma",
                blending="additive",
                opacity=0.5,
                contrast_limits=(0.0, 1.0),
                **L.spatial_transform(image, layout.axes),
            )
            return
        L.write_probabilities_into(layer.data, layout, result.probabilities, slices, result.region)
        layer.refresh()
