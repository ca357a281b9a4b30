"""Multiscale (pyramid) OME-Zarr outputs, with their metadata written by ``ome-zarr-py``.

An output made by :func:`~napari_unet.core.io.zarr_io.create_output` holds its full-resolution
array at ``"0"``. Here the coarser levels ``"1"``, ``"2"``, ... are added: Y and X halved per
level (Z and T are kept: stacks are often anisotropic and each slice stays independent, so
cluster shares writing different slices can each fill their slices at every level). Labels are
downsampled by taking every ``2**level``-th pixel (nearest: ids are never blended),
probabilities by the mean of each ``2**level`` square.

The ``multiscales`` metadata (axes with their units, one ``scale`` -- the input's physical pixel
size times the level's factor -- and ``translation`` per level) is written by
``ome_zarr.writer.write_multiscales_metadata``, and labels get ``image-label`` metadata
(``write_label_metadata``). ``ome-zarr`` is an optional dependency
(``pip install "napari-unet-loop[ome-zarr]"``); without it outputs keep one level and the plain
metadata of :func:`~napari_unet.core.io.zarr_io.ngff_attributes`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.io.zarr_io import Physical, create_output

logger = logging.getLogger(__name__)

#: No level is made whose shorter Y/X side would fall under this many pixels.
MIN_LEVEL_SIDE = 16
#: Most levels in a pyramid, full resolution included.
MAX_LEVELS = 8
_KINDS = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def ome_zarr_available() -> bool:
    """True when ``ome-zarr`` (ome-zarr-py) can be imported."""
    try:
        import ome_zarr.writer  # noqa: F401
    except ImportError:
        return False
    return True


def n_levels(yx_shape: tuple[int, int]) -> int:
    """Levels of the pyramid of a ``(Y, X)`` image: halve until a side would pass under 16."""
    levels = 1
    while levels < MAX_LEVELS and min(yx_shape) // 2**levels >= MIN_LEVEL_SIDE:
        levels += 1
    return levels


def level_shape(shape: tuple[int, ...], level: int) -> tuple[int, ...]:
    """The shape of ``level``: the last two (Y, X) sides divided by ``2**level``, rounded up."""
    factor = 2**level
    return (*shape[:-2], *(math.ceil(s / factor) for s in shape[-2:]))


def downsample(plane: np.ndarray, level: int, *, labels: bool) -> np.ndarray:
    """``plane`` (..., Y, X) at ``level``: nearest for labels, block mean otherwise.

    Returns:
        (..., ceil(Y / 2**level), ceil(X / 2**level)), same dtype as ``plane``.
    """
    factor = 2**level
    if labels or level == 0:
        return np.ascontiguousarray(plane[..., ::factor, ::factor])
    height, width = plane.shape[-2:]
    pad = [(0, 0)] * (plane.ndim - 2) + [(0, -height % factor), (0, -width % factor)]
    padded = np.pad(plane.astype(np.float32), pad, mode="edge")
    blocks = padded.reshape(
        *plane.shape[:-2], padded.shape[-2] // factor, factor, padded.shape[-1] // factor, factor
    )
    return blocks.mean(axis=(-3, -1)).astype(plane.dtype)


def _datasets(axes: str, physical: Physical, levels: int) -> list[dict]:
    """One dataset per level: the input's pixel size times the level's factor, its origin."""
    translation = [physical.translation.get(a, 0.0) for a in axes]
    datasets = []
    for level in range(levels):
        scale = [physical.scale.get(a, 1.0) * (2**level if a in "YX" else 1) for a in axes]
        transforms: list[dict] = [{"type": "scale", "scale": scale}]
        if any(translation):
            transforms.append({"type": "translation", "translation": translation})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    return datasets


def write_pyramid_metadata(
    path: Path, *, axes: str, physical: Physical, levels: int, labels: bool = False
) -> None:
    """Write the ``multiscales`` metadata of ``path`` (and ``image-label`` for ``labels``).

    Args:
        axes: one letter per dimension of every level. levels: how many levels exist.
        labels: a labels output; inside an image's ``labels/`` group its source is the image.
    """
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import add_metadata, write_multiscales_metadata

    group = zarr.open_group(store=str(path), mode="r+")
    ngff_axes = []
    for letter in axes:
        entry = {"name": letter.lower(), "type": _KINDS[letter]}
        if letter in physical.units:
            entry["unit"] = physical.units[letter]
        ngff_axes.append(entry)
    write_multiscales_metadata(
        group,
        _datasets(axes, physical, levels),
        fmt=FormatV04(),
        axes=ngff_axes,
        name=path.name,
    )
    if labels:
        image_label: dict[str, Any] = {"version": "0.4"}
        if path.parent.name == "labels":
            image_label["source"] = {"image": "../../"}
        add_metadata(group, {"image-label": image_label}, FormatV04())


def create_levels(path: Path, *, levels: int) -> list[Any]:
    """Create (or reopen) levels ``1..levels-1`` beside level ``"0"``; return all levels."""
    import zarr

    group = zarr.open_group(store=str(path), mode="r+")
    base = group["0"]
    arrays = [base]
    for level in range(1, levels):
        shape = level_shape(tuple(base.shape), level)
        chunks = (*base.chunks[:-2], *(min(c, s) for c, s in zip(base.chunks[-2:], shape[-2:])))
        arrays.append(
            group.require_array(
                str(level), shape=shape, chunks=chunks, dtype=base.dtype, fill_value=0
            )
        )
    return arrays


def write_plane(arrays: list[Any], key: tuple, plane: np.ndarray, *, labels: bool) -> None:
    """Write one slice's ``plane`` (..., Y, X) at ``key`` (full Y/X) into every level."""
    for level, array in enumerate(arrays):
        array[key] = downsample(plane, level, labels=labels).astype(array.dtype, copy=False)


def build_pyramid(path: Path, *, labels: bool, axes: str, physical: Physical) -> int:
    """Add the coarser levels of a complete one-level output, slice by slice; the level count.

    Used where level 0 is written by many workers in blocks (``predict --dask``): run once at the
    end, and again on a rerun (it rewrites the same values).
    """
    import zarr

    base = zarr.open_group(store=str(path), mode="r")["0"]
    levels = n_levels(tuple(base.shape[-2:]))
    arrays = create_levels(path, levels=levels)
    for index in np.ndindex(*base.shape[:-2]):
        key = (*index, slice(None), slice(None))
        plane = np.asarray(base[key])
        for level, array in enumerate(arrays[1:], start=1):
            array[key] = downsample(plane, level, labels=labels)
    write_pyramid_metadata(path, axes=axes, physical=physical, levels=levels, labels=labels)
    return levels


_warned = False


def create_pyramid_output(
    path: Path,
    *,
    shape: tuple[int, ...],
    axes: str,
    dtype: Any,
    physical: Physical,
    labels: bool = False,
    attributes: dict[str, Any] | None = None,
) -> list[Any]:
    """:func:`~napari_unet.core.io.zarr_io.create_output` plus its pyramid levels and metadata.

    Returns:
        The writable arrays, full resolution first (only that one without ``ome-zarr``).

    Raises:
        UserInputError: as ``create_output`` (a store we did not write, another shape or type).
    """
    global _warned
    base = create_output(path, shape=shape, axes=axes, dtype=dtype, attributes=attributes)
    if not ome_zarr_available():
        if not _warned:
            logger.warning(
                "Zarr outputs have one resolution level: install ome-zarr "
                '(pip install "napari-unet-loop[ome-zarr]") for pyramids and physical sizes.'
            )
            _warned = True
        return [base]
    levels = n_levels(tuple(shape[-2:]))
    arrays = create_levels(path, levels=levels)
    if _levels_described(path) != levels:  # a share reopening it leaves the metadata alone
        write_pyramid_metadata(path, axes=axes, physical=physical, levels=levels, labels=labels)
    return arrays


def _levels_described(path: Path) -> int:
    """How many datasets the ``multiscales`` metadata of ``path`` lists."""
    import zarr

    multiscales = zarr.open_group(store=str(path), mode="r").attrs.get("multiscales") or [{}]
    return len(multiscales[0].get("datasets") or [])
