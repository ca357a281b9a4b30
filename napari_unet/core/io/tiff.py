"""TIFF files: reading a series with the axes its metadata states, writing compressed TIFFs.

Axes are taken from ImageJ hyperstack, OME-XML or tifffile's own metadata (or a single page whose
tags say grey or RGB), never guessed. :func:`write_tiff` writes zlib-compressed TIFFs atomically
with the axes in the most widely read format the dtype allows: ImageJ (uint8/uint16/float32 in
ImageJ axis order), else OME-XML, else tifffile's JSON description. Used through
:mod:`napari_unet.core.io.images`, which re-exports :func:`write_tiff`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from napari_unet.core.atomic import atomic_write_with
from napari_unet.core.errors import ImageReadError

logger = logging.getLogger(__name__)

#: tifffile axis letters -> ours. ``S`` (samples per pixel, e.g. RGB) is a colour channel.
_TIFF_TO_AXES = {"T": "T", "Z": "Z", "C": "C", "S": "C", "Y": "Y", "X": "X"}
_IMAGEJ_DTYPES = frozenset({"uint8", "uint16", "float32"})
_OME_DTYPES = frozenset(
    {"int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64"}
)
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _read_tiff(path: Path) -> tuple[np.ndarray, str | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ImageReadError(
                f"cannot read {path}: the TIFF file holds no image (it is damaged or truncated); "
                "copy or export it again."
            )
        if len(tif.series) > 1:
            logger.info("%s holds %d image series; reading the first", path, len(tif.series))
        series = tif.series[0]
        image = series.asarray()
        stated = tif.is_imagej or tif.is_ome or len(series.pages) == 1
        if tif.is_shaped and tif.shaped_metadata and "axes" in tif.shaped_metadata[0]:
            stated = True
        axes = _map_tiff_axes(series.axes) if stated else None
    if axes is not None and len(axes) != image.ndim:
        axes = None
    return np.asarray(image), axes


def _map_tiff_axes(tiff_axes: str) -> str | None:
    """tifffile axes (e.g. ``"ZCYX"``, ``"YXS"``) -> ours, or ``None`` if any letter is unknown."""
    mapped = "".join(_TIFF_TO_AXES.get(letter, "?") for letter in tiff_axes.upper())
    if "?" in mapped or len(set(mapped)) != len(mapped) or not {"Y", "X"} <= set(mapped):
        return None
    return mapped


def write_tiff(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    axes: str | None = None,
    compress: bool = True,
    software: str | None = None,
) -> Path:
    """Write ``array`` to a (zlib-compressed) TIFF atomically; returns the path.

    Args:
        path: target file; its folder is created.
        array: any shape and real dtype (ints, float16/32/64; bool is stored as uint8 0/1).
        axes: one letter per dimension from ``"TZCYXS"`` (``S`` = a generic stack), stored as
            ImageJ metadata where the dtype and order allow it, else as OME-XML, else as tifffile
            metadata (float16, 64-bit ints), so :func:`read_image` returns them.
        compress: zlib (deflate) compression, lossless.
        software: text for the TIFF ``Software`` tag (e.g. a
            :func:`~napari_unet.core.io.marks.software_tag`); tifffile's default when None.
    """
    import tifffile

    array = np.ascontiguousarray(array)
    if array.dtype == bool:  # 1-bit TIFFs are poorly supported elsewhere
        array = array.view(np.uint8)
    kwargs: dict = {"compression": "zlib" if compress else None}
    if software is not None:
        kwargs["software"] = software
    if axes is not None:
        axes = axes.upper()
        if len(axes) != array.ndim or len(set(axes)) != len(axes) or set(axes) - set("TZCYXS"):
            raise ValueError(f"axes {axes!r} do not fit an array of shape {array.shape}")
        tiff_axes = axes.replace("S", "Q")
        dtype = array.dtype.name
        if axes.endswith("C") and array.shape[-1] == 3 and dtype in ("uint8", "uint16"):
            kwargs["photometric"] = "rgb"
        elif axes.endswith("C"):
            kwargs.update(photometric="minisblack", planarconfig="contig")
        else:  # else tifffile stores (3, Y, X) as one planar RGB page
            kwargs["photometric"] = "minisblack"
        big = array.nbytes > 2**32 - 2**25
        if dtype in _IMAGEJ_DTYPES and _in_imagej_order(axes) and not big:
            kwargs.update(imagej=True, metadata={"axes": tiff_axes})
        elif dtype in _OME_DTYPES and "S" not in axes:
            kwargs.update(ome=True, metadata={"axes": tiff_axes}, bigtiff=big)
        else:
            kwargs.update(metadata={"axes": tiff_axes}, bigtiff=big)
    else:
        # without axes a (3, Y, X) array must not turn into an RGB page
        kwargs.update(photometric="minisblack", bigtiff=array.nbytes > 2**32 - 2**25)

    def writer(handle) -> None:
        # a named FileHandle: tifffile wants a name and the temporary file's is an fd number
        tifffile.imwrite(
            tifffile.FileHandle(handle, mode="wb", name=Path(path).name), array, **kwargs
        )

    atomic_write_with(path, writer)
    logger.debug("wrote %s: shape %s, dtype %s, axes %s", path, array.shape, array.dtype, axes)
    return Path(path)


def _in_imagej_order(axes: str) -> bool:
    order = "TZCYX"
    return (
        set(axes) <= set(order)
        and axes.endswith("YX")
        and list(axes) == sorted(axes, key=order.index)
    )
