"""A start model with fewer classes than the labels: fine-tune it with a new, wider head.

:func:`classes_needed` tells from the annotated slices whether the start model's head is too
narrow; :func:`widen_for_labels` then writes a copy with a new head into the run folder
(:func:`napari_unet.core.checkpoint.widen.widen_classes`: encoder and decoder kept) and the trainer
fine-tunes that copy. The start model's own file is never changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def classes_needed(slices: Sequence[Any], info: Any) -> int | None:
    """Classes a new head needs when the annotated labels use more than the start model has.

    Semantic labels with a class id >= a semantic model's class count, or more than one class on
    a binary model, need a wider head (:func:`widen_for_labels`); None when the model fits (or its
    head cannot grow: instance and restoration models have fixed outputs).
    """
    if info.task not in ("binary", "semantic"):
        return None
    top = 0
    for item in slices:
        if item.task not in (None, "semantic") or not np.any(item.annotated_mask):
            continue
        values = np.asarray(item.labels)[np.asarray(item.annotated_mask, bool)]
        top = max(top, int(values.max()) if values.size else 0)
    has = 2 if info.task == "binary" else int(info.out_channels)
    return top + 1 if top >= has else None


def widen_for_labels(slices: Sequence[Any], info: Any, start: Path, run_dir: Path) -> Any:
    """``(path, info)`` of a start model with a head wide enough for ``slices``, or None.

    The widened copy goes into ``run_dir`` (the start model's file is left as it is).
    """
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.checkpoint.widen import widen_classes

    n_classes = classes_needed(slices, info)
    if n_classes is None:
        return None
    logger.info("labels use %d classes: the start model gets a new head", n_classes)
    path = widen_classes(start, n_classes, Path(run_dir) / f"start-{n_classes}-classes.pt")
    return path, read_checkpoint_info(path)


def fit_channels(
    items: Sequence[Any], info: Any, start: Path, run_dir: Path
) -> tuple[list, Any, str]:
    """``(items, adapted, note)``: the normalised items fitted to the start model's channels.

    Greyscale images stored as RGB (equal channels) keep one channel for a one-channel model;
    images with another channel count (one-channel model on RGB, or back) get a copy of the start
    model with an adapted first convolution in ``run_dir``: ``adapted`` is its ``(path, info)``
    (None when the start model is kept). The start model's own file is left as it is. ``note``
    says in one line what was done ("" when nothing was).

    Raises:
        ChannelMismatchError: the images' channels cannot be fitted to the start model.
    """
    from napari_unet.core.checkpoint.channels import adapt_channels, collapse_grey, plan_channels
    from napari_unet.core.checkpoint.format import read_checkpoint_info

    plan = plan_channels([item.image for item in items], int(info.in_channels))
    if plan == "same":
        return list(items), None, ""
    if plan == "grey":
        note = "greyscale images stored as RGB: one channel used, as the model takes one"
        logger.info("%s", note)
        return collapse_grey(items), None, note
    channels = int(items[0].image.shape[0])
    path = adapt_channels(start, channels, Path(run_dir) / f"start-{channels}-channels.pt")
    note = (
        f"the start model takes {info.in_channels} channel(s), the images {channels}: its first "
        "layer was adapted (the model file itself is unchanged)"
    )
    return list(items), (path, read_checkpoint_info(path)), note
