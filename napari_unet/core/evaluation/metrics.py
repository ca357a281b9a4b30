"""Segmentation metrics: per-class overlap, pixel error, Rand error, VI, instance AP, thresholds.

Pixel metrics (numpy, any number of spatial dimensions):

- :func:`iou_per_class` / :func:`dice_per_class` from one confusion matrix (``np.bincount``).
- :func:`iou` / :func:`dice`: the foreground (binary) versions.
- :func:`pixel_error`: ``1 - F1`` of the foreground pixels (for EM the foreground is membrane).
  The ISBI 2012 challenge's own pixel error is the same formula with the *other* class positive:
  its Fiji ``PixelError`` counts label > 0 (white = cell interior) as positive, so apply
  :func:`pixel_error` to the interior masks to compare with the challenge's leaderboard.
  :func:`pixel_error_fraction` is the plain fraction of misclassified pixels; the three differ
  whenever the classes are unbalanced.

Region metrics (scikit-image is the reference implementation):

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
from scipy import ndimage
from skimage.metrics import adapted_rand_error
from skimage.metrics import variation_of_information as _skimage_vi

from napari_unet.core.evaluation.instances import (
    Matching,
    OverlapTable,
    average_precision,
    match_table,
    matching,
    matching_at,
    overlap_table,
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


def _same_shape(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    return pred, truth


def confusion_matrix(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore: int | None = None
) -> np.ndarray:
    """(n_classes, n_classes) int64 pixel counts, rows = true class, columns = predicted class.

    Args:
        pred: (*spatial) integer class ids in ``[0, n_classes)``.
        truth: (*spatial) integer class ids in ``[0, n_classes)``, or ``ignore``.
        n_classes: number of classes K.
        ignore: a true value whose pixels are not counted (e.g. ``IGNORE_INDEX`` or 255).
    """
    pred, truth = _same_shape(pred, truth)
    pred, truth = pred.ravel().astype(np.int64), truth.ravel().astype(np.int64)
    if ignore is not None:
        keep = truth != ignore
        pred, truth = pred[keep], truth[keep]
    for name, a in (("prediction", pred), ("truth", truth)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(
                f"{name} holds class ids outside 0..{n_classes - 1} "
                f"({int(a.min())}..{int(a.max())}); map the labels or pass ignore="
            )
    counts = np.bincount(truth * n_classes + pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def iou_per_class(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore: int | None = None
) -> np.ndarray:
    """(n_classes,) float64 IoU (Jaccard) of each class; NaN for a class absent from both.

    See :func:`confusion_matrix` for the arguments. ``np.nanmean`` gives the mean IoU.
    """
    cm = confusion_matrix(pred, truth, n_classes, ignore)
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def dice_per_class(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore: int | None = None
) -> np.ndarray:
    """(n_classes,) float64 Dice (F1) of each class; NaN for a class absent from both."""
    cm = confusion_matrix(pred, truth, n_classes, ignore)
    inter = np.diag(cm).astype(np.float64)
    total = cm.sum(0) + cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * inter / total, np.nan)


def _fg_counts(pred_fg: np.ndarray, truth_fg: np.ndarray) -> tuple[int, int, int]:
    """(tp, fp, fn) of two foreground masks (anything non-zero is foreground)."""
    pred_fg, truth_fg = _same_shape(pred_fg, truth_fg)
    p, t = pred_fg.astype(bool), truth_fg.astype(bool)
    tp = int(np.count_nonzero(p & t))
    return tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(t)) - tp


def iou(pred_fg: np.ndarray, truth_fg: np.ndarray) -> float:
    """Foreground IoU = TP / (TP + FP + FN); 1.0 when both masks are empty."""
    tp, fp, fn = _fg_counts(pred_fg, truth_fg)
    return tp / (tp + fp + fn) if tp + fp + fn else 1.0


def dice(pred_fg: np.ndarray, truth_fg: np.ndarray) -> float:
    """Foreground Dice = F1 = 2 TP / (2 TP + FP + FN); 1.0 when both masks are empty."""
    tp, fp, fn = _fg_counts(pred_fg, truth_fg)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def pixel_error(pred_fg: np.ndarray, truth_fg: np.ndarray) -> float:
    """Pixel error: ``1 - F1`` of the foreground pixels (``pred_fg``/``truth_fg``: bool masks).

    1 minus the F-score of pixel similarity; it ignores the true negatives, so a mostly-background
    image cannot score well by predicting background. Which class is positive matters: the ISBI
    2012 challenge (Fiji ``trainableSegmentation.metrics.PixelError``) takes label > 0, i.e. the
    white cell interior, so its published pixel errors equal this function on the interior masks
    (``evaluate`` reports both, ``pixel_error`` and ``pixel_error_background``). For the plain
    fraction of wrong pixels use :func:`pixel_error_fraction`.
    """
    return 1.0 - dice(pred_fg, truth_fg)


def pixel_error_fraction(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels whose predicted class (or foreground flag) differs from the truth."""
    pred, truth = _same_shape(pred, truth)
    return float(np.count_nonzero(pred != truth)) / max(pred.size, 1)


def _compact(truth: np.ndarray, pred: np.ndarray, ignore_labels: Sequence[int]):
    """Truth relabelled 1.. (ignored labels -> 0) and pred relabelled 0.., both int64 and small.

    scikit-image indexes a sparse matrix by label value; compact ids keep it small for any ids.
    """
    truth, pred = truth.ravel(), pred.ravel()
    ids, inverse = np.unique(truth, return_inverse=True)
    lookup = np.arange(1, ids.size + 1, dtype=np.int64)
    lookup[np.isin(ids, list(ignore_labels))] = 0
    truth_c = lookup[inverse]
    pred_c = np.unique(pred, return_inverse=True)[1].astype(np.int64)
    return truth_c, pred_c


def rand_scores(
    pred_regions: np.ndarray, truth_regions: np.ndarray, *, ignore_labels: Sequence[int] = (0,)
) -> tuple[float, float, float]:
    """``(error, precision, recall)`` of :func:`rand_error` (scikit-image's return values).

    NaN when no truth pixel is scored or no scored region has two pixels.
    """
    pred, truth = _same_shape(pred_regions, truth_regions)
    truth_c, pred_c = _compact(truth, pred, ignore_labels)
    if not np.any(truth_c):
        return float("nan"), float("nan"), float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        error, precision, recall = adapted_rand_error(truth_c, pred_c, ignore_labels=(0,))
    return float(error), float(precision), float(recall)


def rand_error(
    pred_regions: np.ndarray, truth_regions: np.ndarray, *, ignore_labels: Sequence[int] = (0,)
) -> float:
    """Foreground-restricted adapted Rand error (0 = perfect, 1 = worst), as in ISBI 2012.

    ``1 - F`` of pixel-pair agreement, counted over the pixels whose true label is not in
    ``ignore_labels``; every predicted label (0 included) is a region.

    Args:
        pred_regions: (*spatial) integer region ids.
        truth_regions: (*spatial) integer region ids; 0 (by default) is not scored.
        ignore_labels: true labels whose pixels are not scored.
    """
    return rand_scores(pred_regions, truth_regions, ignore_labels=ignore_labels)[0]


def vi_split_merge(
    pred_regions: np.ndarray, truth_regions: np.ndarray, *, ignore_labels: Sequence[int] = (0,)
) -> tuple[float, float]:
    """``(split, merge)`` = ``(H(pred | truth), H(truth | pred))`` in bits, true pixels in
    ``ignore_labels`` not counted (``skimage.metrics.variation_of_information``)."""
    pred, truth = _same_shape(pred_regions, truth_regions)
    truth_c, pred_c = _compact(truth, pred, ignore_labels)
    if not np.any(truth_c):
        return float("nan"), float("nan")
    split, merge = _skimage_vi(truth_c, pred_c, ignore_labels=(0,))
    return float(split), float(merge)


def variation_of_information(
    pred_regions: np.ndarray, truth_regions: np.ndarray, *, ignore_labels: Sequence[int] = (0,)
) -> float:
    """Variation of information = split + merge entropy (bits); see :func:`vi_split_merge`."""
    return float(sum(vi_split_merge(pred_regions, truth_regions, ignore_labels=ignore_labels)))


def _membrane_mask(pred: np.ndarray, threshold: float) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.dtype == bool:
        return pred
    if np.issubdtype(pred.dtype, np.floating):
        return pred >= threshold
    return pred != 0


def em_region_scores(
    pred_membrane: np.ndarray,
    truth_membrane: np.ndarray,
    *,
    threshold: float = 0.5,
    connectivity: int = 1,
) -> dict[str, float]:
    """Rand error and VI between the regions enclosed by true and predicted membranes.

    Args:
        pred_membrane: (*spatial) membrane probability (float, membrane where ``>= threshold``),
            or a membrane mask (bool, or integers where non-zero = membrane).
        truth_membrane: (*spatial) true membrane mask (non-zero = membrane).
        threshold: probability threshold for a float ``pred_membrane``.
        connectivity: neighbourhood of the connected components (1 = 4-connected in 2D).

    Returns:
        ``rand_error``, ``rand_precision``, ``rand_recall``, ``variation_of_information``,
        ``vi_split``, ``vi_merge``. True membrane pixels are not scored; each predicted membrane
        pixel is its own region.
    """
    pred_m, truth_m = _same_shape(_membrane_mask(pred_membrane, threshold), truth_membrane)
    structure = ndimage.generate_binary_structure(truth_m.ndim, connectivity)
    truth_regions, _ = ndimage.label(truth_m == 0, structure=structure)
    pred_regions, n_pred = ndimage.label(~pred_m, structure=structure)
    pred_regions = pred_regions.astype(np.int64)
    membrane = pred_regions == 0
    pred_regions[membrane] = n_pred + 1 + np.arange(np.count_nonzero(membrane))
    error, precision, recall = rand_scores(pred_regions, truth_regions)
    split, merge = vi_split_merge(pred_regions, truth_regions)
    return {
        "rand_error": error,
        "rand_precision": precision,
        "rand_recall": recall,
        "variation_of_information": split + merge,
        "vi_split": split,
        "vi_merge": merge,
    }


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
