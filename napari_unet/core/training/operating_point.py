"""The operating point re-tuned after training: post-processing chosen on the held-back tiles.

A model trained for minutes on a few corrected images needs other thresholds than its parent
(or the defaults): its instance post-processing is chosen again after every training run.
:func:`choose_operating_point` predicts the held-back validation tiles once (each connected
group of held-back tiles with a margin of context), turns the probabilities into instances with
every candidate setting (foreground threshold x seed threshold x minimum size x what becomes of
foreground no seed reaches) and keeps the one with the best AP@0.5, pooled over the tiles
(TP / (TP + FP + FN) summed over the tiles). The setting the model had (inherited from its parent,
or the defaults) is scored first and kept on ties, so a change needs a strictly better score.

This module tunes instance models (3-class: background, interior, boundary); binary and 2-class
semantic models get a class-1 threshold chosen by Rand error or IoU
(:mod:`~napari_unet.core.training.operating_point_semantic`). Objects cut by a tile border are
scored as the cut pieces in both the prediction and the truth (pixels outside the held-back
tiles are set to 0).
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

logger = logging.getLogger(__name__)

__all__ = [
    "INTERIOR_THRESHOLDS",
    "MAX_REGIONS",
    "MIN_SIZES",
    "THRESHOLDS",
    "OperatingPoint",
    "candidate_configs",
    "choose_operating_point",
    "describe_operating_point",
    "describe_semantic",
]

#: Candidate foreground thresholds, seed (interior) thresholds and minimum sizes (pixels); the
#: model's own values are always added.
THRESHOLDS: tuple[float, ...] = (0.5, 0.7)
INTERIOR_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
MIN_SIZES: tuple[int, ...] = (0, 20)
#: At most this many groups of held-back tiles are predicted (bounds the time after training).
MAX_REGIONS = 16
#: Context in pixels predicted around each group of held-back tiles.
CONTEXT = 32
#: Keys of :class:`PostprocessConfig` the search sets (stored in the checkpoint).
TUNED_KEYS: tuple[str, ...] = ("threshold", "interior_threshold", "min_size", "unseeded")


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """The chosen post-processing and how it was chosen.

    Attributes:
        config: the chosen :class:`PostprocessConfig` (the model's own when nothing was better).
        ap50: pooled AP@0.5 of ``config`` on the held-back tiles.
        ap50_before: pooled AP@0.5 of the model's own (inherited or default) setting.
        n_tiles: held-back validation tiles (``val_tile`` squares) scored.
        n_candidates: settings tried.
        n_true: true objects (or pieces) in the held-back tiles.
    """

    config: PostprocessConfig
    ap50: float
    ap50_before: float
    n_tiles: int
    n_candidates: int
    n_true: int

    @property
    def changed(self) -> bool:
        """True when the chosen setting differs from the model's own."""
        return self.ap50 > self.ap50_before

    def settings(self) -> dict[str, Any]:
        """The tuned keys of :attr:`config` (what goes into ``provenance["postprocess"]``)."""
        keys = TUNED_KEYS + (("distance_threshold",) if self.config.seeds == "distance" else ())
        return {key: getattr(self.config, key) for key in keys}

    def report(self) -> dict[str, Any]:
        """Plain data for ``provenance["operating_point"]``."""
        return {
            "chosen_on": "held-back validation tiles",
            "metric": "AP@0.5 pooled over the tiles",
            "n_tiles": self.n_tiles,
            "n_true": self.n_true,
            "n_candidates": self.n_candidates,
            "ap50": round(self.ap50, 4),
            "ap50_before": round(self.ap50_before, 4),
            "settings": self.settings(),
        }

    def describe(self) -> str:
        """One line for the log and the CLI."""
        return describe_operating_point(self.report())


def describe_operating_point(report: dict[str, Any]) -> str:
    """One line from :meth:`OperatingPoint.report` (e.g. ``provenance["operating_point"]``);
    a binary/semantic model's report (no ``ap50``) gets its own line (:func:`describe_semantic`)."""
    if "ap50" not in report:
        return describe_semantic(report)
    settings = report["settings"]
    seeds = settings.get("distance_threshold", settings["interior_threshold"])
    return (
        f"operating point chosen on {report['n_tiles']} held-back tile(s) "
        f"({report['n_true']} objects): threshold {settings['threshold']:g}, "
        f"seeds {seeds:g}, min size {settings['min_size']}, "
        f"unseeded {settings['unseeded']} (AP@0.5 {report['ap50']:.3f}; the inherited setting "
        f"{report['ap50_before']:.3f})"
    )


def describe_semantic(report: dict[str, Any]) -> str:
    """One line from a binary/2-class semantic model's report (``operating_point_semantic``)."""
    settings = report["settings"]
    metric = "rand_error" if "rand_error" in report else "iou"
    name = "Rand error" if metric == "rand_error" else "class-1 IoU"
    what = "membranes" if metric == "rand_error" else "foreground"
    return (
        f"operating point chosen on {report['n_tiles']} held-back tile(s) ({what}): threshold "
        f"{settings['threshold']:g}, min size {settings['min_size']} ({name} "
        f"{report[metric]:.3f}; the inherited setting {report[metric + '_before']:.3f})"
    )


def _seed_key(config: PostprocessConfig) -> str:
    """The seed threshold tuned: a distance head's (``seeds="distance"``) or the interior's."""
    return "distance_threshold" if config.seeds == "distance" else "interior_threshold"


def candidate_configs(base: PostprocessConfig) -> list[PostprocessConfig]:
    """``base`` first, then every combination of the candidate values (``base``'s included)."""

    def values(own: Any, grid: Sequence[Any]) -> list[Any]:
        return list(dict.fromkeys([own, *grid]))

    configs = [base]
    seed_key = _seed_key(base)
    for unseeded in values(base.unseeded, ("object", "drop")):
        for threshold in values(base.threshold, THRESHOLDS):
            for interior in values(getattr(base, seed_key), INTERIOR_THRESHOLDS):
                for min_size in values(base.min_size, MIN_SIZES):
                    config = base.replace(
                        unseeded=unseeded,
                        threshold=threshold,
                        min_size=min_size,
                        **{seed_key: interior},
                    )
                    if config != base:
                        configs.append(config)
    return configs


def _regions(item: TrainingItem) -> list[tuple[slice, slice]]:
    """Bounding boxes (Y, X slices) of the connected groups of annotated (held-back) pixels."""
    groups, _ = ndimage.label(item.mask)
    return [box for box in ndimage.find_objects(groups) if box is not None]


def _with_context(box: tuple[slice, slice], shape: tuple[int, int]) -> tuple[slice, slice]:
    return tuple(
        slice(max(s.start - CONTEXT, 0), min(s.stop + CONTEXT, n)) for s, n in zip(box, shape)
    )  # type: ignore[return-value]


def _pieces(
    model: SegmentationNet,
    items: Sequence[TrainingItem],
    predict_config: Any,
    *,
    task: str = "instances",
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[slice, slice]]]:
    """Per region: ``(probabilities (K, y', x'), truth (y, x), held mask (y, x), core, box)``.

    ``box`` is the region's bounding box in the item, ``core`` the same box inside the
    probabilities (which carry ``CONTEXT`` pixels more on every side, clipped at the border).
    """
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.inference.prediction import predict
    from napari_unet.core.models.aux import with_distance

    net = with_distance(model, task == "instances")  # a distance head's seeds ride along
    pieces = []
    for item in items:
        for box in _regions(item):
            if len(pieces) >= MAX_REGIONS:
                return pieces
            outer = _with_context(box, item.spatial_shape)
            probabilities = predict(
                net,
                np.ascontiguousarray(item.image[(slice(None), *outer)]),
                "CYX",
                task=task,
                normalization=NormalizationConfig(mode="none"),
                config=predict_config,
            )
            core = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, outer))
            mask = item.mask[box]
            truth = np.where(mask, np.asarray(item.labels)[box], 0).astype(np.int64)
            pieces.append((np.asarray(probabilities, dtype=np.float32), truth, mask, core, box))
    return pieces


def _tile_count(pieces, tile: int) -> int:
    """Validation tiles (``tile`` squares on the grid anchored at (0, 0)) in the pieces."""
    cells = set()
    for index, (_, _, mask, _, box) in enumerate(pieces):
        ys, xs = np.nonzero(mask)
        rows, cols = (ys + box[0].start) // tile, (xs + box[1].start) // tile
        cells.update((index, int(y), int(x)) for y, x in zip(rows, cols))
    return len(cells)


def _counts(config: PostprocessConfig, pieces) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` at IoU 0.5 of ``config``, summed over the pieces."""
    from napari_unet.core.evaluation.instances import matching_at
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    tp = fp = fn = 0
    for probabilities, truth, mask, core, _ in pieces:
        labels = labels_from_probabilities(probabilities, task="instances", config=config)
        pred = np.where(mask, np.asarray(labels)[core], 0).astype(np.int64)
        match = matching_at(pred, truth, (0.5,))[0.5]
        tp, fp, fn = tp + match.tp, fp + match.fp, fn + match.fn
    return tp, fp, fn


def _ap(tp: int, fp: int, fn: int) -> float:
    total = tp + fp + fn
    return tp / total if total else 1.0


def choose_operating_point(
    model: SegmentationNet,
    val_items: Sequence[TrainingItem],
    *,
    base: PostprocessConfig,
    predict_config: Any,
    tile: int = 128,
) -> OperatingPoint | None:
    """The best instance post-processing of ``model`` on the held-back tiles (module docs).

    Args:
        model: a trained 3-class instance model (eval mode is set for the prediction).
        val_items: the held-back items (annotated mask = the validation tiles; labels = instance
            ids).
        base: the model's own setting (inherited or default); kept unless a candidate scores
            strictly higher.
        predict_config: the :class:`~napari_unet.core.inference.prediction.PredictConfig` used to
            predict the tiles (device, tile size).
        tile: the validation tile side (``TrainConfig.val_tile``), for the tile count reported.

    Returns:
        The :class:`OperatingPoint`, or None when no held-back tile holds a true object.
    """
    pieces = _pieces(model, val_items, predict_config)
    n_true = sum(len(np.unique(truth[truth > 0])) for _, truth, _, _, _ in pieces)
    if not n_true:
        logger.info("operating point not tuned: no object in the held-back tiles")
        return None
    n_tiles = _tile_count(pieces, tile)
    candidates = candidate_configs(base)
    before = _ap(*_counts(base, pieces))
    best, best_ap = base, before
    for config in candidates[1:]:
        ap = _ap(*_counts(config, pieces))
        if ap > best_ap:
            best, best_ap = config, ap
    point = OperatingPoint(best, best_ap, before, n_tiles, len(candidates), n_true)
    logger.info("%s", point.describe())
    return point
