"""Skeleton Recall: a loss term that punishes gaps in thin structures (Kirchhoff et al., ECCV 2024).

A membrane with a one-pixel gap has almost the IoU of a closed one, but the gap merges the two
cells it separates (the Rand error counts that). Skeleton Recall adds the soft recall of the
predicted class probability on the *tubed skeleton* of the true class: the skeleton of each
thin class (one pixel wide, following the structure's centre line) dilated twice by the
cross-shaped element and kept inside the class. A gap anywhere along the skeleton lowers the
recall by its length whatever the structure's thickness, so the term pushes probability onto
every piece of the centre line:

``L = 1 − mean_c (Σ p_c · S_c + s) / (Σ S_c + s)``

over the thin classes ``c`` with skeleton pixels in the batch (sums over the batch and all
pixels, ``S_c`` the tubed skeleton, ``s`` = 1). It is added to the loss with a weight
(:attr:`~napari_unet.core.training.loss_augment_config.LossConfig.skeleton_recall`).

The skeleton is computed on the CPU once per patch and step, from the class targets as they reach
the loss (after augmentation and cropping; as nnU-Net's ``SkeletonTransform`` runs after the
spatial transforms), so it follows every deformation exactly: about 2 ms per 256x256 patch,
against about 2 s per training step on one CPU thread. Ignored pixels
(:data:`~napari_unet.core.training.targets.IGNORE_INDEX`) belong to no class, so they are never
on a skeleton and their logits get no gradient from this term. 2-D (B, H, W) and 3-D
(B, D, H, W) targets (the latter skeletonised per Z slice: :func:`_tube`); 2.5-D models have
2-D targets.

Which classes are thin: with an explicit weight, every foreground class (1..K−1; class 1 of a
binary model), as in the paper. With ``skeleton_recall=None`` (auto; ``train
--skeleton-recall auto``) the term is on, for class 1, only when the training labels are
membrane-like: a binary or 2-class semantic task whose class 1 is thin and encloses regions (the
rule of the membrane operating point,
:func:`~napari_unet.core.training.operating_point_semantic.boundary_like`); see
:func:`resolve_skeleton_recall`. The default is off (0): on ISBI 2012 (K = 3, 2 CPU-minutes,
3 seeds) the term left the Rand error where it was (0.251 ± 0.082 against 0.252 ± 0.051) and
lowered the membrane IoU (0.582 ± 0.032 against 0.605 ± 0.021; docs/learning_ablation.md).

Example:
    >>> classes = np.zeros((1, 9, 9), np.int64); classes[0, 4, :] = 1  # a 1-px membrane
    >>> int(tubed_skeleton(classes, (1,))[0].sum())
    9
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "AUTO_SKELETON_RECALL",
    "SKELETON_ITEMS",
    "membrane_like",
    "resolve_skeleton_recall",
    "skeleton_recall_loss",
    "thin_classes",
    "tubed_skeleton",
]

logger = logging.getLogger(__name__)

#: The weight ``skeleton_recall=None`` (auto) gives membrane-like labels (the paper's 1).
AUTO_SKELETON_RECALL = 1.0
#: Slices of the training labels the auto rule reads (enough to tell; a big pool is not scanned).
SKELETON_ITEMS = 16
#: Dilations of the skeleton by the cross (the paper's "tube": two).
TUBE_DILATIONS = 2


def thin_classes(task: str, channels: int) -> tuple[int, ...]:
    """The classes whose skeleton is recalled: the foreground classes (class 1 when binary)."""
    return (1,) if task == "binary" or channels == 1 else tuple(range(1, channels))


def _tube(mask: np.ndarray) -> np.ndarray:
    """(*spatial) bool: the skeleton of ``mask`` dilated :data:`TUBE_DILATIONS` times, in ``mask``.

    A volume (Z, Y, X) is skeletonised slice by slice: skimage's 3-D thinning reduces a simple
    sheet or rod to nothing (a 4x4x20 rod: 0 pixels), while a gap in a membrane sheet is a gap
    in the centre line of each slice through it."""
    from skimage.morphology import skeletonize

    if not mask.any():
        return mask
    if mask.ndim > 2:
        return np.stack([_tube(plane) for plane in mask])
    skeleton = skeletonize(mask)
    cross = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(skeleton, cross, iterations=TUBE_DILATIONS) & mask


def tubed_skeleton(classes: np.ndarray, classes_to_skeletonize: Sequence[int]) -> np.ndarray:
    """(B, *spatial) int64: class ``c`` on the tubed skeleton of class ``c``, 0 elsewhere.

    Args:
        classes: (B, H, W) or (B, D, H, W) int class targets, ``IGNORE_INDEX`` = ignored
            (binary targets: 0/1).
        classes_to_skeletonize: the thin classes (ids >= 1).
    """
    classes = np.asarray(classes)
    out = np.zeros(classes.shape, np.int64)
    for b, plane in enumerate(classes):
        for c in classes_to_skeletonize:
            out[b][_tube(plane == c)] = c
    return out


def skeleton_recall_loss(
    logits: torch.Tensor, skeleton: torch.Tensor, *, smooth: float = 1.0
) -> torch.Tensor:
    """``1 − mean_c`` soft recall of ``p_c`` on the tubed skeleton of class ``c`` (module docs).

    Args:
        logits: (B, K, *spatial) float (any precision; computed in float32); K = 1: sigmoid.
        skeleton: (B, *spatial) int64 from :func:`tubed_skeleton` (0 = off the skeletons).
        smooth: additive smoothing ``s``.

    Returns:
        float32 scalar in [0, 1]; 0 (still differentiable) when no skeleton pixel is present.
    """
    logits = logits.float()
    if logits.shape[1] == 1:
        probabilities = torch.sigmoid(logits)
    else:
        probabilities = torch.softmax(logits, dim=1)
    recalls = []
    for c in torch.unique(skeleton).tolist():
        if c <= 0:
            continue
        on = skeleton == c
        channel = probabilities[:, 0 if logits.shape[1] == 1 else c]
        hit = torch.where(on, channel, 0.0).sum()
        recalls.append((hit + smooth) / (on.sum() + smooth))
    if not recalls:
        return probabilities.sum() * 0.0
    return 1.0 - torch.stack(recalls).mean()


def skeleton_targets(classes: torch.Tensor, task: str, channels: int) -> torch.Tensor:
    """(B, *spatial) int64 tubed skeletons of ``classes`` (on its device) for the loss."""
    skeleton = tubed_skeleton(classes.detach().cpu().numpy(), thin_classes(task, channels))
    return torch.from_numpy(skeleton).to(classes.device)


def _slices(items: Sequence[Any], targets: Any, task: str) -> tuple[list, list]:
    """Class-1 truths and annotated masks (2-D (y, x), each cut to the box of its annotated
    pixels; a volume gives its Z slices) of the first :data:`SKELETON_ITEMS` slices."""
    from napari_unet.core.training.operating_point_semantic import class_items

    truths, masks = [], []
    for item in class_items(list(items)[:SKELETON_ITEMS], targets, task):
        labels, held = np.asarray(item.labels), np.asarray(item.annotated_mask)
        for truth, mask in zip(
            labels.reshape(-1, *labels.shape[-2:]), held.reshape(-1, *held.shape[-2:])
        ):
            if mask.any() and len(truths) < SKELETON_ITEMS:
                box = ndimage.find_objects(mask.astype(np.int8))[0]
                truths.append(truth[box])
                masks.append(mask[box])
    return truths, masks


def membrane_like(items: Sequence[Any], targets: Any, task: str, channels: int) -> bool:
    """Whether class 1 of the training labels is membrane-like (thin and enclosing regions).

    Only binary and 2-class semantic tasks qualify (never instance labels, whose boundary class
    is made by the targets); the rule is the membrane operating point's
    (:func:`~napari_unet.core.training.operating_point_semantic.boundary_like`: dense labels,
    skeleton >= 10 % of class 1, more enclosed regions than class-1 pieces), on the first
    :data:`SKELETON_ITEMS` slices, each cut to the box of its annotated pixels.

    Args:
        items: training items (labels as the user gave them; ``targets`` maps them).
        targets: the run's ``TargetConfig`` (label map, ignore value) or None.
        task: the training task. channels: the model's output channels.
    """
    from napari_unet.core.training.operating_point_semantic import (
        boundary_like,
        tunable_semantic,
    )

    if not tunable_semantic(task, channels):
        return False
    truths, masks = _slices(items, targets, task)
    return bool(truths) and boundary_like(truths, masks)


def resolve_skeleton_recall(config: Any, items: Sequence[Any], channels: int) -> Any:
    """``config`` (a ``TrainConfig``) with ``loss.skeleton_recall`` decided when it is None (auto):
    :data:`AUTO_SKELETON_RECALL` for membrane-like labels (:func:`membrane_like`), else 0."""
    if config.loss.skeleton_recall is not None or config.task == "restoration":
        return config
    on = membrane_like(items, config.targets, config.task, channels)
    weight = AUTO_SKELETON_RECALL if on else 0.0
    if on:
        logger.info(
            "skeleton recall on (weight %g): class 1 is thin and encloses regions (membranes)",
            weight,
        )
    loss = dataclasses.replace(config.loss, skeleton_recall=weight)
    return dataclasses.replace(config, loss=loss)
