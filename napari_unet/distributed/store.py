"""OME-Zarr outputs whose chunks are aligned to the blocks, so workers write in parallel safely."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import UserInputError
from napari_unet.core.io.zarr_io import _zarr, ngff_attributes, open_zarr

#: Group attribute set once every block of a distributed run is written.
COMPLETE = "napari_unet_dask"


def check_writable(folder: Path) -> None:
    """Refuse a read-only output folder before any work starts."""
    probe = folder if folder.exists() else folder.parent
    if not os.access(probe, os.W_OK):
        raise UserInputError(
            f"cannot write to {probe} (read-only); make it writable or choose another --out "
            "(blocks already written there are kept and a rerun resumes)."
        )


def create_block_output(
    path: Path,
    *,
    shape: tuple[int, ...],
    axes: str,
    dtype: Any,
    chunks: tuple[int, ...],
    attributes: dict[str, Any] | None = None,
) -> None:
    """Create (or check and reopen) a one-level OME-Zarr output with the given ``chunks``.

    Raises:
        UserInputError: ``path`` holds something else: another shape, type or chunking (writers
            of different blocks would then share chunks).
    """
    zarr, dtype = _zarr(), np.dtype(dtype)
    if path.exists():
        try:
            existing = open_zarr(path).array
        except UserInputError as err:
            raise UserInputError(
                f"{path} exists and is not a readable output ({err}); remove it."
            ) from None
        found = (tuple(existing.shape), np.dtype(existing.dtype), tuple(existing.chunks))
        if found != (tuple(shape), dtype, tuple(chunks)):
            raise UserInputError(
                f"{path} exists with shape {found[0]} {found[1]} and chunks {found[2]}, but this "
                f"run writes {tuple(shape)} {dtype} in blocks {tuple(chunks)}; remove it, choose "
                "another --out, or rerun with the same --dask-block."
            )
        return
    group = zarr.open_group(store=str(path), mode="a", zarr_format=2)
    group.attrs.update({**ngff_attributes(axes, path.name), **(attributes or {})})
    group.require_array("0", shape=tuple(shape), chunks=tuple(chunks), dtype=dtype, fill_value=0)


def open_output(path: str | Path) -> Any:
    """The writable full-resolution array of an output made by :func:`create_block_output`."""
    return _zarr().open_group(store=str(path), mode="r+")["0"]


def completed_plan(path: Path) -> dict | None:
    """The plan recorded when ``path`` was completed by a distributed run, else None."""
    if not path.exists():
        return None
    try:
        attrs = dict(_zarr().open_group(store=str(path), mode="r").attrs)
    except (OSError, ValueError, KeyError):
        return None
    return attrs.get(COMPLETE)


def mark_complete(path: Path, plan: dict) -> None:
    _zarr().open_group(store=str(path), mode="r+").attrs[COMPLETE] = plan
