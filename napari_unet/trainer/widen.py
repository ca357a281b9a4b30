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
