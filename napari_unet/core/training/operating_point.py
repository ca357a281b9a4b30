"""The operating point re-tuned after training: post-processing chosen on the held-back tiles.

A model trained for minutes on a few corrected images needs other thresholds than its parent
(or the defaults): its instance post-processing is chosen again after every training run.
:func:`choose_operating_point` predicts the held-back validation tiles once (each connected
group of held-back tiles with a margin of context), turns the probabilities into instances with
every candidate setting (foreground threshold x seed threshold x minimum size x what becomes of
foreground no seed reaches) and scores each by AP@0.5 pooled over the tiles (TP / (TP + FP + FN)
summed over the tiles).

**Which setting wins.** The held-back tiles are few (3-90 true objects in the runs measured) and
cut from the images the model trained on, where it is surer than on an image it has never seen:
there its doubtful foreground becomes specks and swollen objects. So the search does not take the
bare best score: of the settings within one object of it (AP@0.5 at least ``best - 1 / n``, ``n``
true objects, never more than :data:`MAX_TOLERANCE` below) and no worse than the model's own
setting, it keeps the one that keeps the least doubtful foreground: the highest foreground
threshold, then unseeded foreground dropped, then the largest minimum size
(:func:`_doubt_removed`); the model's own setting wins a full tie. Measured on twelve
10-minute runs of two modalities (``docs/learning_ablation.md``, session 13; four of them fresh
seeds not used to design the rule): on the unseen test images it scored a higher AP@0.5 than the
old rule (the bare best of 24 settings) on the same weights in all twelve.

**Objects that tile the image** (EM cells: more than half of the held-back background lies in
gaps between two objects, :func:`~napari_unet.core.training.gaps.gap_share`): there a higher
threshold does not remove specks, it thins every object, so a setting must also keep the
held-back foreground IoU within :data:`IOU_TOLERANCE` of the best of the near settings. Replayed
on 40 stored runs (session 20): it changed 4 of 13 EM-cell runs, each for the better on the
unseen slices (AP@0.5 +0.005 to +0.066, foreground IoU +0.006 to +0.016); applied to nuclei it
would have blocked the threshold 0.9 that removed specks on a fluorescence run (AP@0.5 0.821 ->
0.785), so it is not applied there. The chosen setting's held-back foreground IoU is reported.

**Holes filled.** Then background holes enclosed by one object are filled (as the plain loop
does) unless that scores a lower AP@0.5 or foreground IoU on the held-back tiles
(:func:`_holes_filled`; a tie fills: held-back tiles rarely hold a hole). Replayed on 39 stored
runs of four modalities (session 21, same weights, the run's own setting with and without): the
test images' foreground IoU never fell (+0.002 on average, up to +0.014 on EM cells, whose Rand
error fell up to 0.02), AP@0.5 was unchanged in 34 runs and moved by 0.008 or less in the others.

This module tunes instance models (3-class: background, interior, boundary; 3-D models too, their
3-D objects scored on the held-back slices); binary and 2-class semantic models get a class-1
threshold chosen by Rand error or IoU (:mod:`~napari_unet.core.training.operating_point_semantic`).
How the held-back regions are predicted and scored:
:mod:`~napari_unet.core.training.operating_point_scoring`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.core.training.gaps import gap_share, gaps_dominate
from napari_unet.core.training.operating_point_scoring import (
    MAX_REGIONS,
    HeldScore,
    _counts,
    _pieces,
    _tile_count,
    uncut_areas,
)
from napari_unet.core.training.operating_point_text import (
    describe_operating_point,
    describe_semantic,
    settings_text,
)

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
    "settings_text",
]

#: Candidate foreground thresholds, seed (interior) thresholds and minimum sizes (pixels); the
#: model's own values are always added.
THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
INTERIOR_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
MIN_SIZES: tuple[int, ...] = (0, 20)
#: Minimum sizes derived from the data: these fractions of the median area of the true objects
#: in the held-back tiles (the ones no tile edge cuts) are candidates too (a tenth: a speck;
#: a quarter removed real small nuclei of stained tissue, whose sizes vary 10-fold).
MIN_SIZE_FRACTIONS: tuple[float, ...] = (0.1,)
#: The most AP@0.5 a setting may give up for leaving out more doubtful foreground (one object on
#: tiles holding few, never more than this).
MAX_TOLERANCE = 0.05
#: Objects that tile the image only: the most held-back foreground IoU a setting may give up,
#: against the best of the settings near the best AP@0.5, for leaving out doubtful foreground.
IOU_TOLERANCE = 0.01
#: Keys of :class:`PostprocessConfig` the search sets (stored in the checkpoint).
TUNED_KEYS: tuple[str, ...] = (
    "threshold", "interior_threshold", "min_size", "unseeded", "fill_holes",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """The chosen post-processing and how it was chosen.

    Attributes:
        config: the chosen :class:`PostprocessConfig` (module docs: the setting that keeps the
            least doubtful foreground among those within one object of the best score).
        ap50: pooled AP@0.5 of ``config`` on the held-back tiles.
        ap50_before: pooled AP@0.5 of the model's own (inherited or default) setting.
        ap50_best: the best pooled AP@0.5 of any candidate.
        foreground_iou: pooled foreground IoU of ``config`` on the held-back tiles.
        base: the model's own setting the search started from.
        n_tiles: held-back validation tiles (``val_tile`` squares) scored.
        n_candidates: settings tried.
        n_true: true objects (or pieces) in the held-back tiles.
        tiled: objects tile the image, so the foreground-IoU guard applied (module docs).
    """

    config: PostprocessConfig
    ap50: float
    ap50_before: float
    n_tiles: int
    n_candidates: int
    n_true: int
    ap50_best: float
    base: PostprocessConfig
    foreground_iou: float | None = None
    tiled: bool = False

    @property
    def changed(self) -> bool:
        """True when the chosen setting differs from the model's own (:attr:`base`)."""
        return any(getattr(self.config, k) != getattr(self.base, k) for k in self.settings())

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
            "ap50_best": round(self.ap50_best, 4),
            **(
                {}
                if self.foreground_iou is None
                else {"foreground_iou": round(self.foreground_iou, 4)}
            ),
            "rule": "least doubtful foreground within one object of the best"
            + (f", foreground IoU within {IOU_TOLERANCE:g} of the best" if self.tiled else ""),
            "settings": self.settings(),
        }

    def describe(self) -> str:
        """One line for the log and the CLI."""
        return describe_operating_point(self.report())


def _seed_key(config: PostprocessConfig) -> str:
    """The seed threshold tuned: a distance head's (``seeds="distance"``) or the interior's."""
    return "distance_threshold" if config.seeds == "distance" else "interior_threshold"


def candidate_configs(
    base: PostprocessConfig, min_sizes: Sequence[int] = MIN_SIZES
) -> list[PostprocessConfig]:
    """``base`` first, then every combination of the candidate values (``base``'s included);
    ``min_sizes``: the minimum sizes tried (default :data:`MIN_SIZES`)."""

    def values(own: Any, grid: Sequence[Any]) -> list[Any]:
        return list(dict.fromkeys([own, *grid]))

    configs = [base]
    seed_key = _seed_key(base)
    for unseeded in values(base.unseeded, ("object", "drop")):
        for threshold in values(base.threshold, THRESHOLDS):
            for interior in values(getattr(base, seed_key), INTERIOR_THRESHOLDS):
                for min_size in values(base.min_size, min_sizes):
                    config = base.replace(
                        unseeded=unseeded,
                        threshold=threshold,
                        min_size=min_size,
                        **{seed_key: interior},
                    )
                    if config != base:
                        configs.append(config)
    return configs


def data_min_sizes(pieces) -> tuple[int, ...]:
    """:data:`MIN_SIZES` and :data:`MIN_SIZE_FRACTIONS` of the median uncut true object area."""
    areas = uncut_areas(pieces)
    if not areas.size:
        return MIN_SIZES
    median = float(np.median(areas))
    derived = (round(fraction * median) for fraction in MIN_SIZE_FRACTIONS)
    return tuple(sorted({*MIN_SIZES, *derived}))


def _doubt_removed(config: PostprocessConfig) -> tuple[float, bool, int]:
    """How much doubtful foreground ``config`` leaves out (larger: more), for :func:`max`.

    The seed threshold is not part of it: it trades splits against merges (and, with unseeded
    foreground dropped, strict seeds drop whole objects), so among settings equal here the
    earliest candidate wins, whose seeds are the model's own where they are near the best."""
    return (config.threshold, config.unseeded == "drop", config.min_size)


def _pick(
    scored: list[tuple[PostprocessConfig, HeldScore]], n_true: int, *, tiled: bool = False
) -> PostprocessConfig:
    """The module docs' rule over ``(setting, held-back score)`` pairs, the model's own first;
    ``tiled``: objects tile the image (the foreground-IoU guard applies)."""
    best = max(score.ap50 for _, score in scored)
    floor = max(best - min(1.0 / max(n_true, 1), MAX_TOLERANCE), scored[0][1].ap50)
    near = [(config, score) for config, score in scored if score.ap50 >= floor - 1e-9]
    if tiled:
        top = max(score.foreground_iou for _, score in near)
        near = [(c, score) for c, score in near if score.foreground_iou >= top - IOU_TOLERANCE]
    return max((config for config, _ in near), key=_doubt_removed)  # the own wins a full tie


def _holes_filled(
    chosen: PostprocessConfig, held: dict[PostprocessConfig, HeldScore], pieces, spacing
) -> PostprocessConfig:
    """``chosen`` with holes filled unless that scores lower on the held-back tiles (module
    docs); the filled setting's score is added to ``held``."""
    if chosen.fill_holes:
        return chosen
    filled = chosen.replace(fill_holes=True)
    held.setdefault(filled, _counts(filled, pieces, spacing))
    score, kept = held[filled], held[chosen]
    no_worse = score.ap50 >= kept.ap50 - 1e-9 and score.foreground_iou >= kept.foreground_iou - 1e-9
    return filled if no_worse else chosen


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
        model: a trained 3-class instance model (eval mode is set for the prediction); a 3-D
            model's objects are split by the 3-D watershed at its
            :func:`~napari_unet.core.models.pooling.model_voxel_size`.
        val_items: the held-back items (annotated mask = the validation tiles, or a volume's
            held-back planes; labels = instance ids).
        base: the model's own setting (inherited or default); the choice never scores below it
            on the held-back tiles.
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
    candidates = candidate_configs(base, data_min_sizes(pieces))
    from napari_unet.core.models.pooling import model_voxel_size  # torch: not at import time

    spacing = model_voxel_size(model)
    scored = [(config, _counts(config, pieces, spacing)) for config in candidates]
    tiled = gaps_dominate(gap_share(val_items))  # EM cells, not nuclei
    chosen = _pick(scored, scored[0][1].tp + scored[0][1].fn, tiled=tiled)
    held = dict(scored)
    chosen = _holes_filled(chosen, held, pieces, spacing)
    point = OperatingPoint(
        chosen, held[chosen].ap50, scored[0][1].ap50, n_tiles, len(held), n_true,
        ap50_best=max(score.ap50 for score in held.values()), base=base,
        foreground_iou=held[chosen].foreground_iou, tiled=tiled,
    )  # fmt: skip
    logger.info("%s", point.describe())
    return point
