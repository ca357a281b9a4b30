"""The training and validation patch pools of a run, and how queued items join them.

- :func:`targets_function`: ``(labels, annotated_mask) -> (classes, weights)`` for the sampler.
- :func:`build_pools`: the training and validation :class:`PatchSampler` of a model (2-D images or
  3-D volumes, the patch shape checked against the model).
- :func:`drain_new_items`: continuous learning, items queued while training runs.
"""

from __future__ import annotations

import functools
import logging
import queue

import numpy as np

from napari_unet.core.errors import ChannelMismatchError, TrainingDataError
from napari_unet.core.models import SegmentationNet
from napari_unet.core.training.sampler import PatchSampler
from napari_unet.core.training.scaled_pool import ScaledPatchSampler, pool_scale
from napari_unet.core.training.split import split_validation
from napari_unet.core.training.targets import IGNORE_INDEX, TargetConfig, make_targets

logger = logging.getLogger(__name__)


def targets_function(config: TargetConfig, task: str, out_channels: int):
    """``targets_fn(labels, annotated_mask) -> (classes, weights)`` for :class:`PatchSampler`.

    Restoration targets are the target images themselves (float32 (C', Y, X)), weighted 1 where
    annotated. An item with nothing annotated (e.g. all of it held back for validation) gives
    all-ignored targets.
    """
    n_classes = out_channels if task == "semantic" else None
    config = config.replace(task=task, n_classes=n_classes)

    def targets_fn(labels: np.ndarray, annotated_mask: np.ndarray):
        if task == "restoration":
            target = np.asarray(labels, dtype=np.float32)
            return (target if target.ndim == 3 else target[None]), annotated_mask.astype(np.float32)
        if not annotated_mask.any():
            shape = annotated_mask.shape
            return np.full(shape, IGNORE_INDEX, np.int64), np.zeros(shape, np.float32)
        targets = make_targets(labels, annotated_mask, config=config)
        return targets.classes, targets.weights

    return targets_fn


def drain_new_items(new_items, sampler, validation, config) -> None:
    """Move queued items into the training and validation pools (continuous learning)."""
    if new_items is None:
        return
    while True:
        try:
            item = new_items.get_nowait()
        except queue.Empty:
            return
        train_part, val_part = split_validation(
            [item], config.val_fraction, tile=config.val_tile, seed=config.seed, at_least_one=False
        )
        sampler.add_item(train_part[0])
        for held in val_part:
            validation.add_item(held, check=False)
        logger.info("added %r to the training pool", item.name)


def build_pools(model: SegmentationNet, items, val_items, config) -> tuple:
    """Training and validation samplers for ``model``; returns ``(train, validation, input)``.

    ``input`` is the model's input shape at full resolution; the pools of a model that sees the
    images ``k`` times smaller hold them ``k`` times smaller and crop ``input / k``
    (:mod:`~napari_unet.core.training.scaled_pool`).

    Raises:
        ChannelMismatchError: an image has a different channel count than the model.
        TrainingDataError: the training annotation is unusable.
    """
    for item in [*items, *(val_items or ())]:
        if item.image.shape[0] != model.in_channels:
            raise ChannelMismatchError(
                f"the model expects {model.in_channels} input channel(s) but image "
                f"{item.name!r} has {item.image.shape[0]}; pick the matching channel axis or a "
                "model made for this many channels."
            )
    # padded nets: at least 2x2 pixels at the bottom, or BatchNorm sees one value per channel
    multiples = model.size_multiples if model.margin == 0 else (0,) * len(config.patch_shape)
    if len(multiples) != len(config.patch_shape):
        raise TrainingDataError(
            f"{model.arch} is a {len(multiples)}-D model but the patch shape "
            f"{tuple(config.patch_shape)} has {len(config.patch_shape)} sides; give one side per "
            "spatial axis of the model."
        )
    input_shape = model.valid_input_shape(
        tuple(max(s + 2 * model.margin, 2 * k, 1) for s, k in zip(config.patch_shape, multiples))
    )
    k = pool_scale(model)  # a net seeing the images k times smaller: the pools are k x smaller
    geometry = {
        "input_shape": tuple(s // k for s in input_shape),
        "output_shape": tuple(s // k for s in model.output_shape(input_shape)),
        "task": config.task,
        "seed": config.seed,
    }
    ignore = config.targets.ignore_value
    pool = (
        functools.partial(ScaledPatchSampler, shrink=k, ignore_value=ignore)
        if k > 1
        else PatchSampler
    )
    targets_fn = targets_function(config.targets, config.task, model.out_channels)
    if val_items is None:
        train_items, val_items = split_validation(
            items, config.val_fraction, tile=config.val_tile, seed=config.seed
        )
    else:
        train_items, val_items = list(items), list(val_items)
    sampler = pool(targets_fn, items=train_items, **geometry)
    validation = pool(targets_fn, **geometry)
    for item in val_items:
        validation.add_item(item, check=False)
    return sampler, validation, input_shape
