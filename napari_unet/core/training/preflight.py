"""Bad training input, refused before the first step with one sentence (issue 17).

:func:`preflight` is the one check that ``train``, ``simulate`` and the Fine-tune dock's trainer run
on their training items before training starts: too few annotated pixels, one class only, labels
that do not match the task (a single id covering many separate objects for an instance model,
class ids beyond the model's classes) and a patch absurdly larger than the images. Each failure is a
:class:`~napari_unet.core.errors.TrainingDataError` whose message says what is wrong and what to
do: never a silent bad model. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_unet.core.errors import TrainingDataError

__all__ = ["MIN_ANNOTATED_PIXELS", "PATCH_TO_IMAGE_LIMIT", "preflight"]

#: Fewer annotated pixels than this (a 10x10 square) cannot teach a model anything.
MIN_ANNOTATED_PIXELS = 100
#: An explicit patch this many times (or more) wider than the widest image is refused.
PATCH_TO_IMAGE_LIMIT = 20


def preflight(
    items: Sequence[Any],
    *,
    task: str,
    n_classes: int | None = None,
    label_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
    patch_shape: tuple[int, int] | None = None,
    where: str = "the labels",
) -> None:
    """Refuse training data that would give a bad model, saying what to do.

    Args:
        items: training items: ``image`` (C, Y, X), ``labels`` (Y, X), ``mask`` (Y, X) bool,
            ``name``.
        task: ``binary``, ``semantic``, ``instances`` or ``restoration``.
        n_classes: the model's classes (semantic: a fine-tuned model's output channels).
        label_map, ignore_value: how raw label values become classes (semantic).
        patch_shape: an explicitly chosen patch (output window); None skips the size check.
        where: how to name the labels in a message (``"the labels"``, ``"the corrections"``).

    Raises:
        TrainingDataError: the first problem found, as one sentence.
    """
    from napari_unet.core.training.context import originals
    from napari_unet.core.training.items import check_item

    for item in items:  # malformed items (shapes, dtypes, NaN) first: their own sentence
        check_item(item, task)
    items = originals(list(items))  # a 2.5-D flat copy is the same annotation: counted once
    if patch_shape is not None:
        _check_patch(items, patch_shape)
    annotated = sum(int(np.count_nonzero(item.mask)) for item in items)
    if annotated < MIN_ANNOTATED_PIXELS:
        raise TrainingDataError(
            f"only {annotated} pixel(s) of {where} are annotated, too few to learn from; annotate "
            f"at least {MIN_ANNOTATED_PIXELS} pixels (with objects and background) before "
            "training."
        )
    if task == "restoration":
        return
    classes = annotated_classes(items, task, label_map, ignore_value)
    if n_classes is not None and task == "semantic" and classes and max(classes) >= n_classes:
        top = max(classes)
        raise TrainingDataError(
            f"{where} use class {top} but the model knows only {n_classes} classes "
            f"(0-{n_classes - 1}); relabel with those classes, map them with a label map, or "
            f"start from a model with at least {top + 1} classes."
        )
    if len(classes) < 2:
        only = next(iter(classes), 0)
        what = {0: "background"}.get(only, f"class {only}" if task == "semantic" else "foreground")
        raise TrainingDataError(
            f"Only {what} is annotated in {where}, so there is nothing to tell apart; annotate "
            "regions that hold both objects and background (or the missing class) before "
            "training."
        )
    if task == "instances":
        _check_instances(items, where)


def _check_patch(items: Sequence[Any], patch_shape: tuple[int, int]) -> None:
    """An explicit patch 20x (or more) wider than an image: refused (it would train on padding)."""
    for item in items:
        side = max(int(s) for s in np.shape(item.image)[-2:])
        if side * PATCH_TO_IMAGE_LIMIT <= max(patch_shape):
            raise TrainingDataError(
                f"the patch ({patch_shape[0]}x{patch_shape[1]} px) is {max(patch_shape) // side}x "
                f"wider than image {item.name!r} ({side} px), so training would see almost only "
                "padding; give a patch about the size of the images, or leave the patch out to "
                "have it chosen from the data."
            )


def annotated_classes(
    items: Sequence[Any], task: str, label_map: dict[int, int] | None, ignore_value: int | None
) -> set[int]:
    """Class ids present in the annotated pixels (foreground = 1 for binary/instances)."""
    classes: set[int] = set()
    for item in items:
        labels = np.asarray(item.labels)
        mask = np.asarray(item.mask, bool)
        if ignore_value is not None:
            mask = mask & (labels != ignore_value)
        values = np.unique(labels[mask]).astype(np.int64)
        if label_map:
            values = np.array([label_map.get(int(v), int(v)) for v in values], dtype=np.int64)
        classes |= {int(v) for v in values} if task == "semantic" else {int(v > 0) for v in values}
    return classes


def _check_instances(items: Sequence[Any], where: str) -> None:
    """Instance labels need one id per object: one id per image over many blobs is a mask."""
    from scipy import ndimage

    blobs = 0
    for item in items[:32]:  # enough images to tell; huge folders are not scanned whole
        labels = np.asarray(item.labels)
        ids = np.unique(labels[np.asarray(item.mask, bool) & (labels > 0)])
        if ids.size > 1:
            return
        if ids.size == 1:
            structure = np.ones((3,) * labels.ndim)
            blobs = max(blobs, ndimage.label(labels == ids[0], structure=structure)[1])
    if blobs > 1:
        raise TrainingDataError(
            f"{where} hold a single id per image covering {blobs} separate objects, like a "
            "foreground mask, not instance labels; give each object its own id, or "
            "train a binary (foreground) model."
        )
