"""Labels -> a per-object table: count and measure what was segmented.

:func:`measure_objects` turns labels (and optionally the image they were predicted from) into a
table with one row per object, as a dict of equal-length 1-D numpy columns (scikit-image's
``regionprops_table`` does the measuring):

- ``slice`` (stacks with T or S axes only): the flat index over those axes (the slice numbering of
  :class:`~napari_unet.core.io.axes.StackLayout`); objects are measured per slice there, while a
  ``Z`` axis is measured as a volume;
- ``label``: the object id (for semantic labels, the number of the connected region of one class);
- ``class_id`` / ``class_name``: the object's class (semantic labels, or the majority class of a
  ``semantic`` map under the object; ``class_name`` when ``class_names`` are given);
- ``area``: pixels (2-D) or voxels (3-D); with ``spacing`` also ``area_physical`` (2-D) or
  ``volume_physical`` (3-D) in the spacing's units;
- ``centroid_z``, ``centroid_y``, ``centroid_x`` (pixels; with ``spacing`` also ``*_physical``);
- ``bbox_{z,y,x}_min`` / ``bbox_{z,y,x}_max`` (pixels, max exclusive, as numpy slices);
- ``mean_intensity``, ``min_intensity``, ``max_intensity`` with an ``image``; one of each per
  channel (``mean_intensity_c0``, ...) for a multichannel image.

:func:`write_measurements_csv` writes such a table atomically as plain CSV, after one comment line
(``# napari-unet-loop measurements {...}``, :data:`napari_unet.core.io.marks.CSV_PREFIX`) that marks
the file as ours, so ``predict`` may replace it later but never a CSV the user made. Read it with
``pandas.read_csv(path, comment="#")`` or ``skiprows=1``.

The argument checks live in :mod:`~napari_unet.core.postprocess.measure_checks`, the measuring of
one slice or volume in :mod:`~napari_unet.core.postprocess.measure_props` and the CSV in
:mod:`~napari_unet.core.postprocess.measure_csv` (re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from napari_unet.core.postprocess.measure_checks import PER_SLICE_AXES, check_inputs
from napari_unet.core.postprocess.measure_csv import (
    measurements_csv_text,
    write_measurements_csv,
)
from napari_unet.core.postprocess.measure_props import _INTENSITY, measure_one

logger = logging.getLogger(__name__)

__all__ = [
    "measure_objects",
    "measurement_columns",
    "measurements_csv_text",
    "write_measurements_csv",
]


def measure_objects(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    axes: str | None = None,
    output: str = "instances",
    class_names: Sequence[str] | None = None,
    semantic: np.ndarray | None = None,
    spacing: float | Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """One row per object of ``labels``: id, class, size, centroid, bounding box, intensities.

    Args:
        labels: (*spatial) integer labels, 0 = background, e.g. (Y, X), (Z, Y, X), (T, Y, X).
        image: None, (*spatial) for one channel or (*spatial, C) with channels last.
        axes: ``labels``' axes from ``TZSYX`` (default ``YX`` for 2-D, ``ZYX`` for 3-D; needed
            above 3-D). Slices along T/S are measured one by one (a ``slice`` column).
        output: ``"instances"`` (each id is an object) or ``"semantic"`` (ids are classes; each
            connected region of a class is an object, numbered from 1 per slice).
        class_names: names of the class ids (index = id), for the ``class_name`` column.
        semantic: optional (*spatial) class ids; an object's class is the most frequent one under
            it.
        spacing: pixel/voxel size per measured axis (``(Y, X)`` or ``(Z, Y, X)``; one number for
            all), adding physical area/volume and centroids.

    Returns:
        Columns by name (see the module docstring), each a 1-D array of the object count; an
        image without objects gives the same columns, empty.

    Raises:
        UserInputError: shapes that do not match, axes that do not fit, a bad spacing or output.
    """
    labels = np.asarray(labels)
    axes, channels, spacing = check_inputs(labels, image, axes, output, semantic, spacing)
    per_slice = [i for i, a in enumerate(axes) if a in PER_SLICE_AXES]
    measured_axes = "".join(a for a in axes if a not in PER_SLICE_AXES)
    has_class = output == "semantic" or semantic is not None
    columns = measurement_columns(
        measured_axes,
        channels,
        stack=bool(per_slice),
        classes=has_class,
        names=class_names is not None and has_class,
        physical=spacing is not None,
    )
    pieces = _measure_slices(labels, image, semantic, per_slice, measured_axes, output, spacing)
    table = {name: _concat([p.get(name) for p in pieces]) for name in columns}
    if "class_name" in table:
        names = list(class_names or [])
        table["class_name"] = np.array(
            [names[c] if 0 <= c < len(names) else str(c) for c in table["class_id"]], dtype=object
        )
    return table


def measurement_columns(
    measured_axes: str,
    channels: int | None,
    *,
    stack: bool = False,
    classes: bool = False,
    names: bool = False,
    physical: bool = False,
) -> list[str]:
    """The column names :func:`measure_objects` returns, in order.

    Args:
        measured_axes: ``"YX"`` or ``"ZYX"``.
        channels: None without an image, 0 for a one-channel image (no axis), else C.
        stack: a ``slice`` column; classes / names: ``class_id`` / ``class_name``;
        physical: physical size and centroid columns.
    """
    letters = [a.lower() for a in measured_axes]
    out = ["slice"] if stack else []
    out.append("label")
    if classes:
        out.append("class_id")
    if names:
        out.append("class_name")
    out.append("area")
    if physical:
        out.append("volume_physical" if len(letters) == 3 else "area_physical")
    out += [f"centroid_{a}" for a in letters]
    if physical:
        out += [f"centroid_{a}_physical" for a in letters]
    out += [f"bbox_{a}_min" for a in letters] + [f"bbox_{a}_max" for a in letters]
    if channels is not None:
        suffixes = [""] if channels == 0 else [f"_c{c}" for c in range(channels)]
        out += [f"{kind}_intensity{s}" for s in suffixes for kind in _INTENSITY]
    return out


def _measure_slices(
    labels: np.ndarray,
    image: np.ndarray | None,
    semantic: np.ndarray | None,
    per_slice: list[int],
    measured_axes: str,
    output: str,
    spacing: tuple[float, ...] | None,
) -> list[dict[str, np.ndarray]]:
    """The columns of each slice along the ``per_slice`` axes (one piece without them)."""
    slice_shape = tuple(labels.shape[i] for i in per_slice)
    pieces = []
    for flat, index in enumerate(np.ndindex(*slice_shape)):
        where = _slice_key(labels.ndim, per_slice, index)
        part = measure_one(
            labels[where],
            None if image is None else np.asarray(image[where]),
            measured_axes,
            output,
            None if semantic is None else np.asarray(semantic[where]),
            spacing,
        )
        if per_slice:
            part["slice"] = np.full(len(part["label"]), flat, dtype=np.int64)
        pieces.append(part)
    return pieces


def _slice_key(ndim: int, per_slice: list[int], index: tuple[int, ...]) -> tuple:
    key: list = [slice(None)] * ndim
    for axis, value in zip(per_slice, index, strict=True):
        key[axis] = value
    return tuple(key)


def _concat(parts: list[np.ndarray | None]) -> np.ndarray:
    arrays = [p for p in parts if p is not None]
    if not arrays:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate(arrays)
