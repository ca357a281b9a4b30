"""Lazy OME-Zarr / Zarr images: open without loading, read one 2-D slice at a time, stream outputs.

A volume too big for memory (or a folder of them, or a cluster job's share of one) is predicted
slice by slice: :func:`open_zarr` opens the full-resolution array lazily,
:func:`napari_unet.core.io.lazy.read_slice` loads one ``(C, Y, X)`` / ``(Y, X)`` slice, and
:func:`create_output` makes an OME-Zarr array
that each slice's result is written into. Memory then grows with one slice, not the volume, and
separate processes can fill different slices of the same output (``napari-unet-loop predict
--slices``).

- OME-NGFF multiscale groups (``multiscales`` in the group attributes, v0.4 and v0.5): the first
  (full-resolution) dataset, with the axes named in the metadata (``t c z y x`` -> ``TCZYX``).
- A plain Zarr array: its axes are not stated (``None``); the caller asks or guesses safely.

Requires ``zarr`` >= 3 (Python >= 3.11); without it every function raises a clear
:class:`~napari_unet.core.errors.ImageReadError`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import ImageReadError, UserInputError
from napari_unet.core.io.marks import ZARR_KEY, check_overwritable

logger = logging.getLogger(__name__)

#: Files that mark a folder as a Zarr group or array (format 2 and 3).
ZARR_MARKERS: tuple[str, ...] = (".zgroup", ".zarray", "zarr.json")
#: OME-NGFF axis names -> ours.
_NGFF_TO_AXES = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
#: Largest Y/X chunk side of the outputs (a slice is written as a few chunks of this size).
OUTPUT_CHUNK = 1024


@dataclass(frozen=True)
class Physical:
    """Physical geometry of an image's full-resolution level, one entry per axis letter.

    Attributes:
        scale: pixel size per axis (``{"Z": 2.0, "Y": 0.5, "X": 0.5}``); missing axes are 1.
        translation: origin per axis; missing axes are 0.
        units: unit per axis (``"micrometer"``), where the input states one.
    """

    scale: dict[str, float]
    translation: dict[str, float]
    units: dict[str, str]

    @classmethod
    def none(cls) -> Physical:
        return cls(scale={}, translation={}, units={})


@dataclass(frozen=True, eq=False)
class LazyImage:
    """A Zarr image opened without loading it.

    Attributes:
        array: the full-resolution ``zarr.Array`` (index it to load a part).
        axes: one letter per dimension from ``"TZCYX"`` when the metadata names them, else None.
        path: the ``.zarr`` folder.
        levels: number of resolution levels in the file (1 for a plain array).
        physical: pixel size, origin and units of the full-resolution level (OME-NGFF
            ``coordinateTransformations`` and axis units; empty for a plain array).
    """

    array: Any
    axes: str | None
    path: Path
    levels: int = 1
    physical: Physical = field(default_factory=Physical.none)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise ImageReadError(
            "reading or writing Zarr needs the 'zarr' package (version 3, Python >= 3.11): "
            "pip install zarr"
        ) from None
    return zarr


def is_zarr(path: str | os.PathLike) -> bool:
    """True for a folder holding Zarr metadata (a group or an array, format 2 or 3)."""
    folder = Path(path)
    return folder.is_dir() and any((folder / marker).is_file() for marker in ZARR_MARKERS)


def _ngff_axes(attributes: dict) -> tuple[str | None, list[dict], dict]:
    """(axes, datasets, multiscale) of the first multiscale of OME-NGFF group attributes."""
    ome = attributes.get("ome", attributes)  # v0.5 nests the metadata under "ome"
    multiscales = ome.get("multiscales") or []
    if not multiscales:
        return None, [], {}
    first = multiscales[0]
    names = [a["name"] if isinstance(a, dict) else str(a) for a in first.get("axes", [])]
    letters = [_NGFF_TO_AXES.get(n.lower()) for n in names]
    axes = "".join(letters) if names and all(letters) else None
    return axes, list(first.get("datasets") or []), first


def open_zarr(path: str | os.PathLike) -> LazyImage:
    """Open an OME-Zarr image or a plain Zarr array lazily (nothing is read but metadata).

    Raises:
        ImageReadError: the folder is missing, not Zarr, damaged, an empty group, or zarr is
            not installed; the message says which.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"cannot read {path}: the folder does not exist; check the path.")
    if not is_zarr(path):
        raise ImageReadError(
            f"cannot read {path}: it is not a Zarr folder (no {', '.join(ZARR_MARKERS)} inside)."
        )
    zarr = _zarr()
    try:
        node = zarr.open(store=str(path), mode="r")
        if hasattr(node, "shape"):
            return _checked(LazyImage(array=node, axes=None, path=path))
        axes, datasets, first = _ngff_axes(dict(node.attrs))
        if datasets:
            array = node[datasets[0]["path"]]
            if axes is not None and len(axes) != array.ndim:
                logger.warning("%s: %d axes named for a %dD array", path, len(axes), array.ndim)
                axes = None
            physical = _physical(axes, datasets[0], first)
            return _checked(
                LazyImage(
                    array=array, axes=axes, path=path, levels=len(datasets), physical=physical
                )
            )
        arrays = sorted(name for name, _ in node.arrays())
        if not arrays:
            raise ImageReadError(f"cannot read {path}: the Zarr group holds no image array.")
        return _checked(LazyImage(array=node[arrays[0]], axes=None, path=path))
    except ImageReadError:
        raise
    except (KeyError, ValueError, TypeError, OSError, json.JSONDecodeError) as err:
        raise ImageReadError(
            f"cannot read {path}: the Zarr metadata is damaged ({type(err).__name__}: {err}); "
            "copy or export it again."
        ) from err


def _physical(axes: str | None, dataset: dict, multiscale: dict) -> Physical:
    """The pixel size, origin and units of the full-resolution ``dataset`` (OME-NGFF 0.4/0.5)."""
    if axes is None:
        return Physical.none()
    scale = [1.0] * len(axes)
    translation = [0.0] * len(axes)
    for transform in dataset.get("coordinateTransformations") or []:
        values = transform.get(transform.get("type"), [])
        if transform.get("type") == "scale" and len(values) == len(axes):
            scale = [float(v) for v in values]
        elif transform.get("type") == "translation" and len(values) == len(axes):
            translation = [float(v) for v in values]
    units = {
        letter: str(entry["unit"])
        for letter, entry in zip(axes, multiscale.get("axes", []), strict=False)
        if isinstance(entry, dict) and entry.get("unit")
    }
    return Physical(
        scale=dict(zip(axes, scale, strict=True)),
        translation=dict(zip(axes, translation, strict=True)),
        units=units,
    )


def _checked(image: LazyImage) -> LazyImage:
    if math.prod(image.shape) == 0:
        raise ImageReadError(f"cannot read {image.path}: the image is empty ({image.shape}).")
    if image.dtype.kind not in "uif" and image.dtype != np.bool_:
        raise ImageReadError(
            f"cannot read {image.path}: unsupported pixel type {image.dtype}; "
            "integers or floats are needed."
        )
    return image


def ngff_attributes(axes: str, name: str) -> dict:
    """OME-NGFF v0.4 group attributes of a one-level image with ``axes`` (for outputs)."""
    kinds = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
    return {
        "multiscales": [
            {
                "version": "0.4",
                "name": name,
                "axes": [{"name": a.lower(), "type": kinds[a]} for a in axes],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1.0] * len(axes)}
                        ],
                    }
                ],
            }
        ],
        "napari_unet": {"axes": axes},
    }


def create_output(
    path: str | os.PathLike,
    *,
    shape: tuple[int, ...],
    axes: str,
    dtype: Any,
    attributes: dict[str, Any] | None = None,
) -> Any:
    """An OME-Zarr image to stream results into, created or (same shape and type) reopened.

    Chunks are one slice deep and at most :data:`OUTPUT_CHUNK` wide, so writers of different
    slices never touch the same chunk: cluster jobs may fill one output together.

    Args:
        path: the ``.zarr`` folder. shape: the full output shape. axes: one letter per dimension
            (``C`` for channels, e.g. ``"CZYX"``). dtype: the output pixel type.
        attributes: extra group attributes written when the output is created (e.g. the
            prediction mark of :mod:`napari_unet.core.io.marks`). Every output created here is
            marked as one (``{"napari_unet": {"output": ...}}``), so it can be reopened.

    Returns:
        The writable full-resolution ``zarr.Array`` (unwritten pixels read as 0).

    Raises:
        UserInputError: ``path`` exists without the mark of a ``predict`` output (the user's own
            store: never reopened, see :func:`~napari_unet.core.io.marks.check_overwritable`), is
            not such an output, or holds a different shape or type (an earlier run with other
            settings: remove it or choose another --out).
    """
    path, dtype = Path(path), np.dtype(dtype)
    zarr = _zarr()
    chunks = tuple(
        1 if a not in "YX" else min(int(s), OUTPUT_CHUNK) for a, s in zip(axes, shape, strict=True)
    )
    if path.exists() or path.is_symlink():
        check_overwritable(path)  # a store we did not write is never reopened for writing
        try:
            existing = open_zarr(path).array
        except ImageReadError as err:
            raise UserInputError(
                f"{path} exists and is not a readable output ({err}); remove it."
            ) from None
        if tuple(existing.shape) != tuple(shape) or np.dtype(existing.dtype) != dtype:
            raise UserInputError(
                f"{path} exists with shape {tuple(existing.shape)} {existing.dtype}, but this run "
                f"writes {tuple(shape)} {dtype}; remove it or choose another --out."
            )
        return zarr.open_group(store=str(path), mode="r+")["0"]
    group = zarr.open_group(store=str(path), mode="a", zarr_format=2)
    marked = _merged(ngff_attributes(axes, path.name), {ZARR_KEY: {"output": {}}})
    group.attrs.update(_merged(marked, attributes or {}))
    return group.require_array("0", shape=tuple(shape), chunks=chunks, dtype=dtype, fill_value=0)


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``; dict values present in both are merged, not replaced."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
