"""A start model fitted to the training data: the one place ``train``, ``simulate`` and the
Fine-tune trainer make a checkpoint fit the images and labels they fine-tune it on.

:func:`fit_start` widens the head when the labels use more classes than the model has
(:func:`~napari_unet.core.checkpoint.widen.widen_classes`), and fits the channels
(:func:`~napari_unet.core.checkpoint.channels.plan_channels`): greyscale stored as RGB keeps one
channel for a one-channel model; other counts get a copy with an adapted first convolution
(:func:`~napari_unet.core.checkpoint.channels.adapt_channels`). Each changed model is a new
checkpoint in ``folder``; the start model's own file is never changed. The result says in one
line what was done.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["FittedStart", "classes_needed", "fit_start"]


@dataclasses.dataclass(frozen=True)
class FittedStart:
    """A start model fitted to its training data.

    Attributes:
        path: the checkpoint to fine-tune: the start model's own file, or a copy in ``folder``.
        info: its :class:`~napari_unet.core.checkpoint.format.CheckpointInfo`.
        items: the training items as the model takes them (greyscale RGB: one channel).
        note: what was done, in one line ("" when nothing was).
        written: the copies written into ``folder`` (the last one is ``path``).
        channels_adapted: the first convolution was adapted to another channel count.
    """

    path: Path
    info: Any
    items: list[Any]
    note: str = ""
    written: tuple[Path, ...] = ()
    channels_adapted: bool = False


def classes_needed(
    items: Sequence[Any],
    info: Any,
    *,
    task: str = "semantic",
    label_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
) -> int | None:
    """Classes a new head needs when the annotated labels use more than the start model has.

    Args:
        items: anything with ``labels`` ``(*spatial)`` and ``annotated_mask`` (None: all).
        info: the start model's checkpoint info.
        task: how the labels are read; only ``semantic`` labels (class ids) can ask for more.
        label_map, ignore_value: raw value mapping and the value to leave out.

    Returns:
        The class count of the new head (the largest class id + 1), or None when the model
        fits or its head cannot grow (instance and restoration models have fixed outputs).
    """
    if task != "semantic" or info.task not in ("binary", "semantic"):
        return None
    top = 0
    for item in items:
        labels = np.asarray(item.labels)
        mask = item.annotated_mask
        values = labels if mask is None else labels[np.asarray(mask, bool)]
        if ignore_value is not None:
            values = values[values != ignore_value]
        for value in np.unique(values).tolist():
            top = max(top, int(label_map.get(int(value), value) if label_map else value))
    has = 2 if info.task == "binary" else int(info.out_channels)
    return top + 1 if top >= has else None


def fit_start(
    path: str | Path,
    items: Sequence[Any],
    folder: str | Path,
    *,
    task: str = "semantic",
    label_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
    class_items: Sequence[Any] | None = None,
) -> FittedStart:
    """Fit the checkpoint ``path`` to ``items``: a wider head, then the channels.

    Args:
        path: the start checkpoint (never changed).
        items: training items (``image`` ``(C, *spatial)``, labels, annotated masks).
        folder: where the fitted copies go (created when one is written).
        task, label_map, ignore_value: how the labels are read (:func:`classes_needed`).
        class_items: the items whose labels decide the classes (default: ``items``).

    Raises:
        ChannelMismatchError: the channels cannot be fitted (the sentence says what to do).
    """
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.checkpoint.widen import widen_classes

    path, folder = Path(path), Path(folder)
    info, written, notes = read_checkpoint_info(path), [], []
    needed = classes_needed(
        items if class_items is None else class_items,
        info,
        task=task,
        label_map=label_map,
        ignore_value=ignore_value,
    )
    if needed is not None:
        folder.mkdir(parents=True, exist_ok=True)
        has = 2 if info.task == "binary" else int(info.out_channels)
        notes.append(
            f"the labels use {needed} classes and the start model has {has}: it is fine-tuned "
            "with a new head"
        )
        path = widen_classes(path, needed, folder / f"start-{needed}-classes.pt")
        info = read_checkpoint_info(path)
        written.append(path)
    fitted = _fit_channels(path, info, items, folder)
    written += [fitted.path] if fitted.channels_adapted else []
    notes += [fitted.note] if fitted.note else []
    unchanged = " (the model file itself is not changed)" if written else ""
    return dataclasses.replace(fitted, note="; ".join(notes) + unchanged, written=tuple(written))


def _fit_channels(path: Path, info: Any, items: Sequence[Any], folder: Path) -> FittedStart:
    """The channels of model and images fitted (``written`` left to the caller)."""
    from napari_unet.core.checkpoint.channels import adapt_channels, collapse_grey, plan_channels
    from napari_unet.core.checkpoint.format import read_checkpoint_info

    plan = plan_channels([item.image for item in items], int(info.in_channels))
    if plan == "same":
        return FittedStart(path, info, list(items))
    if plan == "grey":
        note = "greyscale images stored as RGB: one channel is used, as the start model takes one"
        return FittedStart(path, info, collapse_grey(items), note)
    channels = int(items[0].image.shape[0])
    folder.mkdir(parents=True, exist_ok=True)
    adapted = adapt_channels(path, channels, folder / f"start-{channels}-channels.pt")
    note = (
        f"the start model takes {info.in_channels} channel(s) and the images have {channels}: "
        "its first layer is adapted"
    )
    return FittedStart(
        adapted, read_checkpoint_info(adapted), list(items), note, channels_adapted=True
    )
