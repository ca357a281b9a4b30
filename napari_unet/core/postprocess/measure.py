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
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_unet.core.errors import UserInputError

logger = logging.getLogger(__name__)

__all__ = ["measure_objects", "measurement_columns", "write_measurements_csv"]

#: Stack letters whose slices are measured one by one (Z is measured as a volume).
PER_SLICE_AXES = "TS"
_INTENSITY = ("mean", "min", "max")


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
    axes = _check_axes(labels, axes)
    if output not in ("instances", "semantic"):
        raise UserInputError(f"output must be 'instances' or 'semantic', got {output!r}.")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise UserInputError(f"labels must be integers (object or class ids), got {labels.dtype}.")
    channels = _check_image(labels, image)
    if semantic is not None and np.shape(semantic) != labels.shape:
        raise UserInputError(
            f"the class map has shape {np.shape(semantic)} but the labels {labels.shape}; give one "
            "class id per label pixel."
        )
    per_slice = [i for i, a in enumerate(axes) if a in PER_SLICE_AXES]
    measured_axes = "".join(a for a in axes if a not in PER_SLICE_AXES)
    spacing = _check_spacing(spacing, measured_axes)
    has_class = output == "semantic" or semantic is not None
    columns = measurement_columns(
        measured_axes,
        channels,
        stack=bool(per_slice),
        classes=has_class,
        names=class_names is not None and has_class,
        physical=spacing is not None,
    )
    slice_shape = tuple(labels.shape[i] for i in per_slice)
    pieces = []
    for flat, index in enumerate(np.ndindex(*slice_shape)):
        where = _slice_key(labels.ndim, per_slice, index)
        part = _measure_one(
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


def _check_axes(labels: np.ndarray, axes: str | None) -> str:
    if axes is None:
        if labels.ndim not in (2, 3):
            raise UserInputError(
                f"labels of shape {labels.shape} need axes (e.g. 'TZYX'); 2-D and 3-D labels are "
                "taken as YX and ZYX."
            )
        return "YX" if labels.ndim == 2 else "ZYX"
    axes = axes.upper()
    measured = "".join(a for a in axes if a not in PER_SLICE_AXES)
    if (
        len(axes) != labels.ndim
        or len(set(axes)) != len(axes)
        or not set(axes) <= set("TZSYX")
        or measured not in ("YX", "ZYX")
    ):
        raise UserInputError(
            f"axes {axes!r} do not fit labels of shape {labels.shape}: give one letter per "
            "dimension from T, S, Z, Y, X, ending in YX (e.g. 'YX', 'ZYX', 'TYX')."
        )
    return axes


def _check_image(labels: np.ndarray, image: np.ndarray | None) -> int | None:
    """Channels of ``image``: None without one, 0 for (*spatial), C for (*spatial, C)."""
    if image is None:
        return None
    shape = tuple(np.shape(image))
    if shape == labels.shape:
        return 0
    if len(shape) == labels.ndim + 1 and shape[:-1] == labels.shape:
        return int(shape[-1])
    raise UserInputError(
        f"the image has shape {shape} but the labels {labels.shape}; measure labels with the image "
        "they were predicted from (same shape, channels last)."
    )


def _check_spacing(
    spacing: float | Sequence[float] | None, measured_axes: str
) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = [spacing] * len(measured_axes) if np.isscalar(spacing) else list(spacing)
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        values = []
    if len(values) != len(measured_axes) or not all(math.isfinite(v) and v > 0 for v in values):
        raise UserInputError(
            f"the pixel size must be one positive number or one per axis {measured_axes} "
            f"(e.g. {','.join(['0.5'] * len(measured_axes))}), got {spacing!r}."
        )
    return tuple(values)


def _slice_key(ndim: int, per_slice: list[int], index: tuple[int, ...]) -> tuple:
    key: list = [slice(None)] * ndim
    for axis, value in zip(per_slice, index, strict=True):
        key[axis] = value
    return tuple(key)


def _measure_one(
    labels: np.ndarray,
    image: np.ndarray | None,
    measured_axes: str,
    output: str,
    semantic: np.ndarray | None,
    spacing: tuple[float, ...] | None,
) -> dict[str, np.ndarray]:
    """The columns of one 2-D slice or 3-D volume (no ``slice`` column)."""
    from skimage.measure import label as connected
    from skimage.measure import regionprops_table

    class_ids = labels if output == "semantic" else semantic
    if output == "semantic":
        labels = connected(labels, background=0, connectivity=labels.ndim)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    properties = ["label", "area", "centroid", "bbox"]
    if image is not None:
        properties += [f"intensity_{kind}" for kind in _INTENSITY]
    raw = regionprops_table(labels, intensity_image=image, properties=properties, separator="-")
    letters = [a.lower() for a in measured_axes]
    n = len(letters)
    table: dict[str, np.ndarray] = {
        "label": raw["label"].astype(np.int64),
        "area": raw["area"].astype(np.int64),
    }
    for i, a in enumerate(letters):
        table[f"centroid_{a}"] = raw[f"centroid-{i}"].astype(np.float64)
        table[f"bbox_{a}_min"] = raw[f"bbox-{i}"].astype(np.int64)
        table[f"bbox_{a}_max"] = raw[f"bbox-{i + n}"].astype(np.int64)
    if spacing is not None:
        size = table["area"] * float(np.prod(spacing))
        table["volume_physical" if n == 3 else "area_physical"] = size
        for i, a in enumerate(letters):
            table[f"centroid_{a}_physical"] = table[f"centroid_{a}"] * spacing[i]
    if image is not None:
        _intensity_columns(table, raw, image.ndim > labels.ndim, image)
    if class_ids is not None:
        table["class_id"] = _majority(labels, np.asarray(class_ids), table["label"])
    return table


def _intensity_columns(
    table: dict[str, np.ndarray], raw: Mapping[str, np.ndarray], multichannel: bool, image
) -> None:
    for kind in _INTENSITY:
        if not multichannel:
            table[f"{kind}_intensity"] = raw[f"intensity_{kind}"].astype(np.float64)
            continue
        for c in range(image.shape[-1]):
            table[f"{kind}_intensity_c{c}"] = raw[f"intensity_{kind}-{c}"].astype(np.float64)


def _majority(labels: np.ndarray, class_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The most frequent class id under each object of ``ids`` (ties: the smaller id)."""
    inside = labels != 0
    if not ids.size:
        return np.zeros(0, dtype=np.int64)
    keys, counts = np.unique(
        np.stack([labels[inside].astype(np.int64), class_ids[inside].astype(np.int64)]),
        axis=1,
        return_counts=True,
    )
    best: dict[int, tuple[int, int]] = {}
    for obj, cls, count in zip(keys[0].tolist(), keys[1].tolist(), counts.tolist(), strict=True):
        if obj not in best or count > best[obj][0]:
            best[obj] = (count, cls)
    return np.array([best[int(i)][1] for i in ids], dtype=np.int64)


def _concat(parts: list[np.ndarray | None]) -> np.ndarray:
    arrays = [p for p in parts if p is not None]
    if not arrays:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate(arrays)


def measurements_csv_text(table: Mapping[str, np.ndarray], *, source: Mapping | None = None) -> str:
    """The CSV text of ``table``: the mark line, the header, one row per object."""
    from napari_unet.core.io.marks import CSV_PREFIX

    buffer = io.StringIO()
    buffer.write(f"{CSV_PREFIX} {json.dumps(dict(source or {}), sort_keys=True)}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(table)
    writer.writerow(names)
    columns = [np.asarray(table[name]).tolist() for name in names]
    for row in zip(*columns, strict=True):
        writer.writerow([_cell(v) for v in row])
    return buffer.getvalue()


def _cell(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return value


def write_measurements_csv(
    path: str | os.PathLike, table: Mapping[str, np.ndarray], *, source: Mapping | None = None
) -> Path:
    """Write ``table`` as CSV to ``path`` atomically (a reader sees the old file or the new one).

    Args:
        path: the ``.csv`` file.
        table: columns as returned by :func:`measure_objects`.
        source: what the table measures (model, image), written into the first comment line.

    Returns:
        ``path``.
    """
    from napari_unet.core.atomic import atomic_write_text

    lengths = {len(np.asarray(v)) for v in table.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {sorted(lengths)}")
    return atomic_write_text(path, measurements_csv_text(table, source=source))
