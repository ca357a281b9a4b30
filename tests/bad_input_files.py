"""The user's files for the bad-input matrix (``test_bad_inputs.py``,
``test_bad_inputs_training.py``): good and broken images, label folders, checkpoints and the
hashes that prove none of them changed."""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import tifffile

from napari_unet.core.io.images import write_tiff


# -- the user's files ------------------------------------------------------------------------
def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) < radius**2


def _image(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ((labels > 0) * 150 + rng.integers(0, 60, labels.shape)).astype(np.uint16)


def _train_set(root: Path, name: str, labels: list[np.ndarray], **kwargs) -> Path:
    """``root/name/{images,labels}`` with one image per label array (same shape unless given)."""
    folder = root / name
    images = kwargs.get("images") or [_image(np.nan_to_num(lab).astype(np.int64)) for lab in labels]
    for sub in ("labels", "masks") if kwargs.get("masks") else ("labels",):
        (folder / sub).mkdir(parents=True)
    for i, (image, lab) in enumerate(zip(images, labels)):
        axes = "YX" if np.ndim(image) == 2 else None  # a 3-D image states no axes
        write_tiff(folder / "images" / f"im{i}.tif", image, axes=axes)
        tifffile.imwrite(folder / "labels" / f"im{i}.tif", lab)
    for i, mask in enumerate(kwargs.get("masks") or []):
        tifffile.imwrite(folder / "masks" / f"im{i}.tif", mask)
    return folder


def _tiny_checkpoint(path: Path, *, task: str = "semantic", out_channels: int = 2) -> Path:
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", in_channels=1, out_channels=out_channels, depth=2, base_channels=4)
    return save_checkpoint(path, model, task=task, tile_shape=(32, 32), overlap=4)


class _Evil:
    """Unpickling this runs ``touch MARKER``: a checkpoint must never be unpickled like that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _build_user_files(root: Path) -> SimpleNamespace:
    """Every input the matrix uses, written once (read-only by convention)."""
    import torch

    w = SimpleNamespace(root=root)
    disc = _disc((48, 48), (22, 24), 10)
    img = _image(disc)
    w.img = write_tiff(root / "img.tif", img, axes="YX")
    w.png = root / "img.png"
    from skimage.io import imsave

    imsave(w.png, (img // 4).astype(np.uint8), check_contrast=False)
    # dtypes
    w.dtype = {}
    for name, array in {
        "bool": disc,
        "int8": (img // 4 - 60).astype(np.int8),
        "uint16": img,
        "uint32": img.astype(np.uint32) * 1000,
        "int64": img.astype(np.int64) - 100,
        "float16": img.astype(np.float16),
        "float64": img.astype(np.float64) / 7.0,
    }.items():
        w.dtype[name] = write_tiff(root / f"dtype_{name}.tif", array, axes="YX")
    w.dtype["complex"] = root / "dtype_complex.tif"
    tifffile.imwrite(w.dtype["complex"], img.astype(np.complex64))
    # axes
    w.ambiguous = root / "three_planes.tif"
    tifffile.imwrite(w.ambiguous, np.stack([img] * 3), photometric="minisblack", metadata=None)
    w.tzyx = write_tiff(root / "tzyx.tif", np.stack([[img[:32, :32]] * 2] * 2), axes="TZYX")
    # no axes stored (a stored one-channel C would be squeezed away): --axes says them
    w.tzcyx = write_tiff(root / "tzcyx.tif", np.stack([[img[None, :32, :32]] * 2] * 2))
    w.zero = root / "zero.tif"
    tifffile.imwrite(w.zero, np.zeros((0, 0), np.uint16))
    # damaged files
    good_tif, good_png = w.img.read_bytes(), w.png.read_bytes()
    w.trunc_tif = root / "truncated.tif"
    w.trunc_tif.write_bytes(good_tif[: len(good_tif) // 2])
    w.trunc_png = root / "truncated.png"
    w.trunc_png.write_bytes(good_png[: len(good_png) // 2])
    w.corrupt_png = root / "corrupt.png"
    w.corrupt_png.write_bytes(good_png[:8] + bytes(range(256)) * 4)
    w.corrupt_tif = root / "corrupt.tif"
    w.corrupt_tif.write_bytes(b"II*\0" + bytes(range(256)) * 4)
    w.empty = root / "empty.tif"
    w.empty.write_bytes(b"")
    w.no_images = root / "no_images"
    w.no_images.mkdir()
    (w.no_images / "notes.txt").write_text("not an image\n")
    w.missing = root / "does_not_exist.tif"
    # checkpoints
    w.tiny = _tiny_checkpoint(root / "tiny.pt")
    w.restoration = _tiny_checkpoint(root / "restore.pt", task="restoration", out_channels=1)
    w.text_pt = root / "notes.pt"
    w.text_pt.write_text("this is not a checkpoint\n")
    w.foreign = root / "foreign.pt"
    from napari_unet.core.models import build_model

    torch.save(build_model("unet", depth=2, base_channels=4).state_dict(), w.foreign)
    w.marker = root / "PWNED"
    w.evil = root / "evil.pt"
    torch.save({"model": _Evil(w.marker)}, w.evil)
    w.evil_raw = root / "evil_raw.pt"
    w.evil_raw.write_bytes(pickle.dumps(_Evil(w.marker)))
    w.bitflip = root / "bitflip.pt"
    data = bytearray(w.tiny.read_bytes())
    with zipfile.ZipFile(w.tiny) as archive:  # flip a byte inside the largest stored tensor
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2] ^= 1
    w.bitflip.write_bytes(bytes(data))
    # training sets
    shape = (48, 48)
    d1, d2 = _disc(shape, (20, 24), 10), _disc(shape, (26, 20), 9)
    w.train_ok = _train_set(root, "train_ok", [d1.astype(np.uint8), d2.astype(np.uint8)])
    w.train_70000 = _train_set(root, "train_70000", [d1 * np.uint32(70000), d2 * np.uint32(7)])
    instances = np.zeros((96, 96), np.uint32)
    for n in range(300):
        y, x = divmod(n, 20)
        instances[y * 6 + 2 : y * 6 + 5, (x * 4 + 1) % 96 : (x * 4 + 4) % 96 or 96] = n + 1
    w.train_instances = _train_set(root, "train_instances", [instances])
    nan = d1.astype(np.float32)
    nan[0, 0] = np.nan
    w.train_nan = _train_set(root, "train_nan", [nan], images=[_image(d1)])
    w.train_float = _train_set(root, "train_float", [d1 * np.float32(0.5)])
    w.train_negative = _train_set(root, "train_negative", [d1.astype(np.int16) - 1])
    w.train_empty = _train_set(root, "train_empty", [np.zeros(shape, np.uint8)] * 2)
    w.train_shape = _train_set(
        root, "train_shape", [d1[:40, :40].astype(np.uint8)], images=[_image(d1)]
    )
    w.train_count = _train_set(root, "train_count", [d1.astype(np.uint8)] * 2)
    (w.train_count / "labels" / "im1.tif").unlink()
    w.train_ignore = _train_set(
        root, "train_ignore", [d1.astype(np.uint8)], masks=[np.zeros(shape, np.uint8)]
    )
    small = _disc((12, 12), (6, 6), 4).astype(np.uint8)
    w.train_small = _train_set(root, "train_small", [small])
    w.train_ambiguous = _train_set(
        root, "train_ambiguous", [d1.astype(np.uint8)], images=[np.stack([_image(d1)] * 3)]
    )
    # evaluation
    w.pred = root / "pred"
    write_tiff(w.pred / "im0_labels.tif", d1.astype(np.uint8), axes="YX")
    w.truth = root / "truth"
    write_tiff(w.truth / "im0.tif", d1.astype(np.uint8), axes="YX")
    return w


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
