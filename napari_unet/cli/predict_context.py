"""``predict`` with a 2.5-D model (``train --context-slices R``): what it cannot stream yet.

``iter_predict`` gives a 2.5-D model each slice with its ``R`` neighbours from the Z axis of the
image it is given (:mod:`napari_unet.core.inference.context`). A Zarr store or ``--dask`` is
predicted one slice (or block) at a time, without the slices around it, so a 2.5-D model is
refused there in one sentence rather than predicting without the context it was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_context_input(loaded: Any, path: Path, dask: Any) -> None:
    """Refuse a 2.5-D model on a Zarr store or with ``--dask``.

    Raises:
        UserInputError: a model with neighbour-slice context and a Zarr ``path`` or ``dask``.
    """
    from napari_unet.core.errors import UserInputError
    from napari_unet.core.io.zarr_io import is_zarr

    radius = loaded.info.context_slices
    if radius and (dask or is_zarr(path)):
        raise UserInputError(
            f"this is a 2.5-D model (each slice with {radius} neighbour slice(s) on each side): "
            "it predicts TIFF Z-stacks read into memory for now, not Zarr stores or --dask; "
            "save the stack as a TIFF."
        )
