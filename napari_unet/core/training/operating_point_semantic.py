"""The operating point of a binary or 2-class semantic model, re-tuned on the held-back tiles.

The sibling of :mod:`napari_unet.core.training.operating_point` (instances) for models whose
labels are class 0 / class 1 (binary: ``p >= threshold``; 2-class semantic: ``p_1 >= threshold``,
see :func:`~napari_unet.core.postprocess.labels.semantic_labels`). The candidates are the class-1
probability threshold x the minimum size of a class-1 piece; what "best" means depends on what
class 1 is, read from the held-back labels:

- **boundary-like** (membranes: thin, and the other pixels fall into more regions than class 1
  has pieces — class 1 encloses them): the lowest adapted Rand error of the regions the predicted
  class 1 encloses (4-connected components of class 0; every class-1 pixel a region of its own, as
  in ISBI 2012), pooled over the tiles. A gap in a membrane merges two cells; only thresholds at
  or below the model's own are tried (tiles under-count merges: :func:`semantic_candidates`).
- **otherwise** (objects, areas): the highest foreground (class-1) IoU, pooled over the tiles
  (intersection and union summed; F1 = 2 IoU / (1 + IoU) picks the same setting).

Rand error needs every pixel of a tile labelled: with sparse annotation (under
:data:`DENSE_FRACTION` of the held-back boxes) the IoU is used. The model's own setting is scored
first and kept on ties.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from napari_unet.core.models import SegmentationNet
    from napari_unet.core.postprocess.config import PostprocessConfig
    from napari_unet.core.training.items import TrainingItem
    from napari_unet.core.training.targets import TargetConfig

logger = logging.getLogger(__name__)

__all__ = [
    "SEMANTIC_THRESHOLDS",
    "SemanticOperatingPoint",
    "boundary_like",
    "choose_semantic_operating_point",
    "class_items",
    "semantic_candidates",
    "tunable_semantic",
]

#: Candidate class-1 thresholds and minimum sizes (pixels); the model's own are always added.
SEMANTIC_THRESHOLDS: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SEMANTIC_MIN_SIZES: tuple[int, ...] = (0, 20)
#: Keys of :class:`PostprocessConfig` the search sets (stored in the checkpoint).
SEMANTIC_KEYS: tuple[str, ...] = ("threshold", "min_size")
#: Thin class 1: skeleton pixels per class-1 pixel at least this (ISBI membranes 0.14-0.20,
#: round nuclei of radius 10 about 0.03).
THIN_FRACTION = 0.1
#: Rand error is used only when at least this fraction of the held-back boxes is annotated.
DENSE_FRACTION = 0.9


def tunable_semantic(task: str, out_channels: int) -> bool:
    """True for the models this module tunes: binary, or semantic with exactly 2 classes."""
    return task == "binary" or (task == "semantic" and out_channels == 2)


@dataclasses.dataclass(frozen=True)
class SemanticOperatingPoint:
    """The chosen class-1 threshold and minimum size, and how they were chosen.

    Attributes:
        config: the chosen :class:`PostprocessConfig` (the model's own when nothing was better).
        metric: ``"rand_error"`` (boundary-like class 1; lower is better) or ``"iou"``.
        score: ``metric`` of ``config`` on the held-back tiles.
        score_before: ``metric`` of the model's own (inherited or default) setting.
        n_tiles: held-back validation tiles scored.
        n_candidates: settings tried.
    """

    config: PostprocessConfig
    metric: str
    score: float
    score_before: float
    n_tiles: int
    n_candidates: int

    @property
    def changed(self) -> bool:
        """True when the chosen setting scores strictly better than the model's own."""
        return _better(self.metric, self.score, self.score_before)

    def settings(self) -> dict[str, Any]:
        """The tuned keys of :attr:`config` (what goes into ``provenance["postprocess"]``)."""
        return {key: getattr(self.config, key) for key in SEMANTIC_KEYS}

    def report(self) -> dict[str, Any]:
        """Plain data for ``provenance["operating_point"]`` (its line:
        :func:`~napari_unet.core.training.operating_point.describe_operating_point`)."""
        return {
            "chosen_on": "held-back validation tiles",
            "metric": (
                "Rand error of the regions class 1 encloses, pooled over the tiles"
                if self.metric == "rand_error"
                else "class-1 IoU pooled over the tiles"
            ),
            "class1": "boundary" if self.metric == "rand_error" else "foreground",
            "n_tiles": self.n_tiles,
            "n_candidates": self.n_candidates,
            self.metric: round(self.score, 4),
            f"{self.metric}_before": round(self.score_before, 4),
            "settings": self.settings(),
        }


def _better(metric: str, score: float, than: float) -> bool:
    return score < than if metric == "rand_error" else score > than


def semantic_candidates(base: PostprocessConfig, boundary: bool = False) -> list[PostprocessConfig]:
    """``base`` first, then every threshold x minimum size (``base``'s values included).

    ``boundary``: only thresholds at or below ``base``'s and ``base``'s minimum size — thicker
    membranes, never thinner. A 128-px tile under-counts the merges a gap causes (on a whole
    slice one gap joins a chain of cells), so its Rand error favours thin, gapped membranes: on
    ISBI test slices cut into 128-px tiles threshold 0.5 scored 0.140 and 0.7 0.183, on the
    whole slices 0.426 and 0.619 (docs/learning_ablation.md).
    """
    grid = (
        [t for t in SEMANTIC_THRESHOLDS if t <= base.threshold] if boundary else SEMANTIC_THRESHOLDS
    )
    thresholds = dict.fromkeys([base.threshold, *grid])
    sizes = dict.fromkeys([base.min_size, *(() if boundary else SEMANTIC_MIN_SIZES)])
    configs = [base]
    for threshold in thresholds:
        for min_size in sizes:
            config = base.replace(threshold=threshold, min_size=min_size)
            if config != base:
                configs.append(config)
    return configs


def boundary_like(
    truths: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    cells: Sequence[np.ndarray] | None = None,
) -> bool:
    """Whether class 1 of the held-back labels separates regions (membranes) (module docs).

    Args:
        truths: per region (y, x) class ids (1 = the class tuned), 0 outside the annotation.
        masks: per region (y, x) bool, the annotated (held-back) pixels.
        cells: per region (y, x) bool, the validation tiles holding them (None: the whole
            boxes); under :data:`DENSE_FRACTION` of them annotated is sparse annotation: False.
    """
    from skimage.morphology import skeletonize

    annotated = sum(int(m.sum()) for m in masks)
    area = sum(int(c.sum()) for c in cells) if cells is not None else sum(m.size for m in masks)
    if not annotated or annotated < DENSE_FRACTION * area:
        return False
    pixels = skeleton = regions = pieces = 0
    eight = np.ones((3, 3), bool)
    for truth, mask in zip(truths, masks):
        inside = (truth == 1) & mask
        pixels += int(inside.sum())
        skeleton += int(skeletonize(inside).sum())
        regions += ndimage.label(~inside & mask)[1]
        pieces += ndimage.label(inside, structure=eight)[1]
    return bool(pixels) and skeleton >= THIN_FRACTION * pixels and regions > pieces


def _cells(pieces, tile: int) -> list[np.ndarray]:
    """Per piece, (y, x) bool: the ``tile`` squares (grid at (0, 0)) that hold a held-back pixel."""
    cells = []
    for _, _, mask, _, box in pieces:
        y0, x0 = box[0].start, box[1].start
        rows = (np.arange(mask.shape[0]) + y0) // tile
        cols = (np.arange(mask.shape[1]) + x0) // tile
        ys, xs = np.nonzero(mask)
        grid = np.zeros((rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1), dtype=bool)
        grid[rows[ys] - rows[0], cols[xs] - cols[0]] = True
        cells.append(grid[np.ix_(rows - rows[0], cols - cols[0])])
    return cells


def _rand_error(preds, truths, masks) -> float:
    """Adapted Rand error of the regions class 1 encloses, pooled over the regions."""
    from napari_unet.core.evaluation.regions import rand_error

    pred_ids, truth_ids, offset, truth_offset = [], [], 0, 0
    for pred, truth, mask in zip(preds, truths, masks):
        regions, n = ndimage.label(pred == 0)
        regions = regions.astype(np.int64)
        membrane = regions == 0
        regions[membrane] = n + 1 + np.arange(np.count_nonzero(membrane))
        true_regions, n_true = ndimage.label((truth == 0) & mask)
        pred_ids.append((regions + offset).ravel())
        truth_ids.append(np.where(true_regions > 0, true_regions + truth_offset, 0).ravel())
        offset += int(regions.max()) + 1
        truth_offset += n_true
    error = rand_error(np.concatenate(pred_ids), np.concatenate(truth_ids))
    return 1.0 if np.isnan(error) else float(error)


def _iou(preds, truths, masks) -> float:
    inter = union = 0
    for pred, truth, mask in zip(preds, truths, masks):
        p, t = (pred == 1) & mask, (truth == 1) & mask
        inter, union = inter + int((p & t).sum()), union + int((p | t).sum())
    return inter / union if union else 1.0


def _score(config: PostprocessConfig, metric: str, pieces, task: str) -> float:
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    preds, truths, masks = [], [], []
    for probabilities, truth, mask, core, _ in pieces:
        labels = labels_from_probabilities(probabilities, task=task, config=config)
        preds.append(np.asarray(labels)[core])
        truths.append(truth)
        masks.append(mask)
    return (_rand_error if metric == "rand_error" else _iou)(preds, truths, masks)


def class_items(
    items: Sequence[TrainingItem], targets: TargetConfig | None, task: str
) -> list[TrainingItem]:
    """``items`` with class-id labels (the raw labels through ``targets``' label map and ignore
    value, as the model was trained) and the ignored pixels out of the annotated mask."""
    from napari_unet.core.errors import TrainingDataError
    from napari_unet.core.training.targets import IGNORE_INDEX, TargetConfig, make_targets

    config = (targets or TargetConfig()).replace(task=task, n_classes=None)
    converted = []
    for item in items:
        try:
            classes = make_targets(item.labels, item.annotated_mask, config=config).classes
        except TrainingDataError:  # every held-back pixel ignored: nothing to score here
            continue
        held = classes != IGNORE_INDEX
        labels = np.where(held, classes, 0).astype(np.int32)
        converted.append(dataclasses.replace(item, labels=labels, annotated_mask=held))
    return converted


def choose_semantic_operating_point(
    model: SegmentationNet,
    val_items: Sequence[TrainingItem],
    *,
    task: str,
    base: PostprocessConfig,
    predict_config: Any,
    tile: int = 128,
    targets: TargetConfig | None = None,
) -> SemanticOperatingPoint | None:
    """The best class-1 threshold and minimum size of ``model`` on the held-back tiles.

    Args:
        model: a trained binary or 2-class semantic model.
        val_items: the held-back items (annotated mask = the validation tiles; labels as the
            user gave them, turned into class ids by ``targets``; 1 = the class tuned).
        task: ``"binary"`` or ``"semantic"``.
        base: the model's own setting; kept unless a candidate scores strictly better.
        predict_config: the ``PredictConfig`` used to predict the tiles.
        tile: the validation tile side (``TrainConfig.val_tile``), for the tile count reported.
        targets: the run's ``TrainConfig.targets`` (label map, ignore value); None: labels are
            class ids already.

    Returns:
        The :class:`SemanticOperatingPoint`, or None when the held-back tiles hold no class-1
        pixel (nothing to tune on).
    """
    from napari_unet.core.training.operating_point import describe_operating_point
    from napari_unet.core.training.operating_point_scoring import _pieces, _tile_count

    pieces = _pieces(model, class_items(val_items, targets, task), predict_config, task=task)
    truths = [truth for _, truth, _, _, _ in pieces]
    masks = [mask for _, _, mask, _, _ in pieces]
    if not any(((t == 1) & m).any() for t, m in zip(truths, masks)):
        logger.info("operating point not tuned: no class-1 pixel in the held-back tiles")
        return None
    metric = "rand_error" if boundary_like(truths, masks, _cells(pieces, tile)) else "iou"
    base = base.replace(output="semantic")
    candidates = semantic_candidates(base, boundary=metric == "rand_error")
    before = _score(base, metric, pieces, task)
    best, best_score = base, before
    for config in candidates[1:]:
        score = _score(config, metric, pieces, task)
        if _better(metric, score, best_score):
            best, best_score = config, score
    n_tiles = _tile_count(pieces, tile)
    point = SemanticOperatingPoint(best, metric, best_score, before, n_tiles, len(candidates))
    logger.info("%s", describe_operating_point(point.report()))
    return point
