"""``train --pretrain-fraction F [--unlabelled DIR]``: self-supervised pre-training first.

A share ``F`` of the run's budget (``--minutes`` or ``--steps``; default 500 steps) pre-trains a
new model on the images alone (:mod:`napari_unet.core.training.pretrain`: masked-block
reconstruction), the rest trains the segmentation as usual. The images used are the training
images plus every TIFF/PNG in ``--unlabelled`` (same channels; normalised as the training
images). Off by default: at 2 CPU-minutes it did not measurably help (docs/learning_ablation.md).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from napari_unet.cli._parser import fraction

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--pretrain-fraction`` and ``--unlabelled``."""
    parser.add_argument(
        "--pretrain-fraction",
        type=fraction,
        default=0.0,
        metavar="F",
        help="share of the budget (--minutes or --steps) spent first on self-supervised "
        "pre-training of a new model on the images alone (masked-block reconstruction); "
        "0 (default) = off; e.g. 0.25",
    )
    parser.add_argument(
        "--unlabelled",
        type=Path,
        metavar="DIR",
        help="folder of extra images without labels (TIFF/PNG, the training images' channels) "
        "that pre-training also learns from; needs --pretrain-fraction",
    )


def default_model(args: argparse.Namespace) -> str | None:
    """``unet`` when pre-training is asked for without ``--model`` (it pre-trains a new model)."""
    if getattr(args, "pretrain_fraction", 0.0) > 0 and not args.model:
        return "unet"
    return None


def read_unlabelled(folder: Path, axes: str | None, normalization: Any = None) -> list:
    """The images of ``folder`` as normalised (C, Y, X) float32 arrays (one per slice).

    Raises:
        UserInputError: not a folder, or no TIFF/PNG images in it.
    """
    from napari_unet.cli.train_data import _to_cyx
    from napari_unet.core.errors import UserInputError
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.io.images import list_images, read_image

    files = list_images(folder)
    if not files:
        raise UserInputError(f"no TIFF/PNG images in {folder}; point --unlabelled at images.")
    images = []
    for path in files:
        data = read_image(path)
        images += [normalize(s, normalization) for s in _to_cyx(data.image, data.axes, axes)]
    logger.info("read %d unlabelled image(s) from %s", len(images), folder)
    return images


def _check(args: argparse.Namespace, model: Any) -> None:
    """Refuse what pre-training cannot do, in one sentence each."""
    from napari_unet.core.errors import UserInputError

    if args.unlabelled and not args.pretrain_fraction:
        raise UserInputError("--unlabelled is used by pre-training only; add --pretrain-fraction.")
    if args.unlabelled and getattr(args, "context_slices", None):
        raise UserInputError(
            "--unlabelled images have no neighbour slices for a --context-slices model; leave "
            "--unlabelled out (pre-training then learns from the training stacks)."
        )
    if isinstance(model, str):
        raise UserInputError(
            f"--pretrain-fraction pre-trains a new model, but --model {args.model} is a "
            "checkpoint to fine-tune; pass --model unet or leave --pretrain-fraction out."
        )
    if getattr(args, "nproc", 1) > 1 or args.resume:
        raise UserInputError(
            "--pretrain-fraction runs in one process on a new run; leave out --nproc/--resume."
        )


def apply(
    args: argparse.Namespace, model: Any, items: list, data: Any
) -> tuple[Any, argparse.Namespace]:
    """Pre-train ``model`` when asked; ``(model, args with the budget left for training)``.

    Raises:
        UserInputError: see :func:`_check` and :func:`~napari_unet.core.training.pretrain.
            check_images` (no images, a channel mismatch).
    """
    if not getattr(args, "pretrain_fraction", 0.0) and not getattr(args, "unlabelled", None):
        return model, args
    _check(args, model)
    import torch

    from napari_unet.cli._progress import PROGRESS
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.core.training.pretrain import PretrainConfig, pretrain

    fraction, left = args.pretrain_fraction, argparse.Namespace(**vars(args))
    if args.minutes:
        budget = {"seconds": 60.0 * args.minutes * fraction}
        left.minutes = args.minutes * (1.0 - fraction)
    else:
        steps = args.steps or TrainConfig().steps
        budget = {"steps": max(1, round(steps * fraction))}
        left.steps = max(1, steps - budget["steps"])
    images = [item.image for item in items]
    if args.unlabelled:
        images += read_unlabelled(args.unlabelled, args.axes)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PretrainConfig(
        **budget, patch=int(data.patch_shape[-1]), batch_size=data.batch_size, seed=args.seed
    )
    PROGRESS.info(
        "pre-training on %d image(s) without their labels (masked-block reconstruction) for %s",
        len(images),
        f"{budget['seconds']:.0f} s" if "seconds" in budget else f"{budget['steps']} steps",
    )
    result = pretrain(model, images, config)
    PROGRESS.info(
        "pre-trained %d steps in %.0f s: reconstruction loss %.4f -> %.4f; the encoder and "
        "decoder are kept, the segmentation head trains now",
        result.steps,
        result.seconds,
        result.first_loss,
        result.last_loss,
    )
    return model, left
