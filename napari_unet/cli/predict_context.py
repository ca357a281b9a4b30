"""``predict`` with a 2.5-D model (``train --context-slices R``) on a stack streamed from disk.

``iter_predict`` gives a 2.5-D model each slice with its ``R`` neighbours from the Z axis of the
image it is given (:mod:`napari_unet.core.inference.context`). A Zarr store (or a TIFF stack too
large for memory, read through tifffile's Zarr interface) is predicted slice by slice by
:mod:`napari_unet.cli.predict_zarr`: :func:`context_plane` reads each slice together with its
``R`` neighbours (mirrored at the stack's ends, as in memory), so the streamed result equals the
in-memory one while memory grows with ``2R + 1`` slices, never with the stack. ``--dask`` cuts a
stack into Y/X blocks of single slices and is refused for a 2.5-D model in one sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["check_context_input", "context_plane", "open_lazy", "stream_context_tiff"]


def check_context_input(loaded: Any, path: Path, dask: Any) -> None:
    """Refuse a 2.5-D model with ``--dask``.

    Raises:
        UserInputError: a model with neighbour-slice context and ``dask``.
    """
    from napari_unet.core.errors import UserInputError

    radius = loaded.info.context_slices
    if radius and dask:
        raise UserInputError(
            f"this is a 2.5-D model (each slice with {radius} neighbour slice(s) on each side): "
            "--dask predicts single slices without their neighbours; drop --dask (a Zarr stack "
            "is then streamed slice by slice with its neighbours)."
        )


def stream_context_tiff(job: Any, path: Path) -> bool:
    """True for a 2.5-D model and a TIFF stack too large for memory: it is streamed slice by
    slice (``predict_zarr`` through tifffile's Zarr interface), never read whole."""
    from napari_unet.cli.volume_checks import stream_if_too_large
    from napari_unet.core.inference.context import context_radius

    radius = context_radius(job.loaded.model)
    if not radius or path.suffix.lower() not in (".tif", ".tiff"):
        return False
    # the in-memory path holds the stack 2R + 1 times (each slice with its neighbours)
    return stream_if_too_large(path, int(job.loaded.model.out_channels) + 2 * radius + 1)


def open_lazy(path: Path) -> Any:
    """A :class:`~napari_unet.core.io.zarr_io.LazyImage` of a Zarr store or a TIFF (unread)."""
    from napari_unet.core.io.zarr_io import LazyImage, is_zarr, open_zarr

    if is_zarr(path):
        return open_zarr(path)
    from napari_unet.distributed.volume_tasks import open_volume

    array, axes, physical = open_volume(path)
    return LazyImage(array=array, axes=axes, path=path, physical=physical)


def context_plane(
    model: Any, lazy: Any, layout: Any, index: int, plane: np.ndarray, axes: str
) -> tuple[np.ndarray, str]:
    """``(plane, axes)`` as ``model`` takes slice ``index`` of ``lazy``: for a 2.5-D model the
    slice with its neighbours as channels ``(C * (2R + 1), Y, X)``, axes ``"CYX"`` (only those
    slices are read); unchanged for other models."""
    from napari_unet.core.inference.context import context_radius, neighbour_stack

    radius = context_radius(model)
    if not radius:
        return plane, axes
    return neighbour_stack(lazy.array, layout.axes, [index], radius)[0], "CYX"
