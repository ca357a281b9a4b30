"""Region metrics: adapted Rand error, variation of information, the EM membrane protocol.

scikit-image is the reference implementation; ids are compacted first so any label ids work.
Re-exported by :mod:`napari_unet.core.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.metrics import adapted_rand_error
from skimage.metrics import variation_of_information as _skimage_vi

from napari_unet.core.evaluation.pixels import _same_shape


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


def _grown(
    regions: np.ndarray, pred_membrane: np.ndarray, membrane: np.ndarray, connectivity: int
) -> np.ndarray:
    """``regions`` (int64, 0 on the membrane) grown over the membrane by a watershed on the
    membrane probability (a float ``pred_membrane``) or the distance to the nearest region."""
    from skimage.segmentation import watershed

    pred = np.asarray(pred_membrane)
    floating = np.issubdtype(pred.dtype, np.floating)
    height = pred.astype(np.float32) if floating else ndimage.distance_transform_edt(membrane)
    return watershed(height, markers=regions, connectivity=connectivity).astype(np.int64)


def em_region_scores(
    pred_membrane: np.ndarray,
    truth_membrane: np.ndarray,
    *,
    threshold: float = 0.5,
    connectivity: int = 1,
    fill_membranes: bool = False,
) -> dict[str, float]:
    """Rand error and VI between the regions enclosed by true and predicted membranes.

    Args:
        pred_membrane: (*spatial) membrane probability (float, membrane where ``>= threshold``),
            or a membrane mask (bool, or integers where non-zero = membrane).
        truth_membrane: (*spatial) true membrane mask (non-zero = membrane).
        threshold: probability threshold for a float ``pred_membrane``.
        connectivity: neighbourhood of the connected components (1 = 4-connected in 2D).
        fill_membranes: grow the regions through the predicted membranes (a watershed on the
            membrane probability, or on the distance to a region for a mask), so every pixel
            joins a region; False: each predicted membrane pixel is a region of its own.

    Returns:
        ``rand_error``, ``rand_precision``, ``rand_recall``, ``variation_of_information``,
        ``vi_split``, ``vi_merge``. True membrane pixels are not scored.
    """
    pred_m, truth_m = _same_shape(_membrane_mask(pred_membrane, threshold), truth_membrane)
    structure = ndimage.generate_binary_structure(truth_m.ndim, connectivity)
    truth_regions, _ = ndimage.label(truth_m == 0, structure=structure)
    pred_regions, n_pred = ndimage.label(~pred_m, structure=structure)
    pred_regions = pred_regions.astype(np.int64)
    if fill_membranes and n_pred:
        pred_regions = _grown(pred_regions, pred_membrane, pred_m, connectivity)
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
