"""How the session panel links an image layer to the session (split off ``session_panel.py``).

:func:`image_axes` reads the axes of the image a labels layer belongs to; :func:`store_image` adds
that image to the session: a reference to its file when it has one, else a copy of its pixels.
A pyramid (napari ``MultiScaleData``, in memory or lazy) is stored as its full-resolution level
(:func:`~napari_unet.core.io.lazy.full_resolution`): ``np.asarray`` of a pyramid gives napari's
lowest level, which the labels do not fit. :func:`restore_labels` brings an entry of an opened
session back into the viewer; :class:`ReportingAutosave` tells which slices a save wrote.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Signal

from napari_unet._widgets import layers as L
from napari_unet._widgets import reviewed as rv
from napari_unet._widgets.autosave import Autosave
from napari_unet._widgets.predict_job import check_output_memory
from napari_unet._widgets.session_files import image_source, restore_image, stored_labels
from napari_unet.core.io.axes import StackLayout
from napari_unet.core.io.lazy import full_resolution

if TYPE_CHECKING:
    from napari_unet.session import Session

__all__ = ["ReportingAutosave", "image_axes", "restore_labels", "store_image"]

logger = logging.getLogger(__name__)

_STACK_LETTERS = {3: "ZYX", 4: "TZYX", 5: "STZYX"}


class ReportingAutosave(Autosave):
    """:class:`Autosave` that also says which slices each successful save wrote.

    Signals:
        slices_saved(str, list): image id and sorted slice indices of a completed save.
    """

    slices_saved = Signal(str, list)

    def _on_finished(self, job: Any) -> None:
        saved = {}
        if not job.handled and job.error is None:
            saved = {w.image_id: sorted(updates) for w, (updates, _) in job.batch.items()}
        super()._on_finished(job)
        for image_id, slices in saved.items():
            if slices:
                self.slices_saved.emit(image_id, slices)


def image_axes(image: Any, labels: Any) -> str:
    """Axes of the image layer ``image`` that ``labels`` belongs to.

    Raises:
        AxesError: they cannot be told, and the image's shape differs from the labels'.
    """
    from napari_unet.core.errors import AxesError

    try:
        return L.layer_axes(image)
    except AxesError:
        if tuple(full_resolution(image.data).shape) != tuple(labels.data.shape):
            raise
        return _STACK_LETTERS.get(labels.ndim, "YX")


def store_image(session: Session, image: Any, axes: str, task: str) -> str:
    """Add the image layer ``image`` to ``session`` (its file, else its pixels); returns its id.

    A lazy image without a file is read whole for the copy, after
    :func:`~napari_unet._widgets.predict_job.check_output_memory` said it fits.
    """
    from napari_unet.session.errors import SessionError

    pixels = full_resolution(image.data)  # level 0 of a pyramid, the array itself otherwise
    in_memory = isinstance(pixels, np.ndarray)
    source = image_source(image)
    if source is not None:
        try:
            return session.add_image(
                image.name, axes=axes, source=source, image=pixels if in_memory else None, task=task
            )
        except SessionError as err:
            logger.info("storing a copy of %s: %s", image.name, err)
    if not in_memory:  # no file to reference: the session stores a copy, read whole
        layout = StackLayout(axes=axes, shape=tuple(pixels.shape))
        per_pixel = np.dtype(pixels.dtype).itemsize * layout.n_channels
        check_output_memory(image.name, layout, per_pixel)
    return session.add_image(image.name, axes=axes, image=np.asarray(pixels), task=task)


def restore_labels(viewer: Any, session: Session, autosave: Autosave, entry: Any) -> Any:
    """Restore the image of session entry ``entry`` and its labels layer; returns the layer.

    The labels (with snapshot and reviewed mask) go into the plugin's labels layer of that
    image when one of the same shape exists, else into a new one; ``autosave`` then watches it.
    """
    image = restore_image(viewer, entry)
    volume, tag = stored_labels(session, entry, image.name)
    tag["session_image_id"] = entry.id
    labels = L.find_plugin_layer(viewer, role="labels", image_layer=image.name)
    if labels is not None and tuple(labels.data.shape) == tuple(volume.shape):
        autosave.unwatch(labels)
        rv.plugin_meta(labels).update(tag)
        labels.data = volume
    else:
        labels = viewer.add_labels(
            volume,
            name=f"{image.name} labels",
            metadata={L.TAG: tag},
            **L.spatial_transform(image, entry.axes),
        )
    if tag["reviewed"].any():
        rv.ensure_overlay(viewer, labels)
    viewer.layers.selection.active = labels
    autosave.watch(labels, entry.id, saved_now=True)
    return labels
