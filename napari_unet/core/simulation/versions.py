"""A version of the experiment's model: the network and its own post-processing (issue 17).

Every model the experiment predicts with carries the post-processing it would be published
with: the start model its checkpoint's stored settings (a built-in model's tuned threshold and
minimum size, a distance model's distance seeds), a fine-tuned model the operating point re-tuned
on the held-back tiles from its parent's settings (:func:`tuned_postprocess`). The held-out
images are labelled with it, and the guard (:mod:`.guard`) compares a fine-tuned model with its
parent on the held-back tiles each with its own (:func:`held_back_score`): AP@0.5 pooled over the
tiles for instances, the class-1 IoU (or 1 - Rand error for membranes) for binary and 2-class
semantic models, the training loop's validation score otherwise (3-D models too).
:func:`judge_child` is the one rule every fine-tune path applies before a child replaces its
parent — ``simulate``'s guard and the Fine-tune dock's trainer (so ``bench_hitl`` too): the child's
settings re-tuned from the parent's, both scored on the same held-back tiles, the child kept only
when it scores strictly higher (on a tie, when its pixel validation score is: a parent scoring 1.0
on a few tiles would block every child); the refusal names the metric in the user's terms
("version not published: held-back AP@0.5 0.610 < parent 0.650").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.training.guard import skip_message
from napari_unet.core.training.items import TrainingItem

__all__ = [
    "HeldBackScore",
    "Verdict",
    "Version",
    "as_version",
    "checkpoint_postprocess",
    "held_back",
    "held_back_score",
    "judge_child",
    "score_model",
    "tuned_postprocess",
]

#: The metric of a model without a post-processing setting to tune (labels = argmax, 3-D).
VALIDATION_SCORE = "validation score"


@dataclasses.dataclass(frozen=True, eq=False)
class Version:
    """A model and the post-processing its labels are made with.

    Attributes:
        model: the network (a :class:`~napari_unet.core.models.SegmentationNet`).
        postprocess: its own :class:`PostprocessConfig` (output set for the task).
    """

    model: Any
    postprocess: PostprocessConfig


def as_version(returned: Any, parent: Version) -> Version:
    """What a trainer returned as a :class:`Version`: a plain model (another trainer's, e.g. a
    benchmark's) keeps its parent's post-processing, as a fine-tuned checkpoint inherits it;
    None keeps the parent."""
    if isinstance(returned, Version):
        return returned
    return Version(parent.model if returned is None else returned, parent.postprocess)


def checkpoint_postprocess(info: Any, task: str) -> PostprocessConfig:
    """A checkpoint's (``CheckpointInfo``) stored post-processing for ``task``."""
    return info.postprocess_config(output="instances" if task == "instances" else "semantic")


@dataclasses.dataclass(frozen=True)
class HeldBackScore:
    """A version's score on the held-back tiles and what it measures.

    Attributes:
        value: higher is better; None: nothing to score there (no object, no class-1 pixel).
        metric: the score's name in the user's terms: ``"AP@0.5"``, ``"foreground IoU"``
            (binary), ``"class-1 IoU"``, ``"1 - Rand error"`` (membranes) or
            :data:`VALIDATION_SCORE`.
    """

    value: float | None
    metric: str


def _semantic_tunable(model: Any, task: str) -> bool:
    from napari_unet.core.training.operating_point_semantic import tunable_semantic

    return tunable_semantic(task, int(getattr(model, "out_channels", 0)))


def _flat(model: Any) -> bool:
    """True for a 2-D model: the semantic operating point is 2-D only (instances of a 3-D model
    are scored and tuned in 3-D on the held-back slices)."""
    return int(getattr(model, "spatial_dims", 2) or 2) == 2


def _iou_name(task: str) -> str:
    return "foreground IoU" if task == "binary" else "class-1 IoU"


def held_back(
    version: Version, val_items: Sequence[TrainingItem], train_config: Any, predict_config: Any
) -> HeldBackScore:
    """The score of ``version`` (its model with its post-processing) on the held-back tiles.

    Args:
        val_items: the held-back items (annotated mask = the held-back tiles).
        train_config: the round's ``TrainConfig`` (task, label map, validation tile side).
        predict_config: how the tiles are predicted (a ``PredictConfig``).
    """
    task, model = train_config.task, version.model
    if task == "instances":
        from napari_unet.core.models.pooling import model_voxel_size
        from napari_unet.core.training.operating_point_scoring import _counts, _pieces

        pieces = _pieces(model, val_items, predict_config)
        if not any((truth > 0).any() for _, truth, _, _, _ in pieces):
            return HeldBackScore(None, "AP@0.5")
        held = _counts(version.postprocess, pieces, model_voxel_size(model))
        return HeldBackScore(held.ap50, "AP@0.5")
    if _semantic_tunable(model, task) and _flat(model):
        return _semantic_score(version, val_items, train_config, predict_config)
    value = score_model(model, list(val_items), train_config)  # labels = argmax: no setting
    return HeldBackScore(value, VALIDATION_SCORE)


def held_back_score(version: Version, val_items: Sequence[TrainingItem], train_config: Any,
                    predict_config: Any) -> float | None:  # fmt: skip
    """:func:`held_back`'s value: higher is better; None: nothing to score there."""
    return held_back(version, val_items, train_config, predict_config).value


def score_model(model: Any, val_items: list[Any], config: Any) -> float | None:
    """The validation score of ``model`` on ``val_items``, computed as the training loop does."""
    from napari_unet.core.training.state import build_pools
    from napari_unet.core.training.validation import pool_metrics

    _, validation, _ = build_pools(model, [], val_items, config)
    metrics = pool_metrics(model, validation, config)
    return None if metrics is None else float(metrics["score"])


def _semantic_score(version: Version, val_items, train_config, predict_config) -> HeldBackScore:
    """Class-1 IoU, or 1 - Rand error of the regions class 1 encloses (membranes), of a binary
    or 2-class semantic version: the operating point's metric (``operating_point_semantic``)."""
    from napari_unet.core.training.operating_point_scoring import _pieces
    from napari_unet.core.training.operating_point_semantic import (
        _cells,
        _score,
        boundary_like,
        class_items,
    )

    task = train_config.task
    items = class_items(val_items, train_config.targets, task)
    pieces = _pieces(version.model, items, predict_config, task=task)
    truths = [truth for _, truth, _, _, _ in pieces]
    masks = [mask for _, _, mask, _, _ in pieces]
    if not any(((t == 1) & m).any() for t, m in zip(truths, masks)):
        return HeldBackScore(None, _iou_name(task))
    boundary = boundary_like(truths, masks, _cells(pieces, train_config.val_tile))
    metric = "rand_error" if boundary else "iou"
    score = _score(version.postprocess.replace(output="semantic"), metric, pieces, task)
    if boundary:
        return HeldBackScore(1.0 - score, "1 - Rand error")
    return HeldBackScore(score, _iou_name(task))


def tuned_postprocess(
    model: Any,
    parent: PostprocessConfig,
    val_items: Sequence[TrainingItem],
    train_config: Any,
    predict_config: Any,
) -> tuple[PostprocessConfig, float | None]:
    """A fine-tuned ``model``'s own post-processing and its :func:`held_back_score`.

    The settings are ``parent``'s re-tuned on the held-back tiles (``core.training.retune``'s
    search; ``parent``'s kept when nothing scores higher); the score is the search's score of
    the chosen settings, the value :func:`held_back_score` gives (one prediction of the tiles).
    """
    own, score, _ = _tuned(model, parent, val_items, train_config, predict_config)
    return own, score.value


def _tuned(model, parent: PostprocessConfig, val_items, train_config, predict_config):
    """``(settings, HeldBackScore, operating point or None)`` of :func:`tuned_postprocess`."""
    task = train_config.task
    if task == "instances":
        from napari_unet.core.training.operating_point import choose_operating_point

        point = choose_operating_point(
            model, val_items, base=parent, predict_config=predict_config,
            tile=train_config.val_tile,
        )  # fmt: skip
        if point is None:
            return parent, HeldBackScore(None, "AP@0.5"), None
        return point.config, HeldBackScore(point.ap50, "AP@0.5"), point
    if not (_semantic_tunable(model, task) and _flat(model)):
        value = score_model(model, list(val_items), train_config)
        return parent, HeldBackScore(value, VALIDATION_SCORE), None
    from napari_unet.core.training.operating_point_semantic import (
        choose_semantic_operating_point,
    )

    point = choose_semantic_operating_point(
        model, val_items, task=task, base=parent, predict_config=predict_config,
        tile=train_config.val_tile, targets=train_config.targets,
    )  # fmt: skip
    if point is None:
        return parent, HeldBackScore(None, _iou_name(task)), None
    if point.metric == "rand_error":
        score = HeldBackScore(1.0 - point.score, "1 - Rand error")
    else:
        score = HeldBackScore(point.score, _iou_name(task))
    return point.config.replace(output=parent.output), score, point


@dataclasses.dataclass(frozen=True, eq=False)
class Verdict:
    """Whether a fine-tuned child may replace its parent (:func:`judge_child`).

    Attributes:
        child: the fine-tuned model with its own (re-tuned) post-processing.
        score, parent_score: their held-back scores (same metric, same tiles).
        point: the operating point chosen for the child (None: not tuned), with ``report()``
            (``provenance["operating_point"]``) and ``settings()`` (the tuned keys).
        message: None when the child may be published, else the sentence saying why not.
    """

    child: Version
    score: HeldBackScore
    parent_score: HeldBackScore
    point: Any = None
    message: str | None = None

    @property
    def better(self) -> bool:
        """True when the child may replace its parent."""
        return self.message is None

    def provenance(self, inherited: dict[str, Any] | None) -> dict[str, Any]:
        """What a published child's checkpoint stores: ``postprocess`` (``inherited``, the
        parent's stored settings, with the tuned keys when the search changed them) and
        ``operating_point`` (the search's report), as ``core.training.retune.tune_best``."""
        if self.point is None:
            return {}
        extra: dict[str, Any] = {"operating_point": self.point.report()}
        if self.point.changed:
            extra["postprocess"] = {**(inherited or {}), **self.point.settings()}
        return extra


def judge_child(
    model: Any,
    parent: Version,
    parent_score: HeldBackScore,
    val_items: Sequence[TrainingItem],
    train_config: Any,
    predict_config: Any,
    *,
    tune: bool = True,
) -> Verdict:
    """The rule a fine-tuned ``model`` must pass to replace ``parent`` (module docs).

    Args:
        parent_score: :func:`held_back` of ``parent`` on ``val_items`` (scored once per run).
        tune: re-tune the child's settings from the parent's (False: the child is scored with
            the parent's settings, e.g. when the user switched re-tuning off).
    """
    if tune:
        own, score, point = _tuned(model, parent.postprocess, val_items, train_config,
                                   predict_config)  # fmt: skip
    else:
        own, point = parent.postprocess, None
        score = held_back(Version(model, own), val_items, train_config, predict_config)
    message = skip_message(score.value, parent_score.value, metric=score.metric)
    if message is not None and score.value == parent_score.value:
        message = _break_tie(model, parent.model, val_items, train_config, message)
    return Verdict(Version(model, own), score, parent_score, point, message)


def _break_tie(model: Any, parent_model: Any, val_items, train_config, message: str) -> str | None:
    """A tie on the coarse held-back score (a good parent scores AP@0.5 1.0 on a few tiles: no
    child could beat it) is broken by the loop's finer pixel score (:func:`score_model`): None
    (publish) when the child's is strictly higher; else ``message`` with both."""
    child = score_model(model, list(val_items), train_config)
    parent = score_model(parent_model, list(val_items), train_config)
    if child is None or parent is None:
        return message
    return None if child > parent else f"{message}, and validation {child:.3f} <= {parent:.3f}"
