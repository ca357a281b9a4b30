"""Training a U-Net that sees the images ``k`` times smaller on images made ``k`` times smaller.

A model with ``UNetConfig.downscale = k`` averages ``k`` x ``k`` pixels on the way in and resizes
its logits back (:mod:`napari_unet.core.training.downscale`). Trained that way, every step would
crop, augment and score patches ``k`` times wider than what the net sees: on stained nuclei
enlarged 6 times a 10-CPU-minute run made 57 steps at ``k`` = 6 against 160 at ``k`` = 1. As
Cellpose trains on images resized to its diameter, the pools of such a model hold its items shrunk
once (:func:`shrunk_item`: image ``k`` x ``k`` averaged as the net does, labels sampled so
that no correction is lost) and the net runs without its own pooling and resize while it trains
and validates on them (:func:`at_pool_scale`). The targets' pixel settings (boundary width, border
weights, elastic grid) then act at the scale they were chosen for, a step costs what it costs at
``k`` = 1, and the trained weights are the same model's: prediction, the operating point and
exports see the images at full resolution through the model's own pooling and resize.

:class:`ScaledPatchSampler` is the pool: it keeps each original item (:attr:`items`, the
operating point's held-back tiles) next to its shrunk copy (the patches).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from skimage.measure import label as connected_components

from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.sampler import PatchSampler


def pool_scale(model: Any) -> int:
    """``k`` when ``model``'s pools hold its 2-D items ``k`` times smaller, else 1."""
    k = int(getattr(model, "downscale", 1) or 1)
    return k if k > 1 and int(getattr(model, "spatial_dims", 2)) == 2 else 1


@contextlib.contextmanager
def at_pool_scale(model: Any) -> Iterator[None]:
    """Run ``model`` on its pools' shrunk patches: no pooling in, no resize out (a no-op for a
    model at full resolution). Restores the model's own resize on exit, also after an error."""
    if pool_scale(model) == 1 or not model.resize_io:  # at full resolution, or already inside
        yield
        return
    model.resize_io = False
    try:
        yield
    finally:
        del model.resize_io  # back to the class default (True)


def _block_mean(array: np.ndarray, k: int) -> np.ndarray:
    """(..., Y, X) -> (..., ceil(Y/k), ceil(X/k)): k x k block means, edges repeated to fill."""
    y, x = array.shape[-2:]
    pad = [(0, 0)] * (array.ndim - 2) + [(0, -y % k), (0, -x % k)]
    padded = np.pad(array, pad, mode="edge")
    shape = (*padded.shape[:-2], padded.shape[-2] // k, k, padded.shape[-1] // k, k)
    return padded.reshape(shape).mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


def _block_centres(array: np.ndarray, k: int) -> np.ndarray:
    """(..., Y, X) -> (..., ceil(Y/k), ceil(X/k)): the value at each block's centre pixel (the
    last pixel for a block the edge cuts)."""
    y, x = array.shape[-2:]
    rows = np.minimum(np.arange(0, y, k) + k // 2, y - 1)
    cols = np.minimum(np.arange(0, x, k) + k // 2, x - 1)
    return array[..., rows[:, None], cols[None, :]]


def _annotated_blocks(
    labels: np.ndarray, mask: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and annotated mask (Y, X) -> (ceil(Y/k), ceil(X/k)) each, keeping every stroke.

    A block is annotated when any of its pixels is; its label is the centre pixel's when the
    centre is annotated, else that of the annotated pixel nearest the centre. Sampling the
    centres alone would drop a corrected stroke thinner than ``k`` px that falls between them.
    """
    y, x = labels.shape[-2:]
    ys = np.minimum(np.arange(0, y, k)[:, None], y - 1)
    xs = np.minimum(np.arange(0, x, k)[None, :], x - 1)
    chosen = _block_centres(labels, k).copy()
    found = _block_centres(mask, k).copy()
    offsets = sorted(np.ndindex(k, k), key=lambda o: (o[0] - k // 2) ** 2 + (o[1] - k // 2) ** 2)
    for dy, dx in offsets:  # nearest the centre first; a block's first annotated pixel wins
        rows, cols = np.minimum(ys + dy, y - 1), np.minimum(xs + dx, x - 1)
        annotated = mask[rows, cols]
        take = annotated & ~found
        chosen[take] = labels[rows, cols][take]
        found |= annotated
    return chosen, found


def shrunk_item(
    item: TrainingItem, k: int, task: str = "instances", ignore_value: int | None = None
) -> TrainingItem:
    """``item`` ``k`` times smaller: the image (C, Y, X) -> (C, ceil(Y/k), ceil(X/k)) averaged
    as the net's own pooling does; float restoration targets averaged. The name is kept.

    Integer labels lose no correction: instance ids are sampled at the block centres after each
    connected part of an id gets its own (an eraser line that split a cell keeps the halves
    apart, as touching objects, even where the line falls between block centres), and so is the
    annotated mask (a block's edge pixels do not grow an object whose outside is unannotated);
    class labels keep every stroke (:func:`_annotated_blocks`: thin scribbles of a class).
    ``ignore_value`` (``TargetConfig.ignore_value``): raw label pixels that keep that value."""
    if k == 1:
        return item
    labels = np.asarray(item.labels)
    image = _block_mean(np.asarray(item.image, dtype=np.float32), k)
    mask = item.annotated_mask
    centres = None if mask is None else _block_centres(np.asarray(mask), k).copy()
    if np.issubdtype(labels.dtype, np.floating):
        return TrainingItem(image, _block_mean(labels, k), centres, item.name)
    if task == "instances":
        parts = _parts(labels, ignore_value)
        return TrainingItem(image, _block_centres(parts, k).copy(), centres, item.name)
    if mask is None:
        return TrainingItem(image, _block_centres(labels, k).copy(), None, item.name)
    small, small_mask = _annotated_blocks(labels, item.mask, k)
    return TrainingItem(image=image, labels=small, annotated_mask=small_mask, name=item.name)


def _parts(labels: np.ndarray, ignore_value: int | None) -> np.ndarray:
    """(Y, X) int64: each 4-connected part of each instance id its own object (0 stays 0); the
    pixels with a positive ``ignore_value`` keep it (the objects' ids skip it)."""
    parts = connected_components(labels, background=0, connectivity=1).astype(np.int64)
    if ignore_value is not None and ignore_value > 0:
        parts[parts >= ignore_value] += 1
        parts[labels == ignore_value] = ignore_value
    return parts


class ScaledPatchSampler(PatchSampler):
    """A :class:`PatchSampler` whose patches come from its items shrunk ``shrink`` times
    (:func:`shrunk_item`, raw labels equal to ``ignore_value`` kept); ``input_shape``/
    ``output_shape`` are the shrunk net's. :attr:`items` are the items as given (full
    resolution)."""

    def __init__(
        self, targets_fn: Any, *, shrink: int, ignore_value: int | None = None, **kwargs: Any
    ) -> None:
        self.shrink, self.ignore_value = int(shrink), ignore_value
        self._given: dict[int, TrainingItem] = {}  # id(shrunk copy) -> the item as given
        super().__init__(targets_fn, **kwargs)

    def add_item(self, item: TrainingItem, *, check: bool = True) -> None:
        """Add ``item`` shrunk (or replace the item with the same name); thread-safe."""
        shrunk = shrunk_item(item, self.shrink, self.task, self.ignore_value)
        self._given[id(shrunk)] = item
        try:
            super().add_item(shrunk, check=check)
        finally:
            with self._lock:  # forget replaced (or refused) items
                kept = {id(entry.item) for entry in self._entries}
                self._given = {key: value for key, value in self._given.items() if key in kept}

    @property
    def items(self) -> list[TrainingItem]:
        """The items in the pool as given (full resolution), in the order they were added."""
        with self._lock:
            return [self._given.get(id(e.item), e.item) for e in self._entries]
