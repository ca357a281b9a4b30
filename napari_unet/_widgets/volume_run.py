"""A 3-D model in the Segment dock: which slices a run reads and writes, and its worker part.

A 3-D network (``spatial_dims == 3``) predicts a Z-stack as a volume, not slice by slice:

- scope *stack*: the whole volume ``(C, Z, Y, X)`` is predicted in 3-D tiles and labelled in 3-D
  (:func:`~napari_unet.core.postprocess.volume.volume_labels`: one id per object across Z);
- scope *slice* / *visible region*: a slab of :data:`SLAB_RADIUS` slices on each side of the
  displayed slice gives the network its Z context (the visible (Y, X) box only, for *region*),
  and only the displayed slice is written.

The merge around the user's work runs on the written slices as one (n, Y, X) block
(:func:`~napari_unet._widgets.label_writes.compute_merge` with ``volume=True``). Main-thread
helpers are cheap and torch-free; the worker part is
:func:`~napari_unet._widgets.predict_worker.predict_volume`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from napari_unet.core.errors import UserInputError
from napari_unet.core.io.axes import StackLayout

logger = logging.getLogger(__name__)

#: Slices read on each side of the displayed one when a 3-D model predicts one slice.
SLAB_RADIUS = 8


@dataclasses.dataclass(frozen=True)
class VolumeJob:
    """The 3-D part of a :class:`~napari_unet._widgets.predict_worker.PredictJob`.

    Attributes:
        read: the Z indices of the job's image (consecutive), e.g. a slab around one slice.
        write: the Z indices written (a subset of ``read``), in order.
        spacing: the voxel size ``(z, y, x)`` for the 3-D watershed.
    """

    read: tuple[int, ...]
    write: tuple[int, ...]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def offsets(self) -> list[int]:
        """Positions of ``write`` in the job's Z axis."""
        return [z - self.read[0] for z in self.write]


def check_volume_image(layout: StackLayout, name: str, model: str) -> None:
    """Refuse, in one sentence, an image a 3-D model cannot take in the dock.

    Raises:
        UserInputError: no Z axis (a 2-D image or a plain stack), other stack axes besides Z
            (time), or a Z of one slice.
    """
    stack = layout.stack_axes
    if "Z" not in stack:
        raise UserInputError(
            f"{model} is a 3-D model but '{name}' has axes {layout.axes!r} with no Z axis: "
            "choose a Z-stack image (or set its axes to ZYX), or pick a 2-D model."
        )
    if stack != "Z":
        raise UserInputError(
            f"{model} is a 3-D model and '{name}' has axes {layout.axes!r}: the dock predicts "
            "one Z-stack at a time; open one time point (axes ZYX) or use the command line."
        )
    if layout.stack_shape[0] < 2:
        raise UserInputError(
            f"{model} is a 3-D model but '{name}' has a Z axis of 1 slice: choose a Z-stack of "
            "several slices, or pick a 2-D model."
        )


def volume_slices(depth: int, scope: str, todo: list[int]) -> tuple[list[int], list[int]]:
    """``(read, write)`` Z indices of a 3-D run over a volume ``depth`` slices deep.

    Args:
        depth: Z of the volume.
        scope: ``"stack"``, ``"slice"`` or ``"region"``.
        todo: the slices the 2-D plan would write (the displayed one for slice/region).
    """
    if scope == "stack" or not todo:
        every = list(range(depth))
        return every, every if todo else []
    low = max(0, min(todo) - SLAB_RADIUS)
    high = min(depth, max(todo) + SLAB_RADIUS + 1)
    if high - low < 2:  # a 3-D net needs 2 slices or more
        low, high = max(0, high - 2), max(high, 2)
    return list(range(low, high)), sorted(todo)


_DIMS: dict[tuple[str, float], tuple[int, int]] = {}


def _described(path: str) -> tuple[int, int] | None:
    """``(spatial dims, context slices)`` of a checkpoint, read once per file version (its
    description is memory-mapped: cheap); None for a file that cannot be read."""
    import os

    from napari_unet.core.checkpoint.format import read_checkpoint_info

    key = (str(path), os.path.getmtime(path) if os.path.exists(path) else 0.0)
    if key not in _DIMS:
        try:
            info = read_checkpoint_info(path)
        except UserInputError:
            return None
        _DIMS[key] = (int(info.spatial_dims), int(info.context_slices))
    return _DIMS[key]


def checkpoint_dims(path: str) -> int:
    """2 or 3: the spatial dims of a checkpoint.

    A file that cannot be read counts as 2-D: the prediction job then says what is wrong.
    """
    described = _described(path)
    return 2 if described is None else described[0]


def checkpoint_context(path: str) -> int:
    """Neighbour slices on each side a 2.5-D checkpoint takes (0: a 2-D/3-D or unreadable
    file, whose prediction job then says what is wrong)."""
    described = _described(path)
    return 0 if described is None else described[1]


def refresh_image(data: Any, axes: str, volume: Any, slices: list[int], context: int) -> Any:
    """The pixels of a re-prediction job: a 3-D job's window (``volume``), else the flat
    ``slices`` ``(S, C, Y, X)``, each with its ``context`` Z neighbours as channels for a 2.5-D
    version (``(S, C * (2r + 1), Y, X)``, mirrored at the stack's ends)."""
    from napari_unet.core.io.lazy import stack_slices

    if volume is not None:
        return stack_slices(data, axes, volume.read)
    if context:
        from napari_unet.core.inference.context import neighbour_stack

        return neighbour_stack(data, axes, slices, context)
    return stack_slices(data, axes, slices)


def refresh_job(image: Any, layout: StackLayout, write: tuple[int, ...]) -> VolumeJob:
    """The volume part of a background refresh writing ``write`` with a 3-D model: the whole
    volume when it spans many slices, else a slab around them (as the slice scope).

    Raises:
        UserInputError: the image is no Z-stack a 3-D model can take.
    """
    check_volume_image(layout, image.name, "the new version")
    read, _ = volume_slices(layout.stack_shape[0], "slice", list(write))
    return VolumeJob(tuple(read), tuple(write), spacing=layer_spacing(image))


def measure_volume(layout: StackLayout, slices: list[int]) -> VolumeJob | None:
    """The Z slab an uncertainty measurement of ``slices`` reads (for a 3-D model; a 2-D
    model uses the slices only), or None when the image is not one Z-stack."""
    if layout.stack_axes != "Z" or layout.stack_shape[0] < 2 or not slices:
        return None
    read, _ = volume_slices(layout.stack_shape[0], "slice", list(slices))
    return VolumeJob(tuple(read), tuple(int(s) for s in slices))  # in the slices' order


def layer_spacing(layer: Any) -> tuple[float, float, float]:
    """The voxel size ``(z, y, x)`` of an image layer: its last three scale factors."""
    scale = tuple(float(s) for s in getattr(layer, "scale", ())[-3:])
    if len(scale) != 3 or not all(s > 0 for s in scale):
        return (1.0, 1.0, 1.0)
    return scale  # type: ignore[return-value]


__all__ = [
    "SLAB_RADIUS",
    "VolumeJob",
    "check_volume_image",
    "checkpoint_dims",
    "layer_spacing",
    "measure_volume",
    "refresh_job",
    "volume_slices",
]
