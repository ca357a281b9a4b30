"""The net fitted to the run: the scale the data ask for, the width the budget buys.

``--downscale auto|K``: a 2-D U-Net for instances sees the images ``K`` times smaller when the
corrected objects are far larger than its receptive field (chosen by the dataset fingerprint,
:mod:`napari_unet.core.training.downscale`; a checkpoint is copied with the factor). ``train
--minutes M`` of a new 2-D model: the net's width chosen for the budget on this CPU
(:mod:`napari_unet.core.training.net_width`); the choice is said in one line. ``--base-channels
N`` sets a new model's width instead (the rule is then not applied)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)


def downscale_argument(text: str) -> int | None:
    """``auto`` -> None (chosen from the data), else an integer factor 1-8."""
    if text == "auto":
        return None
    if not text.isdigit() or not 1 <= int(text) <= 8:
        raise argparse.ArgumentTypeError(f"expected auto or an integer 1-8, got {text!r}")
    return int(text)


def add_downscale_argument(parser: argparse.ArgumentParser) -> None:
    """Register ``--downscale`` (``train`` and ``simulate``)."""
    parser.add_argument(
        "--downscale",
        type=downscale_argument,
        default=None,
        metavar="auto|K",
        help="the net sees the images K times smaller (K x K pixels averaged; its output is "
        "resized back): auto (default) = 1, or for instance labels of a U-Net the factor that "
        "brings the median corrected object nearest to 25 px (objects up to 37 px keep 1; "
        "whole cells of 150 px: 6; at most 8)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--base-channels`` and ``--downscale``."""
    from napari_unet.cli._parser import positive_int

    add_downscale_argument(parser)
    parser.add_argument(
        "--base-channels",
        type=positive_int,
        metavar="N",
        help="width of a new model: channels of its first level (default 32; 16 when a "
        "--minutes budget on the CPU would buy fewer than 85 steps of 32)",
    )


def default_model(args: argparse.Namespace) -> str | None:
    """``unet`` when ``--base-channels`` is given without ``--model`` (it sets a new model)."""
    if getattr(args, "base_channels", None) is not None and not args.model:
        return "unet"
    return None


def apply(
    args: argparse.Namespace, info: Any, model: Any, items: list, task: str, targets: Any, data: Any
) -> Any:
    """``model`` seeing the images ``data.downscale`` times smaller, or the same new model built
    :data:`~napari_unet.core.training.net_width.NARROW_BASE` wide when the default would make too
    few steps in ``--minutes``.

    Only a new model of the default width (``--model unet``, 2-D, no ``--resume`` nor
    ``--base-channels``, a time budget, one process, on the CPU) is considered: a checkpoint
    keeps its net, and so do a step budget and a GPU. The pass is timed with ``--threads``
    threads, as the run trains.
    """
    import torch

    from napari_unet.cli._progress import PROGRESS
    from napari_unet.cli.train_setup import new_model, training_folder
    from napari_unet.core.device import get_device
    from napari_unet.core.models.unet import UNetConfig
    from napari_unet.core.training.downscale import downscale_of, with_downscale
    from napari_unet.core.training.net_width import choose_width, width_settings

    current = downscale_of(info.model_config if info is not None else width_settings(model))
    if data.downscale != current:  # the fingerprint's scale (1 for other nets)
        model = with_downscale(model, data.downscale, training_folder(args))
    settings = width_settings(model)
    default = settings.get("base_channels") == UNetConfig.base_channels
    budgeted = args.minutes is not None and args.resume is None
    if getattr(args, "base_channels", None) is not None:  # the user's width stays
        return model
    # --nproc N: every process would time its own pass and could choose another width
    alone = int(getattr(args, "nproc", 1) or 1) == 1
    if info is not None or not (budgeted and alone) or len(data.patch_shape) != 2:
        return model
    if getattr(model, "arch", None) != "unet" or not default:
        return model
    if get_device(args.device).type != "cpu":  # the timing is a CPU's; a GPU run keeps the net
        return model
    margin = int(getattr(model, "margin", 0) or 0)
    shape = tuple(int(s) + 2 * margin for s in data.patch_shape)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(args.threads or threads))  # timed with the run's threads
    try:
        # --pretrain-fraction F: the segmentation training gets the rest of the budget
        budget = (
            float(args.minutes) * 60 * (1.0 - float(getattr(args, "pretrain_fraction", 0) or 0))
        )
        choice = choose_width(model, shape, batch=data.batch_size, budget_s=budget)
    finally:
        torch.set_num_threads(threads)
    if not choice.narrowed:
        return model
    PROGRESS.info("%s", choice.line())
    keep = {k: v for k, v in settings.items() if k not in ("in_channels", "out_channels")}
    narrow = new_model(
        args, items, task, targets, **{**keep, "base_channels": choice.base_channels}
    )
    narrow.context_slices = getattr(model, "context_slices", 0)
    return narrow
