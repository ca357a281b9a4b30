"""PNG files of any bit depth: 1/8/16-bit grey, grey+alpha, RGB, RGBA and palette images.

Pillow decodes most of them; 16-bit colour PNGs (which Pillow would cut to 8 bits) are decoded
here. Used through :func:`napari_unet.core.io.images.read_image`.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from napari_unet.core.errors import ImageReadError

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
