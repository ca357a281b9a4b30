"""Scoring labels against ground truth: metrics, instance matching, folders."""

from __future__ import annotations

from napari_unet.core.evaluation.instances import (
    Matching,
    OverlapTable,
    average_precision,
    match_table,
    matching,
    matching_at,
    overlap_table,
)
from napari_unet.core.evaluation.metrics import (
    best_threshold,
    confusion_matrix,
    dice,
    dice_per_class,
    em_region_scores,
    iou,
    iou_per_class,
    pixel_error,
    pixel_error_fraction,
    rand_error,
    rand_scores,
    variation_of_information,
    vi_split_merge,
)
from napari_unet.core.evaluation.score import (
    AP_THRESHOLDS,
    EVALUATE_TASKS,
    PRED_SUFFIXES,
    EvaluateProgress,
    evaluate_folders,
    evaluate_pair,
    iter_evaluate_folders,
    pair_files,
)

__all__ = [
    "AP_THRESHOLDS",
    "EVALUATE_TASKS",
    "PRED_SUFFIXES",
    "EvaluateProgress",
    "Matching",
    "OverlapTable",
    "average_precision",
    "best_threshold",
    "confusion_matrix",
    "dice",
    "dice_per_class",
    "em_region_scores",
    "evaluate_folders",
    "evaluate_pair",
    "iou",
    "iou_per_class",
    "iter_evaluate_folders",
    "match_table",
    "matching",
    "matching_at",
    "overlap_table",
    "pair_files",
    "pixel_error",
    "pixel_error_fraction",
    "rand_error",
    "rand_scores",
    "variation_of_information",
    "vi_split_merge",
]
