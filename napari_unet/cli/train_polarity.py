"""``train --invert auto|yes|no``: the images' intensities flipped for the start model when it
sees the corrected pixels better that way (:mod:`napari_unet.core.training.polarity`)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)

CHOICES = ("auto", "yes", "no")
HELP = (
    "flip the images' intensities (dark objects <-> bright objects) for a start model trained "
    "the other way up, e.g. fluo-nuclei on stained bright-field nuclei: auto (default) scores the "
    "start model on your corrected pixels both ways and flips when that scores higher; the "
    "choice is stored in the model, so predict flips too. A new model learns either way: no flip"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--invert``."""
    parser.add_argument("--invert", choices=CHOICES, default="auto", help=HELP)


def apply(
    args: argparse.Namespace, info: Any, start: Any, items: list, config: Any
) -> tuple[list, Any]:
    """``(items, config)``, flipped (``config.normalization.invert`` toggled) when the start
    model (a checkpoint being fine-tuned: ``info`` not None) is to see the images the other way
    up; a resumed run keeps the choice stored in its ``latest.pt``."""
    from napari_unet.cli._progress import PROGRESS
    from napari_unet.core.training.polarity import choose_polarity, flipped, stored_invert

    choice = getattr(args, "invert", "auto")
    if info is None or config.task == "restoration" or choice == "no":
        if choice == "yes":  # asked for, but there is nothing to flip for: say so
            logger.warning(
                "--invert yes is ignored: it flips the images for a start checkpoint (--model "
                "CHECKPOINT or a built-in), and %s",
                "restoration targets are images too" if info else "a new model learns either way",
            )
        return items, config
    stored = bool(config.normalization and config.normalization.invert)
    if args.resume is not None:
        flip = stored_invert(args.resume) != stored
    elif choice == "yes":
        flip = True
    else:
        from napari_unet.core.checkpoint.format import load_checkpoint

        verdict = choose_polarity(load_checkpoint(start).model, items, config)
        if verdict.invert:  # said once; kept as they are: only with -v
            PROGRESS.info("%s", verdict.line())
        flip = verdict.invert
    if not flip:
        return items, config
    items, normalization = flipped(items, config.normalization)
    return items, config.replace(normalization=normalization)
