"""Image I/O: TIFF/PNG round trips with dtypes and axes kept, clear errors for bad files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_unet.core.errors import ImageReadError, UserInputError
from napari_unet.core.io.images import list_images, read_image, write_labels, write_tiff

DTYPES = ("uint8", "uint16", "uint32", "int32", "float32", "float16", "float64")


def random_image(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return (rng.standard_normal(shape) * 1000).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        ((33, 47), "YX"),
        ((3, 33, 47), "ZYX"),
        ((3, 33, 47), "CYX"),
        ((2, 3, 17, 19), "TZYX"),
        ((2, 3, 17, 19), "CZYX"),
        ((17, 19, 4), "YXC"),
        ((3, 33, 47), None),
    ],
)
def test_tiff_round_trip_keeps_values_dtype_and_axes(
    tmp_path: Path, rng: np.random.Generator, dtype: str, shape: tuple, axes: str | None
) -> None:
    image = random_image(rng, shape, dtype)
    path = write_tiff(tmp_path / "out" / "image.tif", image, axes=axes)
    data = read_image(path)
    assert data.image.dtype == image.dtype
    np.testing.assert_array_equal(data.image, image)
    assert data.axes == axes  # None stays None: a plain 3-page stack is not guessed here
    assert data.path == path


def test_tiff_is_compressed(tmp_path: Path) -> None:
    image = np.zeros((256, 256), np.uint16)
    image[100:150, 100:150] = 1000
    packed = write_tiff(tmp_path / "c.tif", image)
    raw = write_tiff(tmp_path / "r.tif", image, compress=False)
    assert packed.stat().st_size < raw.stat().st_size / 10
    with tifffile.TiffFile(packed) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE


def test_bool_is_written_as_uint8(tmp_path: Path, rng: np.random.Generator) -> None:
    mask = rng.random((20, 30)) > 0.5
    data = read_image(write_tiff(tmp_path / "m.tif", mask, axes="YX"))
    assert data.image.dtype == np.uint8
    np.testing.assert_array_equal(data.image, mask)


def test_imagej_and_ome_metadata_written_by_others(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    stack = rng.integers(0, 4000, (4, 2, 24, 20), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    data = read_image(tmp_path / "ij.tif")
    assert data.axes == "ZCYX"
    np.testing.assert_array_equal(data.image, stack)

    cyx = rng.random((3, 24, 20)).astype(np.float32)
    tifffile.imwrite(tmp_path / "x.ome.tif", cyx, ome=True, metadata={"axes": "CYX"})
    data = read_image(tmp_path / "x.ome.tif")
    assert data.axes == "CYX"
    np.testing.assert_array_equal(data.image, cyx)

    rgb = rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    data = read_image(tmp_path / "rgb.tif")
    assert data.axes == "YXC"  # tifffile's 'S' (samples) is a colour channel


def test_plain_multipage_tiff_has_unknown_axes(tmp_path: Path, rng: np.random.Generator) -> None:
    pages = rng.integers(0, 255, (3, 16, 16), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for page in pages:
            tif.write(page, photometric="minisblack", metadata=None)
    data = read_image(tmp_path / "pages.tif")
    np.testing.assert_array_equal(data.image, pages)
    assert data.axes is None


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_grey_png(tmp_path: Path, rng: np.random.Generator, dtype: str) -> None:
    image = random_image(rng, (31, 45), dtype)
    Image.fromarray(image).save(tmp_path / "g.png")
    data = read_image(tmp_path / "g.png")
    assert data.image.dtype == image.dtype and data.axes == "YX"
    np.testing.assert_array_equal(data.image, image)


def test_rgb_and_rgba_png(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 255, (31, 45, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    data = read_image(tmp_path / "rgb.png")
    assert data.axes == "YXC"
    np.testing.assert_array_equal(data.image, rgb)

    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    Image.fromarray(opaque).save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_image(tmp_path / "opaque.png").image, rgb)  # alpha dropped

    rgba = opaque.copy()
    rgba[0, 0, 3] = 7
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png").image, rgba)  # alpha kept


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def encode_png16(image: np.ndarray) -> bytes:
    """(Y, X, C) uint16 -> PNG bytes, rows filtered with types 0..4 in turn (Pillow cannot)."""
    height, width, channels = image.shape
    colour = {2: 4, 3: 2, 4: 6}[channels]
    bpp = 2 * channels
    rows = image.astype(">u2").reshape(height, -1).view(np.uint8).astype(np.int32)
    prev = np.zeros(rows.shape[1], np.int32)
    lines = []
    for y, row in enumerate(rows):
        kind = y % 5
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        pred = [0 * row, left, prev, (left + prev) // 2, _paeth(left, prev, upleft)][kind]
        lines.append(bytes([kind]) + ((row - pred) % 256).astype(np.uint8).tobytes())
        prev = row

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(lines)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_keeps_16_bits(
    tmp_path: Path, rng: np.random.Generator, channels: int
) -> None:
    image = rng.integers(0, 65535, (12, 9, channels), dtype=np.uint16, endpoint=True)
    image[..., -1] = np.maximum(image[..., -1], 1)  # not fully opaque: alpha is kept
    path = tmp_path / "c16.png"
    path.write_bytes(encode_png16(image))
    # the encoder is a valid PNG: Pillow reads the same image cut to 8 bits
    with Image.open(path) as pil:
        np.testing.assert_array_equal(
            np.asarray(pil)[..., :3], (image[..., :3] >> 8).astype(np.uint8)
        )
    data = read_image(path)
    assert data.image.dtype == np.uint16 and data.axes == "YXC"
    np.testing.assert_array_equal(data.image, image)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"nope\.tif.*does not exist"):
        read_image(tmp_path / "nope.tif")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.parametrize("name", ["bad.tif", "bad.png"])
def test_not_an_image(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"this is a text file, not an image\n")
    with pytest.raises(ImageReadError, match=r"damaged or mislabelled") as info:
        read_image(path)
    assert name in str(info.value)
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(ImageReadError, match="is empty"):
        read_image(tmp_path / "empty.tif")


@pytest.mark.parametrize("name", ["cut.tif", "cut.png"])
def test_truncated_file(tmp_path: Path, rng: np.random.Generator, name: str) -> None:
    image = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    path = tmp_path / name
    if name.endswith(".tif"):
        write_tiff(path, image, compress=False)
    else:
        Image.fromarray(image).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=r"damaged|truncated") as info:
        read_image(path)
    assert name in str(info.value) and isinstance(info.value, UserInputError)


def test_unsupported_type(tmp_path: Path) -> None:
    path = tmp_path / "image.czi"
    path.write_bytes(b"ZISRAWFILE" + bytes(100))
    with pytest.raises(ImageReadError, match=r"unsupported file type '\.czi'.*TIFF or PNG"):
        read_image(path)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int32"])
def test_write_labels_keeps_dtype(tmp_path: Path, rng: np.random.Generator, dtype: str) -> None:
    labels = rng.integers(0, min(np.iinfo(dtype).max, 70000), (3, 20, 30)).astype(dtype)
    data = read_image(write_labels(tmp_path / "labels.tif", labels, axes="ZYX"))
    assert data.image.dtype == np.dtype(dtype) and data.axes == "ZYX"
    np.testing.assert_array_equal(data.image, labels)


def test_write_labels_narrows_wide_ints(tmp_path: Path) -> None:
    labels = np.array([[0, 1], [300, 2]], np.int64)
    data = read_image(write_labels(tmp_path / "l.tif", labels))
    assert data.image.dtype == np.uint16
    np.testing.assert_array_equal(data.image, labels)
    assert read_image(write_labels(tmp_path / "n.tif", -labels)).image.dtype == np.int32
    with pytest.raises(ValueError, match="integer"):
        write_labels(tmp_path / "f.tif", labels.astype(np.float32))


def test_list_images(tmp_path: Path) -> None:
    for name in ["b.TIF", "a.png", "c.tiff", "notes.txt", ".hidden.tif"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.tif").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.TIF", "c.tiff"]
    with pytest.raises(ImageReadError, match="not a folder"):
        list_images(tmp_path / "missing")


def test_real_dsb2018_png(shared_data: Path) -> None:
    image = read_image(shared_data / "dsb2018_fluo" / "images" / "000.png")
    labels = read_image(shared_data / "dsb2018_fluo" / "labels" / "000.png")
    assert image.axes == labels.axes == "YX"
    assert image.image.dtype == np.uint8 and labels.image.dtype == np.uint16
    assert image.image.shape == labels.image.shape
    assert len(np.unique(labels.image)) > 2  # instance ids survive (16 bits kept)
