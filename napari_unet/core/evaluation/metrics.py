"""Segmentation metrics: per-class overlap, pixel error, Rand error, VI, instance AP, thresholds.

Pixel metrics (:mod:`napari_unet.core.evaluation.pixels`; numpy, any number of spatial dimensions):

- :func:`iou_per_class` / :func:`dice_per_class` from one confusion matrix (``np.bincount``).
- :func:`iou` / :func:`dice`: the foreground (binary) versions.
- :func:`pixel_error`: ``1 - F1`` of the foreground pixels (for EM the foreground is membrane).
  The ISBI 2012 challenge's own pixel error is the same formula with the *other* class positive:
  its Fiji ``PixelError`` counts label > 0 (white = cell interior) as positive, so apply
  :func:`pixel_error` to the interior masks to compare with the challenge's leaderboard.
  :func:`pixel_error_fraction` is the plain fraction of misclassified pixels; the three differ
  whenever the classes are unbalanced.

Region metrics (:mod:`napari_unet.core.evaluation.regions`; scikit-image is the reference):

- :func:`rand_error`: foreground-restricted adapted Rand error (SNEMI3D / ISBI 2012): pixels with
  true label 0 are ignored; ``skimage.metrics.adapted_rand_error``.
- :func:`variation_of_information`: split + merge conditional entropies (bits),
  ``skimage.metrics.variation_of_information``; :func:`vi_split_merge` returns both parts.
- :func:`em_region_scores`: the EM membrane protocol: regions are the connected components of the
  non-membrane pixels; true membrane is ignored; predicted membrane pixels are singletons (as in
  the SNEMI3D reference script, so a thick predicted boundary costs splits, not one giant merge).

Instance metrics (:mod:`napari_unet.core.evaluation.instances`): :func:`matching`,
:func:`average_precision`. :func:`best_threshold` picks a binary threshold on validation data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from napari_unet.core.evaluation.instances import (
    Matching,
    OverlapTable,
    average_precision,
    match_table,
    matching,
    matching_at,
    overlap_table,
)
from napari_unet.core.evaluation.pixels import (
    _same_shape,
    confusion_matrix,
    dice,
    dice_per_class,
    iou,
    iou_per_class,
    pixel_error,
    pixel_error_fraction,
)
from napari_unet.core.evaluation.regions import (
    em_region_scores,
    rand_error,
    rand_scores,
    variation_of_information,
    vi_split_merge,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Matching",
    "OverlapTable",
    "average_precision",
    "best_threshold",
    "confusion_matrix",
    "dice",
    "dice_per_class",
    "em_region_scores",
    "iou",
    "iou_per_class",
    "match_table",
    "matching",
    "matching_at",
    "overlap_table",
    "pixel_error",
    "pixel_error_fraction",
    "rand_error",
    "rand_scores",
    "variation_of_information",
    "vi_split_merge",
]


def best_threshold(
    probabilities: np.ndarray | Sequence[np.ndarray],
    truth_fg: np.ndarray | Sequence[np.ndarray],
    candidates: Sequence[float] = tuple(np.linspace(0.05, 0.95, 19)),
    metric: str = "iou",
) -> tuple[float, float]:
    """The candidate threshold with the best foreground ``metric`` over all given pixels.

    Foreground is ``probabilities >= threshold``. Counts are pooled over every image (one
    dataset-level score), found with one sort of the candidates: each pixel is binned once.

    Args:
        probabilities: (*spatial) float foreground probabilities, or a sequence of such arrays.
        truth_fg: matching true foreground masks (non-zero = foreground).
        candidates: thresholds to try.
        metric: ``"iou"`` or ``"dice"`` (maximised) or ``"pixel_error"`` (1 - F1, minimised).

    Returns:
        ``(threshold, score)``; ties go to the lowest threshold.
    """
    if metric not in ("iou", "dice", "pixel_error"):
        raise ValueError(f"unknown metric {metric!r}; use iou, dice or pixel_error")
    if isinstance(probabilities, np.ndarray):
        probabilities, truth_fg = [probabilities], [truth_fg]
    if len(probabilities) != len(truth_fg):
        raise ValueError("give one truth mask per probability map")
    thresholds = np.sort(np.asarray(candidates, dtype=np.float64))
    if thresholds.size == 0:
        raise ValueError("give at least one candidate threshold")
    fg_hist = np.zeros(thresholds.size + 1, dtype=np.int64)
    bg_hist = np.zeros(thresholds.size + 1, dtype=np.int64)
    for prob, truth in zip(probabilities, truth_fg):
        prob, truth = _same_shape(prob, truth)
        truth = truth.astype(bool)
        # bin b holds values in [t_{b-1}, t_b): a pixel is foreground for thresholds t <= value
        fg_hist += np.bincount(
            np.searchsorted(thresholds, prob[truth], "right"), minlength=thresholds.size + 1
        )
        bg_hist += np.bincount(
            np.searchsorted(thresholds, prob[~truth], "right"), minlength=thresholds.size + 1
        )
    # pixels predicted foreground at threshold i: those in bins > i
    tp = fg_hist.sum() - np.cumsum(fg_hist)[:-1]
    fp = bg_hist.sum() - np.cumsum(bg_hist)[:-1]
    fn = fg_hist.sum() - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "iou":
            score = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 1.0)
        else:
            score = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
    if metric == "pixel_error":
        best = int(np.argmax(score))
        return float(thresholds[best]), float(1.0 - score[best])
    best = int(np.argmax(score))
    return float(thresholds[best]), float(score[best])
