"""Reading microscopy images (TIFF, PNG of any bit depth) and writing compressed TIFFs.

``read_image`` returns the array exactly as stored plus its axes when the file states them (ImageJ
hyperstack, OME-XML or tifffile's own metadata, or a single page whose tags say grey or RGB).
Axes are never guessed here: a plain multi-page TIFF of shape (3, Y, X) could be three channels or
three slices, so its axes are ``None`` and the caller asks
:func:`napari_unet.core.io.axes.guess_axes`, which refuses ambiguous shapes.

``write_tiff`` writes zlib-compressed TIFFs atomically with the axes in the most widely read format
the dtype allows: ImageJ (uint8/uint16/float32 in ImageJ axis order), else OME-XML, else
tifffile's JSON description.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unet.core.atomic import atomic_write_with
from napari_unet.core.errors import ImageReadError, UserInputError

logger = logging.getLogger(__name__)

#: File suffixes :func:`list_images` picks up (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png")

#: tifffile axis letters -> ours. ``S`` (samples per pixel, e.g. RGB) is a colour channel.
_TIFF_TO_AXES = {"T": "T", "Z": "Z", "C": "C", "S": "C", "Y": "Y", "X": "X"}
_IMAGEJ_DTYPES = frozenset({"uint8", "uint16", "float32"})
_OME_DTYPES = frozenset(
    {"int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64"}
)
_LABEL_DTYPES = (np.uint8, np.uint16, np.uint32, np.int32)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


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


def _read_png(path: Path) -> tuple[np.ndarray, str | None]:
    from PIL import Image

    with open(path, "rb") as handle:
        header = handle.read(33)
    if len(header) < 33 or header[12:16] != b"IHDR":
        raise ImageReadError(f"cannot read {path}: the PNG header is damaged; export it again.")
    bit_depth, colour_type = header[24], header[25]
    if bit_depth == 16 and colour_type in (2, 4, 6):
        image = _decode_png16(path)  # Pillow would silently cut these to 8 bits
    else:
        with Image.open(path) as pil:
            pil.load()
            image = np.array(pil)
    if image.ndim == 3 and image.shape[2] in (2, 4):
        alpha = image[..., -1]
        if np.all(alpha == np.iinfo(image.dtype).max):
            image = image[..., :-1]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return image, "YX" if image.ndim == 2 else "YXC"


def _decode_png16(path: Path) -> np.ndarray:
    """Decode a non-interlaced 16-bit grey+alpha, RGB or RGBA PNG to (Y, X, C) uint16."""
    data = path.read_bytes()
    pos, idat, ihdr = 8, [], b""
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if len(chunk) != length:
            raise ValueError("truncated chunk")
        if kind == b"IHDR":
            ihdr = chunk
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, _, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    if interlace:
        raise ImageReadError(
            f"cannot read {path}: interlaced 16-bit colour PNGs are not supported; "
            "save it as TIFF (or as a non-interlaced PNG)."
        )
    channels = {2: 3, 4: 2, 6: 4}[colour_type]
    bpp = 2 * channels
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    rows = raw[: height * (stride + 1)].reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:
            cur = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:
            cur = line + prev
        elif kind in (3, 4):
            cur = _unfilter_slow(line, prev, bpp, paeth=kind == 4)
        else:
            raise ValueError(f"unknown PNG filter {kind}")
        out[y] = cur
        prev = cur
    return out.view(">u2").reshape(height, width, channels).astype(np.uint16)


def _unfilter_slow(line: np.ndarray, prev: np.ndarray, bpp: int, *, paeth: bool) -> np.ndarray:
    """Undo the PNG Average (``paeth=False``) or Paeth filter on one scan line (bytes)."""
    cur = bytearray(line.tobytes())
    up = prev.tobytes()
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if paeth:
            c = up[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        else:
            pred = (a + b) >> 1
        cur[i] = (cur[i] + pred) & 0xFF
    return np.frombuffer(bytes(cur), np.uint8)


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
