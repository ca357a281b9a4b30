"""Turning the panel's choices into a :class:`PredictJob` (main thread, cheap, no torch).

Checks the inputs and says what to fix (:class:`UserInputError`), works out which slices a run
covers, and leaves out the slices holding the user's corrections unless overwriting is asked for.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet._widgets import layers as L
from napari_unet.core.errors import AxesError, UserInputError
from napari_unet.core.io.axes import StackLayout, check_axes, to_stack
from napari_unet.core.io.lazy import stack_slices

if TYPE_CHECKING:
    import napari

    from napari_unet._widgets.output import OutputWriter


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where a run writes: ``todo`` slices (flattened indices), ``skipped`` fully reviewed ones."""

    layout: StackLayout
    todo: list[int]
    skipped: list[int]
    region: tuple[slice, slice] | None


def model_info(path: str) -> tuple[str, Any, list[str]]:
    """(path, CheckpointInfo or the UserInputError saying why not, available devices).

    Run in a worker (it imports torch); errors are returned, not raised, so the answer can be
    matched to the model it is about.
    """
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.device import available_devices

    try:
        info = read_checkpoint_info(path)
    except UserInputError as err:
        info = err
    return path, info, available_devices()


def check_new_layers_fit(
    viewer: Any, name: str, layout: Any, *, labels: bool, instances: bool, probabilities: bool
) -> None:
    """Refuse (``check_output_memory``) when the layers a run would add do not fit in memory.

    Args:
        labels: a labels layer is added (labels, snapshot and reviewed mask: 2 or 4 bytes for
            the first two, 1 for the mask).
        instances: instance labels (4 bytes) rather than semantic ones (2).
        probabilities: a probability layer (4 bytes) is asked for; counted only when the
            image has none yet.
    """
    per_pixel = 2 * (2 if instances else 1) + 1 if labels else 0
    if (
        probabilities
        and L.find_plugin_layer(viewer, role="probabilities", image_layer=name) is None
    ):
        per_pixel += 4
    check_output_memory(name, layout, per_pixel)


def check_image(layer: Any) -> None:
    """Raise a :class:`UserInputError` unless ``layer`` is a non-empty napari Image layer."""
    from napari.layers import Image

    if layer is None:
        raise UserInputError("No image layer: open an image (File ▸ Open) and pick it above.")
    if not isinstance(layer, Image):
        kind = type(layer).__name__
        raise UserInputError(
            f"'{layer.name}' is a {kind} layer, not an image: choose an image layer to segment."
        )
    if L.n_values(layer) == 0:
        raise UserInputError(
            f"'{layer.name}' is empty (shape {tuple(np.shape(layer.data))}): choose a layer "
            "with pixels."
        )


def resolve_axes(layer: Any, offered: bool, chosen: str | None) -> str:
    """The axes to use: the user's choice when the axes list is ``offered``, else the layer's."""
    shape = tuple(np.shape(layer.data))
    if not offered:
        return L.layer_axes(layer)
    if not chosen:
        raise AxesError(
            f"The axes of '{layer.name}' (shape {shape}) are not known: choose them in the Axes "
            "list, then press Run again."
        )
    return check_axes(chosen, shape)


def plan_run(
    viewer: napari.Viewer,
    layer: Any,
    axes: str,
    *,
    scope: str,
    overwrite: bool,
    writer: OutputWriter,
) -> Plan:
    """The slices (and region) a run with ``scope`` covers, minus fully reviewed ones.

    Edited or partly reviewed slices are predicted: the writer keeps the user's pixels.
    """
    layout = L.layout_of(layer, axes)
    region = None
    if scope == "stack":
        slices = list(range(layout.n_slices))
    else:
        slices = [L.current_slice(viewer, layer, axes)]
        if scope == "region":
            region = L.visible_region(viewer, layer, axes)
    existing = writer.labels_layer(layer.name, layout)
    skipped = []
    if existing is not None and not overwrite:
        skipped = L.fully_reviewed(existing, layout, slices)
    todo = [s for s in slices if s not in skipped]
    return Plan(layout=layout, todo=todo, skipped=skipped, region=region)


#: Share of the free memory the new output layers of one run may take.
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of memory free for new data (psutil's ``available``), None when unknown."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - napari installs psutil
        return None
    return int(psutil.virtual_memory().available)


def check_output_memory(
    name: str, layout: StackLayout, bytes_per_pixel: int, *, available: int | None = None
) -> None:
    """Refuse an action whose new layers would not fit in memory, before it starts.

    New layers cover the whole volume whatever the scope: a Labels layer holds the labels, the
    prediction snapshot (same dtype) and the reviewed mask (1 byte) per pixel, a probability or
    uncertainty layer 4 bytes. Pass the bytes per pixel of the layers that do not exist yet.

    Raises:
        UserInputError: they need more than :data:`MEMORY_SHARE` of the ``available`` bytes
            (default: measured now); the message points at the streaming command line.
    """
    available = available_memory() if available is None else available
    pixels = float(np.prod(layout.spatial_shape, dtype=np.float64))
    needed = pixels * bytes_per_pixel
    if available is None or needed <= MEMORY_SHARE * available:
        return
    raise UserInputError(
        f"'{name}' has {pixels / 1e9:.1f} gigapixels: the layers this needs would take about "
        f"{needed / 1e9:.1f} GB of memory, but only {available / 1e9:.1f} GB are free. For a "
        "volume this size use the command line, which streams it slice by slice "
        "(napari-unet-loop predict IMAGE --model MODEL --out FOLDER), or open a crop of it."
    )


def job_image(layer: Any, axes: str, plan: Plan, context_slices: int = 0) -> np.ndarray:
    """The pixels of the planned slices as an ``(S, C, Y, X)`` view (all) or copy (some).

    A lazy layer (Zarr / dask) is read slice by slice: only the planned slices are loaded.
    A 2.5-D model (``context_slices`` r > 0) gets each slice with its Z neighbours as channels,
    ``(S, C * (2r + 1), Y, X)`` (:func:`~napari_unet.core.inference.context.neighbour_stack`).
    """
    if context_slices:
        from napari_unet.core.inference.context import neighbour_stack

        return neighbour_stack(layer.data, axes, plan.todo, context_slices)
    if not isinstance(layer.data, np.ndarray):
        return stack_slices(layer.data, axes, plan.todo)
    stack, _ = to_stack(layer.data, axes)
    if plan.todo == list(range(plan.layout.n_slices)):
        return stack
    return stack[plan.todo]


def skipped_text(skipped: list[int], nothing_done: bool = False) -> str:
    """The status sentence about slices left alone because every pixel is reviewed."""
    which = ", ".join(str(s) for s in skipped)
    text = (
        f"Kept your corrections: slice(s) {which} are reviewed; tick "
        "'Overwrite corrected slices' to replace them."
    )
    return ("Nothing to predict. " + text) if nothing_done else text


def kept_text(pixels: int) -> str:
    """The status sentence about the user's pixels a prediction left alone."""
    return (
        f"Kept your corrections ({pixels} pixel(s) you edited or reviewed); tick "
        "'Overwrite corrected slices' to replace them."
    )
