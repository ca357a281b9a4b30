"""Segmentation losses: the U-Net weighted cross entropy, soft Dice, BCE − log(soft Jaccard).

All losses take raw ``logits`` (B, K, H, W) (any float dtype; the loss is computed in float32)
and ``classes`` (B, H, W) int64 with :data:`~napari_unet.core.training.targets.IGNORE_INDEX` at
pixels that must not be learned: those pixels contribute nothing to any loss, and the gradient of
the loss with respect to their logits is exactly zero. ``K == 1`` means a binary task (sigmoid);
``K >= 2`` a softmax over classes (semantic, instances). Restoration uses
:func:`regression_loss`.

Example:
    >>> loss_fn = SegmentationLoss(LossConfig(ce=1.0, dice=1.0), task="semantic")
    >>> logits = torch.zeros(1, 2, 4, 4); classes = torch.zeros(1, 4, 4, dtype=torch.int64)
    >>> round(float(loss_fn(logits, classes)), 4)  # ln 2 + (1 - 1/9)
    1.582
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from napari_unet.core.config import check_task
from napari_unet.core.training.config import LossConfig
from napari_unet.core.training.skeleton import skeleton_recall_loss, skeleton_targets
from napari_unet.core.training.targets import IGNORE_INDEX

__all__ = [
    "LossConfig",
    "SegmentationLoss",
    "bce_log_jaccard_loss",
    "log_jaccard_loss",
    "regression_loss",
    "soft_dice_loss",
    "weighted_cross_entropy",
]

logger = logging.getLogger(__name__)

_EPS = 1e-12


def _check(logits: torch.Tensor, classes: torch.Tensor, weights: torch.Tensor | None) -> None:
    if logits.dim() < 3 or classes.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} (B, K, H, W) and classes {tuple(classes.shape)} "
            "(B, H, W) do not match; crop the targets to the model's output size"
        )
    if weights is not None and weights.shape != classes.shape:
        raise ValueError(
            f"weights {tuple(weights.shape)} differ from classes {tuple(classes.shape)}"
        )


def weighted_cross_entropy(
    logits: torch.Tensor, classes: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The paper's loss: pixel-wise softmax cross entropy times ``w(x)``, with ignore.

    Normalised by the sum of the weights over the valid pixels, so the value keeps the scale of
    a plain cross entropy whatever ``w0`` is (scaling all weights leaves it unchanged); without
    weights it is the mean over valid pixels. ``K == 1``: binary cross entropy with logits on
    ``classes > 0``, same weighting.

    Args:
        logits: (B, K, H, W) float (any precision).
        classes: (B, H, W) int64, ``IGNORE_INDEX`` = ignored.
        weights: optional (B, H, W) float weights.

    Returns:
        float32 scalar; 0 (still differentiable) when no pixel is valid.
    """
    _check(logits, classes, weights)
    logits = logits.float()
    valid = classes != IGNORE_INDEX
    if logits.shape[1] == 1:
        target = (classes > 0).to(logits.dtype)
        per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="none")
    else:
        per_pixel = F.cross_entropy(logits, classes.where(valid, 0), reduction="none")
    weight = valid.float() if weights is None else torch.where(valid, weights.float(), 0.0)
    per_pixel = torch.where(valid, per_pixel * weight, 0.0)
    return per_pixel.sum() / weight.sum().clamp_min(_EPS)


def _soft_overlaps(
    logits: torch.Tensor, classes: torch.Tensor, include_background: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class soft (intersection, sum of prediction and target) over valid pixels."""
    _check(logits, classes, None)
    logits = logits.float()
    valid = (classes != IGNORE_INDEX).unsqueeze(1)
    if logits.shape[1] == 1:
        probabilities = torch.sigmoid(logits)
        onehot = (classes > 0).unsqueeze(1).float()
    else:
        probabilities = torch.softmax(logits, dim=1)
        onehot = F.one_hot(classes.clamp_min(0), logits.shape[1]).movedim(-1, 1).float()
        if not include_background:
            probabilities, onehot = probabilities[:, 1:], onehot[:, 1:]
    probabilities = torch.where(valid, probabilities, 0.0)
    onehot = torch.where(valid, onehot, 0.0)
    dims = (0, *range(2, logits.dim()))
    intersection = (probabilities * onehot).sum(dims)
    return intersection, probabilities.sum(dims) + onehot.sum(dims)


def _check_task(logits: torch.Tensor, task: str | None) -> None:
    if task is None:
        return
    check_task(task)
    if task == "restoration":
        raise ValueError("restoration has no classes; use regression_loss")
    if (task == "binary") != (logits.shape[1] == 1):
        raise ValueError(f"task {task!r} does not fit logits with {logits.shape[1]} channel(s)")


def soft_dice_loss(
    logits: torch.Tensor,
    classes: torch.Tensor,
    *,
    task: str | None = None,
    smooth: float = 1.0,
    include_background: bool = False,
) -> torch.Tensor:
    """``1 − mean_k Dice_k`` with soft Dice ``(2I + s) / (|P| + |T| + s)`` per class.

    Sums run over the batch and all valid pixels (ignored pixels are excluded from the
    intersection and from both sums). The mean runs over the foreground classes 1..K−1
    (``include_background`` adds class 0); a binary task (K = 1) uses its single channel.

    Args:
        logits: (B, K, H, W) float. classes: (B, H, W) int64 with ``IGNORE_INDEX``.
        task: optional, checked against K (``binary`` needs K = 1); inferred from K otherwise.
        smooth: additive smoothing ``s``.

    Returns:
        float32 scalar in [0, 1]: 0 for a perfect prediction.
    """
    _check_task(logits, task)
    intersection, total = _soft_overlaps(logits, classes, include_background)
    dice = (2.0 * intersection + smooth) / (total + smooth).clamp_min(_EPS)
    return 1.0 - dice.mean()


def log_jaccard_loss(
    logits: torch.Tensor,
    classes: torch.Tensor,
    *,
    smooth: float = 1.0,
    include_background: bool = False,
) -> torch.Tensor:
    """``−mean_k log J_k`` with soft Jaccard ``J = (I + s) / (|P| + |T| − I + s)``, ignore-aware.

    Same conventions as :func:`soft_dice_loss`. Returns a float32 scalar >= 0.
    """
    intersection, total = _soft_overlaps(logits, classes, include_background)
    jaccard = (intersection + smooth) / (total - intersection + smooth).clamp_min(_EPS)
    return -torch.log(jaccard.clamp_min(_EPS)).mean()


def bce_log_jaccard_loss(
    logits: torch.Tensor,
    classes: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    smooth: float = 1.0,
) -> torch.Tensor:
    """TernausNet's ``L = BCE − log J`` (cross entropy and per-class Jaccard for K >= 2)."""
    return weighted_cross_entropy(logits, classes, weights) + log_jaccard_loss(
        logits, classes, smooth=smooth
    )


def regression_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    kind: str = "l1",
) -> torch.Tensor:
    """L1 or MSE between a restored image and its target, optionally masked/weighted.

    Args:
        prediction, target: (B, C, H, W) float, same shape.
        mask: optional (B, H, W) or (B, C, H, W) weights (bool or float); 0 = ignored. The
            loss is the weighted mean over the masked elements.
        kind: ``"l1"`` or ``"mse"``.

    Returns:
        float32 scalar.
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ"
        )
    difference = prediction.float() - target.float()
    if kind == "l1":
        error = difference.abs()
    elif kind == "mse":
        error = difference.square()
    else:
        raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
    if mask is None:
        return error.mean()
    weight = mask.float()
    if weight.dim() == error.dim() - 1:
        weight = weight.unsqueeze(1)
    weight = weight.expand_as(error)
    error = torch.where(weight > 0, error * weight, 0.0)
    return error.sum() / weight.sum().clamp_min(_EPS)


class SegmentationLoss(nn.Module):
    """The configured weighted sum of losses, with deep supervision.

    Call with ``(logits, classes, weights=None)``: ``logits`` is a (B, K, H, W) tensor or a list
    of them (one per supervised UNet++ head, all full size); the result is the weighted mean
    of the heads' losses (``LossConfig.deep_supervision_weights``, default equal). For
    ``task="restoration"``, ``classes`` is the target image (B, C, H, W) and ``weights`` an
    optional mask. ``config.skeleton_recall`` > 0 adds the Skeleton Recall term
    (:mod:`~napari_unet.core.training.skeleton`, skeletons computed once per call); None
    (auto, not yet decided from the data, as a run does when it starts:
    :func:`~napari_unet.core.training.skeleton.resolve_skeleton_recall`) counts as 0.

    Args:
        config: term weights (default :class:`LossConfig`).
        task: one of ``binary`` (K = 1), ``semantic`` (K >= 2), ``instances`` (K = 3),
            ``restoration``.
    """

    def __init__(self, config: LossConfig | None = None, task: str = "semantic") -> None:
        super().__init__()
        self.config = config or LossConfig()
        self.task = check_task(task)

    def forward(
        self,
        logits: torch.Tensor | Sequence[torch.Tensor],
        classes: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scalar float32 loss (see the class docstring)."""
        heads = [logits] if isinstance(logits, torch.Tensor) else list(logits)
        skeleton = None  # the tubed skeletons of the targets, once for all heads
        if self.task != "restoration" and self.config.skeleton_recall:
            skeleton = skeleton_targets(classes, self.task, heads[0].shape[1])
        if len(heads) == 1:
            return self._single(heads[0], classes, weights, skeleton)
        head_weights = self.config.deep_supervision_weights or (1.0,) * len(heads)
        if len(head_weights) != len(heads):
            raise ValueError(
                f"{len(heads)} supervised heads but {len(head_weights)} deep_supervision_weights"
            )
        total = sum(
            w * self._single(head, classes, weights, skeleton)
            for w, head in zip(head_weights, heads)
            if w > 0
        )
        return total / sum(head_weights)

    def _single(
        self,
        logits: torch.Tensor,
        classes: torch.Tensor,
        weights: torch.Tensor | None,
        skeleton: torch.Tensor | None = None,
    ) -> torch.Tensor:
        config = self.config
        if self.task == "restoration":
            return regression_loss(logits, classes, weights, kind=config.regression)
        channels = logits.shape[1]
        expected = {"binary": channels == 1, "instances": channels == 3}.get(
            self.task, channels >= 2
        )
        if not expected:
            raise ValueError(f"task {self.task!r} does not fit logits with {channels} channel(s)")
        total = torch.zeros((), device=logits.device)
        if config.ce:
            ce_weights = weights if config.use_weight_map else None
            total = total + config.ce * weighted_cross_entropy(logits, classes, ce_weights)
        if config.dice:
            dice = soft_dice_loss(logits, classes, smooth=config.smooth)
            total = total + config.dice * dice
        if config.jaccard:
            jaccard = log_jaccard_loss(logits, classes, smooth=config.smooth)
            total = total + config.jaccard * jaccard
        if skeleton is not None:
            recall = skeleton_recall_loss(logits, skeleton, smooth=config.smooth)
            total = total + config.skeleton_recall * recall
        return total
