"""Pixel metrics: per-class overlap from one confusion matrix, foreground IoU/Dice, pixel error.

Numpy, any number of spatial dimensions. Re-exported by :mod:`napari_unet.core.evaluation.metrics`,
whose docstring explains which pixel error is which.
"""

from __future__ import annotations

import numpy as np


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
