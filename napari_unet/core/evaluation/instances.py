"""Instance matching and average precision (the DSB2018 / StarDist definitions).

A predicted object matches a true object when their IoU reaches ``thresh``; matching is one-to-one
and maximises the number of matches (then their total IoU). AP at a threshold is
``TP / (TP + FP + FN)`` (what DSB2018 and StarDist call "accuracy"); F1 is
``2TP / (2TP + FP + FN)``.

IoUs come from a sparse overlap table: the pixels where both images are non-zero are reduced to
unique (pred, true) id pairs with one ``np.unique`` over combined int64 keys, and object areas
come from ``np.bincount``, so thousands of objects cost one sort of the overlapping pixels.
For ``thresh > 0.5`` every object has at most one candidate partner (IoU > 0.5 means the partner
covers more than half of the object, and the objects of a label image are disjoint), so the
candidate pairs ARE the optimal matching, found without any search; for ``thresh <= 0.5`` (ties
are possible at exactly 0.5) ``scipy.optimize.linear_sum_assignment`` solves it on the candidate
rows and columns only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Matching:
    """One-to-one matching of predicted and true objects at one IoU threshold.

    Attributes:
        thresh: IoU threshold a pair must reach to match.
        n_pred, n_true: number of predicted / true objects.
        tp, fp, fn: matched pairs, unmatched predictions, unmatched true objects.
        precision: TP / (TP + FP).  recall: TP / (TP + FN).
        accuracy: TP / (TP + FP + FN), the DSB2018 / StarDist "AP" at this threshold.
        f1: 2 TP / (2 TP + FP + FN).
        mean_matched_iou: mean IoU of the matched pairs.
        pairs: (tp, 2) int64 rows (pred id, true id) of the matched objects (original ids).
        pair_iou: (tp,) float64 IoU of each matched pair.

    Ratios with a zero denominator are 0, except that an empty prediction of an empty image
    scores 1 everywhere (nothing to find, nothing found).
    """

    thresh: float
    n_pred: int
    n_true: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    accuracy: float
    f1: float
    mean_matched_iou: float
    pairs: np.ndarray = dataclasses.field(repr=False, compare=False)
    pair_iou: np.ndarray = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class OverlapTable:
    """Sparse overlaps of two instance images (all arrays share the candidate-pair index).

    Attributes:
        pred_ids, true_ids: (P,) and (T,) the object ids present (0 excluded), sorted.
        pair_pred, pair_true: (N,) int64 indices into ``pred_ids`` / ``true_ids`` of each pair of
            objects that overlap.
        iou: (N,) float64 IoU of each overlapping pair.
    """

    pred_ids: np.ndarray
    true_ids: np.ndarray
    pair_pred: np.ndarray
    pair_true: np.ndarray
    iou: np.ndarray


def _check_labels(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    for name, a in (("prediction", pred), ("truth", truth)):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
            raise ValueError(f"{name} must hold integer instance ids, got {a.dtype}")
    return pred, truth


def _object_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted object ids (0 excluded), per-pixel object index (-1 = background), object areas."""
    flat = labels.ravel()
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    low, high = (int(flat.min()), int(flat.max())) if flat.size else (0, 0)
    if low >= 0 and high <= 4 * flat.size + 1024:
        # dense ids (the usual case): counting beats sorting
        counts = np.bincount(flat, minlength=1)
        ids = np.flatnonzero(counts[1:]) + 1
        lookup = np.full(counts.size, -1, dtype=np.int64)
        lookup[ids] = np.arange(ids.size)
        return ids, lookup[flat], counts[ids]
    ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    index = inverse.astype(np.int64).ravel()
    if ids.size and ids[0] == 0:
        index -= 1
        ids, counts = ids[1:], counts[1:]
    else:
        index[flat == 0] = -1
    return ids, index, counts


def overlap_table(pred: np.ndarray, truth: np.ndarray) -> OverlapTable:
    """IoU of every overlapping (predicted, true) object pair; 0 is background in both.

    Args:
        pred: (*spatial) integer instance ids.
        truth: (*spatial) integer instance ids, same shape.
    """
    pred, truth = _check_labels(pred, truth)
    pred_ids, pred_idx, area_pred = _object_index(pred)
    true_ids, true_idx, area_true = _object_index(truth)
    both = (pred_idx >= 0) & (true_idx >= 0)
    keys = pred_idx[both] * true_ids.size + true_idx[both]
    n_keys = pred_ids.size * true_ids.size
    if n_keys <= 4 * keys.size + 1024:
        inter = np.bincount(keys, minlength=n_keys)
        keys = np.flatnonzero(inter)
        inter = inter[keys]
    else:
        keys, inter = np.unique(keys, return_counts=True)
    pair_pred, pair_true = np.divmod(keys, max(true_ids.size, 1))
    union = area_pred[pair_pred] + area_true[pair_true] - inter
    return OverlapTable(pred_ids, true_ids, pair_pred, pair_true, inter / union)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


def _resolve_conflicts(
    rows: np.ndarray, cols: np.ndarray, ious: np.ndarray, n_pred: int, n_true: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one subset of candidate pairs: most matches, then the largest total IoU.

    Pairs whose objects have no other candidate are kept as they are; the Hungarian algorithm
    runs only on the pairs that compete.
    """
    row_deg = np.bincount(rows, minlength=n_pred)
    col_deg = np.bincount(cols, minlength=n_true)
    free = (row_deg[rows] == 1) & (col_deg[cols] == 1)
    if free.all():
        return rows, cols, ious
    r_all, c_all, v_all = rows[~free], cols[~free], ious[~free]
    urows, r = np.unique(r_all, return_inverse=True)
    ucols, c = np.unique(c_all, return_inverse=True)
    # each match is worth 1 plus a bonus < 1/2 in total: more matches always win, then IoU
    cost = np.zeros((urows.size, ucols.size))
    cost[r, c] = -(1.0 + v_all / (2.0 * min(urows.size, ucols.size)))
    ri, ci = linear_sum_assignment(cost)
    keep = cost[ri, ci] < 0
    value = np.zeros((urows.size, ucols.size))
    value[r, c] = v_all
    ri, ci = ri[keep], ci[keep]
    return (
        np.concatenate([rows[free], urows[ri]]),
        np.concatenate([cols[free], ucols[ci]]),
        np.concatenate([ious[free], value[ri, ci]]),
    )


def match_table(table: OverlapTable, thresh: float = 0.5) -> Matching:
    """The optimal one-to-one :class:`Matching` of an :class:`OverlapTable` at ``thresh``."""
    if not 0 < thresh <= 1:
        raise ValueError(f"IoU threshold must be in (0, 1], got {thresh}")
    n_pred, n_true = table.pred_ids.size, table.true_ids.size
    ok = table.iou >= thresh
    rows, cols, ious = table.pair_pred[ok], table.pair_true[ok], table.iou[ok]
    if thresh <= 0.5 and rows.size:
        rows, cols, ious = _resolve_conflicts(rows, cols, ious, n_pred, n_true)
    tp = int(rows.size)
    fp, fn = n_pred - tp, n_true - tp
    if n_pred == 0 and n_true == 0:
        precision = recall = accuracy = f1 = mean_iou = 1.0
    else:
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        accuracy, f1 = _ratio(tp, tp + fp + fn), _ratio(2 * tp, 2 * tp + fp + fn)
        mean_iou = float(ious.mean()) if tp else 0.0
    pairs = np.stack([table.pred_ids[rows], table.true_ids[cols]], axis=1).astype(np.int64)
    return Matching(
        thresh=float(thresh),
        n_pred=int(n_pred),
        n_true=int(n_true),
        tp=tp,
        fp=int(fp),
        fn=int(fn),
        precision=precision,
        recall=recall,
        accuracy=accuracy,
        f1=f1,
        mean_matched_iou=mean_iou,
        pairs=pairs.reshape(-1, 2),
        pair_iou=np.asarray(ious, dtype=np.float64),
    )


def matching(pred: np.ndarray, truth: np.ndarray, thresh: float = 0.5) -> Matching:
    """Optimal one-to-one matching of predicted and true instances at an IoU threshold.

    Args:
        pred: (*spatial) integer instance ids, 0 = background.
        truth: (*spatial) integer instance ids, same shape.
        thresh: IoU a pair must reach (``>=``) to count as a true positive.
    """
    return match_table(overlap_table(pred, truth), thresh)


def matching_at(
    pred: np.ndarray, truth: np.ndarray, thresholds: Sequence[float]
) -> dict[float, Matching]:
    """:class:`Matching` at several thresholds from one overlap table."""
    table = overlap_table(pred, truth)
    return {float(t): match_table(table, t) for t in thresholds}


def average_precision(
    pred: np.ndarray,
    truth: np.ndarray,
    thresholds: Sequence[float] = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2)),
) -> dict[float, float]:
    """AP = TP / (TP + FP + FN) at each IoU threshold (DSB2018 / StarDist definition).

    Args:
        pred: (*spatial) integer instance ids, 0 = background.
        truth: (*spatial) integer instance ids, same shape.
        thresholds: IoU thresholds (default 0.5, 0.55, ..., 0.95).

    Returns:
        ``{threshold: AP}``; the DSB2018 score of an image is the mean of the values.
    """
    return {t: m.accuracy for t, m in matching_at(pred, truth, thresholds).items()}
