"""``train --context-slices R``: a 2.5-D model from volumes annotated on a few slices.

A 2-D ``--model`` (``unet``, ...) trained with ``--context-slices R`` takes each slice with the
``R`` slices above and below it as input channels (mirrored at the volume's ends). The data are
read as for a 3-D model (:mod:`napari_unet.cli.train_volume`: one volume per image file, labels
and ``--masks`` of the same (Z, Y, X) shape); every slice that holds annotation becomes one
training item (:func:`napari_unet.core.training.context.context_items`): the neighbour slices are
input context only. The checkpoint records ``R`` (``provenance["context_slices"]``), so
``predict`` and the GUI feed each slice with its neighbours; fine-tuning a 2.5-D checkpoint keeps
its ``R``. Each annotated slice is also given with itself as its own neighbours (a flat copy,
:data:`~napari_unet.core.training.context.FLAT_COPIES`); ``--no-flat-copies`` turns that off.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)


def _radius(text: str) -> int:
    from napari_unet.core.io.neighbours import MAX_RADIUS

    if not text.isdigit() or int(text) > MAX_RADIUS:
        raise argparse.ArgumentTypeError(
            f"expected a number of slices from 0 to {MAX_RADIUS}, got {text!r}"
        )
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--context-slices R`` (2-D models only) and ``--no-flat-copies``."""
    from napari_unet.core.training.context import FLAT_COPIES

    parser.add_argument(
        "--context-slices",
        type=_radius,
        help="2.5-D: give a 2-D model R slices above and below each slice as extra input "
        "channels; images are Z-stacks annotated on some slices (default 0, or the "
        "checkpoint's)",
    )
    parser.add_argument(
        "--no-flat-copies",
        dest="flat_copies",
        action="store_false",
        default=FLAT_COPIES,
        help="2.5-D: do not also give each annotated slice with itself as its own neighbours; "
        "those copies are on by default because, from a few slices, a 2.5-D model without them "
        "can learn neighbour patterns that do not carry to other slices",
    )


def context_radius(args: argparse.Namespace, info: Any) -> int:
    """The run's ``R``: ``--context-slices``, else the checkpoint's (0 for a new model).

    Raises:
        UserInputError: ``--context-slices`` that differs from the checkpoint's, or given with a
            3-D model.
    """
    from napari_unet.cli.train_volume import is_volumetric
    from napari_unet.core.errors import UserInputError

    given = getattr(args, "context_slices", None)
    stored = info.context_slices if info is not None else 0
    if given and is_volumetric(args.model, info):
        raise UserInputError(
            f"--context-slices gives a 2-D model neighbour slices; {args.model} is a 3-D model "
            "that sees them already, so leave --context-slices out or use --model unet."
        )
    if info is not None and given is not None and given != stored:
        raise UserInputError(
            f"{args.model} takes {stored} neighbour slice(s) on each side, not {given}; leave "
            f"--context-slices out to fine-tune it, or train a new model with --model unet."
        )
    return stored if given is None else int(given)


def prepare(args: argparse.Namespace, info: Any, normalization: Any) -> list | None:
    """The 2.5-D items of ``R > 0``; None for ``R = 0`` (plain 2-D items from the folders).

    Raises:
        UserInputError: as :func:`context_radius`; restoration; the volume checks of
            :func:`napari_unet.cli.train_volume.load_volumes` (a 2-D image, too little memory).
        TrainingDataError: images without labels, labels of another shape.
    """
    from napari_unet.cli.train_volume import load_volumes
    from napari_unet.core.errors import UserInputError
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.training.context import FLAT_COPIES, context_items

    radius = context_radius(args, info)
    if radius == 0:
        return None
    if getattr(args, "task", None) == "restoration" or (info and info.task == "restoration"):
        raise UserInputError(
            "--context-slices trains segmentation models; leave it out for restoration."
        )
    try:
        volumes, _ = load_volumes(args, "segmentation", NormalizationConfig(mode="none"))
    except UserInputError as err:
        if "is a 3-D model" not in str(err):
            raise
        raise UserInputError(
            f"--context-slices {radius} takes neighbour slices from Z-stacks, but an image in "
            f"{args.images} has no Z axis of 2 or more slices; give Z-stacks (axes such as ZYX, "
            "--axes if the file does not say) or leave --context-slices out for 2-D images."
        ) from None
    items = []
    for volume in volumes:
        items += context_items(
            volume.image,
            volume.labels,
            volume.annotated_mask,
            radius,
            normalization=normalization,
            name=volume.name,
            flat_copies=getattr(args, "flat_copies", FLAT_COPIES),
        )
    return items


def provenance(args: argparse.Namespace, info: Any) -> dict[str, int]:
    """What ``--out`` records of the 2.5-D run: ``{"context_slices": R}`` (empty for R = 0)."""
    radius = context_radius(args, info)
    return {"context_slices": radius} if radius else {}
