"""``train`` with a 3-D model (``unet3d``, ``unet3d_aniso``): volumes annotated on a few slices.

Each image file is one volume (ZYX, ZCYX, ...; a T axis gives one volume per time point), its
label file the same (Z, Y, X) shape. The annotated voxels are the non-zero voxels of the
``--masks`` volume (any slices, in any of the three orientations), and never the ``--ignore-value``
ones; everything else is ignored by the loss, and training patches are drawn around annotated
voxels. The voxel size comes from ``--voxel-size Z,Y,X``, else from the file's metadata
(:mod:`napari_unet.core.io.voxel`): ``unet3d_aniso`` chooses its pooling from it (and keeps it,
so ``predict``'s 3-D watershed uses it). The checks here turn what a user can get wrong into one
sentence: a 2-D image, a Z of one slice, annotation that lies in one plane, a missing or absurd
voxel size, a volume that would not fit in memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.cli import volume_checks

logger = logging.getLogger(__name__)

#: Default slices per 3-D training patch (``--patch-depth``).
PATCH_DEPTH = 16


def _voxel_size(text: str) -> tuple[float, float, float]:
    from napari_unet.core.io.voxel import parse_voxel_size

    try:
        return parse_voxel_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of 3-D training (ignored by 2-D models, except that --voxel-size is refused)."""
    parser.add_argument(
        "--voxel-size",
        type=_voxel_size,
        help="3-D models: voxel size Z,Y,X in one unit, e.g. 50,4,4 (default: the image metadata)",
    )
    parser.add_argument(
        "--patch-depth",
        type=int,
        default=PATCH_DEPTH,
        help=f"3-D models: slices per training patch ({PATCH_DEPTH})",
    )


def is_volumetric(model: str, info: Any) -> bool:
    """Whether ``--model`` (an architecture name, or a checkpoint described by ``info``) is 3-D."""
    from napari_unet.core.models.registry import architecture_spatial_dims

    arch = info.arch if info is not None else model
    try:
        return architecture_spatial_dims(arch) == 3
    except ValueError:
        return False


def _volume_of(path: Path, data: Any, axes: str | None, model_name: str) -> list[np.ndarray]:
    """The ``(C, Z, Y, X)`` volumes of an image (one per T)."""
    from napari_unet.core.inference.volume import to_volumes
    from napari_unet.core.io.axes import check_axes, guess_axes

    axes = check_axes(axes, data.shape) if axes else guess_axes(data.shape, metadata_axes=None)
    if "Z" not in axes and data.ndim == 3 and axes[0] in "ST":
        axes = "Z" + axes[1:]  # an unlabelled stack of slices is a Z-stack for a 3-D model
    volumes, _ = to_volumes(data, axes, model_name=f"{model_name} ({path.name})")
    return list(volumes)


def _spatial(path: Path, array: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``array`` as ``shape`` (Z, Y, X) (a leading T axis split per volume by the caller)."""
    from napari_unet.core.errors import TrainingDataError

    if array.shape == shape:
        return array
    squeezed = np.squeeze(array)
    if squeezed.shape != shape:
        raise TrainingDataError(
            f"the {what} of {path.name} have shape {array.shape} but the volume is {shape} "
            f"(Z, Y, X); give {what} with the same shape as the volume."
        )
    return squeezed


def load_volumes(args: argparse.Namespace, task: str, normalization: Any) -> tuple[list, Any]:
    """Read image/label(/mask) volumes paired by stem; returns ``(items, voxel size or None)``.

    Raises:
        TrainingDataError: no pairs, an image without labels, labels or masks of another shape.
            (Restoration is refused before, in :func:`prepare`.)
        UserInputError: a 2-D image or a Z of one slice, or volumes too large for memory.
    """
    from napari_unet.core.errors import TrainingDataError
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.io.images import list_images, read_image
    from napari_unet.core.io.voxel import read_voxel_size
    from napari_unet.core.training.items import TrainingItem

    label_files = {p.stem: p for p in list_images(args.labels)}
    mask_files = {p.stem: p for p in list_images(args.masks)} if args.masks else {}
    image_files = list_images(args.images)
    missing = [p.name for p in image_files if p.stem not in label_files]
    if missing or not image_files:
        raise TrainingDataError(
            f"{len(missing)} volume(s) in {args.images} have no labels with the same file stem "
            f"in {args.labels} ({', '.join(missing[:5])}); name each label file like its image."
            if missing
            else f"no TIFF/PNG images in {args.images}; point --images at the volume folder."
        )
    volume_checks.check_memory([*image_files, *(label_files[p.stem] for p in image_files)])
    items, voxel = [], None
    for path in image_files:
        data = read_image(path)
        volumes = _volume_of(path, data.image, args.axes or data.axes, args.model)
        labels = read_image(label_files[path.stem]).image.reshape(len(volumes), -1)
        mask = read_image(mask_files[path.stem]).image != 0 if path.stem in mask_files else None
        voxel = voxel or read_voxel_size(path)
        for t, volume in enumerate(volumes):
            shape = volume.shape[1:]
            flat = np.asarray(volume, dtype=np.float32)
            normalised = normalize(flat.reshape(flat.shape[0], -1, shape[-1]), normalization)
            items.append(
                TrainingItem(
                    image=normalised.reshape(flat.shape),
                    labels=_spatial(path, labels[t].reshape(shape), shape, "labels"),
                    annotated_mask=None if mask is None else _spatial(path, mask, shape, "masks"),
                    name=path.stem if len(volumes) == 1 else f"{path.stem}[{t}]",
                )
            )
    logger.info("read %d training volume(s) from %s", len(items), args.images)
    return items, voxel


def choose_voxel_size(args: argparse.Namespace, found: Any) -> tuple[float, float, float] | None:
    """``--voxel-size``, else the metadata's, checked; None when neither gives one.

    Raises:
        UserInputError: a side that is not positive and finite, or sides more than 100x apart.
    """
    from napari_unet.core.models.pooling import check_voxel_size

    given = getattr(args, "voxel_size", None)
    voxel = given if given is not None else found
    if voxel is None:
        return None
    logger.info(
        "voxel size (z, y, x): %s (%s)", voxel, "--voxel-size" if given else "image metadata"
    )
    return check_voxel_size(voxel)


def model_settings(arch: str, voxel: Any) -> dict[str, Any]:
    """Extra ``build_model`` settings of a new 3-D model: ``unet3d_aniso`` needs the voxel size.

    Raises:
        UserInputError: ``unet3d_aniso`` without a voxel size (none given, none in the metadata).
    """
    from napari_unet.core.errors import UserInputError

    if arch != "unet3d_aniso":
        if voxel is not None and max(voxel) >= 2 * min(voxel):
            logger.warning(
                "the voxel size %s is anisotropic; --model unet3d_aniso pools Z less often and "
                "usually fits such volumes better.",
                voxel,
            )
        return {"padding": "same"} if arch == "unet3d" else {}
    if voxel is None:
        raise UserInputError(
            "--model unet3d_aniso chooses its pooling from the voxel size, but the images state "
            "none in their metadata; give --voxel-size Z,Y,X (e.g. 50,4,4 for serial-section EM "
            "in nm)."
        )
    return {"voxel_size": voxel}


def patch_shape(args: argparse.Namespace) -> tuple[int, int, int]:
    """``(d, h, w)`` output patch of a 3-D model: ``--patch-depth`` slices of ``--patch`` sides.

    Raises:
        UserInputError: ``--patch-depth`` below 1.
    """
    from napari_unet.core.errors import UserInputError

    if args.patch_depth < 1:
        raise UserInputError(
            f"--patch-depth {args.patch_depth} must be at least 1 slice; give e.g. 16."
        )
    side = int(args.patch or 256)  # without --patch train chooses Y/X from the data
    return (int(args.patch_depth), side, side)


@dataclasses.dataclass(frozen=True)
class VolumeData:
    """What ``train`` needs from the 3-D path: the items, new-model settings, the patch."""

    items: list
    model_settings: dict
    patch_shape: tuple[int, int, int]


def prepare(
    args: argparse.Namespace, info: Any, task: str, normalization: Any
) -> VolumeData | None:
    """Read and check the volumes of a 3-D ``--model``; None for a 2-D model (slice items).

    Raises:
        UserInputError: restoration with a 3-D model, a 2-D image, a Z of one slice, a missing
            (``unet3d_aniso``) or absurd voxel size, annotation in one plane, too little memory.
    """
    from napari_unet.core.errors import UserInputError

    if not is_volumetric(args.model, info):
        if getattr(args, "voxel_size", None) is not None:
            logger.warning("--voxel-size is used by 3-D models only; %s is 2-D.", args.model)
        return None
    if task == "restoration":
        raise UserInputError(
            f"{args.model} is a 3-D segmentation model; restoration trains 2-D models only, "
            "so give --model unet for restoration."
        )
    patch = patch_shape(args)
    items, found = load_volumes(args, task, normalization)
    voxel = choose_voxel_size(args, found)
    volume_checks.check_sparse_annotation(items, args.ignore_value)
    settings = model_settings(args.model, voxel) if info is None else {}
    return VolumeData(items=items, model_settings=settings, patch_shape=patch)
