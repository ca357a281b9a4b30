"""Reading microscopy images (TIFF, PNG of any bit depth) and writing compressed TIFFs.

``read_image`` returns the array exactly as stored plus its axes when the file states them (ImageJ
hyperstack, OME-XML or tifffile's own metadata, or a single page whose tags say grey or RGB).
Axes are never guessed here: a plain multi-page TIFF of shape (3, Y, X) could be three channels or
three slices, so its axes are ``None`` and the caller asks
:func:`napari_unet.core.io.axes.guess_axes`, which refuses ambiguous shapes.

``write_tiff`` writes zlib-compressed TIFFs atomically with the axes in the most widely read format
the dtype allows: ImageJ (uint8/uint16/float32 in ImageJ axis order), else OME-XML, else
tifffile's JSON description.

The formats live in siblings: :mod:`napari_unet.core.io.tiff` (TIFF reading and
:func:`write_tiff`, re-exported here) and :mod:`napari_unet.core.io.png` (PNG decoding).
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unet.core.errors import ImageReadError, UserInputError
from napari_unet.core.io.png import _PNG_MAGIC, _read_png
from napari_unet.core.io.tiff import _TIFF_MAGICS, _read_tiff, write_tiff

logger = logging.getLogger(__name__)

#: File suffixes :func:`list_images` picks up (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png")

_LABEL_DTYPES = (np.uint8, np.uint16, np.uint32, np.int32)


@dataclass(frozen=True, eq=False)
class ImageData:
    """An image as read from disk.

    Attributes:
        image: the pixel array as stored (any real dtype, never rescaled), e.g. (Y, X), (Y, X, 3),
            (Z, Y, X) or (C, Y, X).
        axes: one letter per dimension of ``image`` from ``"TZCYX"`` when the file states them,
            else ``None`` (then the caller must ask the user or guess safely).
        path: the file it came from.
    """

    image: np.ndarray
    axes: str | None
    path: Path


def read_image(path: str | os.PathLike) -> ImageData:
    """Read a TIFF (multi-page, ImageJ/OME metadata) or PNG (1/8/16-bit grey, RGB, RGBA) file.

    A Zarr / OME-Zarr folder is read whole (its full-resolution level); use
    :func:`napari_unet.core.io.zarr_io.open_zarr` to read one slice at a time instead.

    A fully opaque alpha channel of a PNG is dropped (it carries no data); a palette PNG gives its
    palette indices (label masks are stored that way).

    Raises:
        ImageReadError: the file is missing, not an image, truncated or of an unsupported type.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"cannot read {path}: the file does not exist; check the path.")
    if path.is_dir():
        from napari_unet.core.io.zarr_io import is_zarr, open_zarr

        if not is_zarr(path):
            raise ImageReadError(f"cannot read {path}: it is a folder; pass an image file.")
        lazy = open_zarr(path)  # the whole full-resolution level, loaded
        return ImageData(image=np.asarray(lazy.array[...]), axes=lazy.axes, path=path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as err:
        raise ImageReadError(f"cannot read {path}: {err.strerror or err}.") from err
    suffix = path.suffix.lower()
    if head.startswith(_PNG_MAGIC):
        reader = _read_png
    elif head[:4] in _TIFF_MAGICS:
        reader = _read_tiff
    elif suffix in IMAGE_SUFFIXES:
        kind = "PNG" if suffix == ".png" else "TIFF"
        what = "is empty" if not head else f"does not start like one (first bytes {head[:4]!r})"
        raise ImageReadError(
            f"cannot read {path}: it is named like a {kind} file but {what}; the file is damaged "
            "or mislabelled, copy or export it again."
        )
    else:
        raise ImageReadError(
            f"cannot read {path}: unsupported file type {suffix or '(no suffix)'!r}; "
            "convert it to TIFF or PNG."
        )
    try:
        image, axes = reader(path)
    except ImageReadError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # every decoder failure means a damaged file
        raise ImageReadError(
            f"cannot read {path}: the file is damaged or truncated ({type(err).__name__}: {err}); "
            "copy or export it again."
        ) from err
    if image.size == 0:
        raise ImageReadError(f"cannot read {path}: the image is empty (shape {image.shape}).")
    logger.debug("read %s: shape %s, dtype %s, axes %s", path, image.shape, image.dtype, axes)
    return ImageData(image=image, axes=axes, path=path)


def write_labels(
    path: str | os.PathLike,
    labels: np.ndarray,
    *,
    axes: str | None = None,
    software: str | None = None,
) -> Path:
    """Write a label image as a compressed TIFF, keeping its integer dtype.

    Args:
        labels: (*spatial) integer labels, 0 = background. uint8/uint16/uint32/int32 are kept;
            bool becomes uint8; other integer dtypes become the smallest of those that holds them.
        axes: optional axes of ``labels`` (e.g. ``"YX"``, ``"ZYX"``).
        software: the TIFF ``Software`` tag (``predict`` marks its outputs as predictions).

    Raises:
        ValueError: ``labels`` is not an integer or bool array, or its values fit no label dtype.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    elif not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {labels.dtype}")
    elif labels.dtype.type not in _LABEL_DTYPES:
        low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
        for dtype in _LABEL_DTYPES:
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                labels = labels.astype(dtype)
                break
        else:
            raise ValueError(f"label values {low}..{high} do not fit in uint32 or int32")
    return write_tiff(path, labels, axes=axes, software=software)


def image_stem(path: str | os.PathLike) -> str:
    """A file's or Zarr folder's name without its image suffix.

    ``a.tif``, ``a.ome.tif``, ``a.png``, ``a.zarr`` and ``a.ome.zarr`` all give ``a``: the stem
    that ``predict`` names its outputs after (``a_labels.tif``) and the reader names layers by.
    """
    name = Path(path).name
    lower = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *IMAGE_SUFFIXES, ".zarr"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The TIFF and PNG files directly inside ``folder``, sorted by name (hidden files skipped).

    Raises:
        ImageReadError: ``folder`` is not an existing folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder} is not a folder; pass a folder that holds TIFF/PNG images.")
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


#: ``errno`` values of a full disk, and of a folder that cannot be written to.
_NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG})
_NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def write_error(path: str | os.PathLike, err: OSError) -> UserInputError:
    """The one-sentence error for ``err``, raised while writing the output ``path``.

    Names ``path`` (never a temporary file's name) and the cause in words, and says what to do;
    the caller raises it ``from None``. Atomic writes (:mod:`napari_unet.core.atomic`) have left
    nothing of the failed file behind.
    """
    if err.errno in _NO_SPACE:
        cause, todo = "no space left on the device", "free some space or choose another --out"
    elif err.errno in _NOT_WRITABLE:
        cause = "the folder is read-only or not writable"
        todo = "choose another --out folder or make it writable"
    else:
        cause = (err.strerror or type(err).__name__).rstrip(".").lower()
        todo = "check the output folder or choose another --out"
    return UserInputError(f"cannot write {path}: {cause}; {todo}.")
