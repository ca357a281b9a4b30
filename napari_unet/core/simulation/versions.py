"""A version of the experiment's model: the network and its own post-processing (issue 17).

Every model the experiment predicts with carries the post-processing it would be published
with: the start model its checkpoint's stored settings (a built-in model's tuned threshold and
minimum size, a distance model's distance seeds), a fine-tuned model the operating point re-tuned
on the held-back tiles from its parent's settings (:func:`tuned_postprocess`). The held-out
images are labelled with it, and the guard (:mod:`.guard`) compares a fine-tuned model with its
parent on the held-back tiles each with its own (:func:`held_back_score`): AP@0.5 pooled over the
tiles for instances, the class-1 IoU (or 1 - Rand error for membranes) for binary and 2-class
semantic models, the training loop's validation score otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.training.items import TrainingItem

__all__ = [
    "Version",
    "as_version",
    "checkpoint_postprocess",
    "held_back_score",
    "score_model",
    "tuned_postprocess",
]


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
    """The stored post-processing of a checkpoint (``CheckpointInfo``) for the experiment's
    ``task`` (instances or semantic labels)."""
    return info.postprocess_config(output="instances" if task == "instances" else "semantic")


def _semantic_tunable(model: Any, task: str) -> bool:
    from napari_unet.core.training.operating_point_semantic import tunable_semantic

    return tunable_semantic(task, int(getattr(model, "out_channels", 0)))


def held_back_score(
    version: Version, val_items: Sequence[TrainingItem], train_config: Any, predict_config: Any
) -> float | None:
    """The score of ``version`` (its model with its post-processing) on the held-back tiles
    (higher is better; None: nothing to score there).

    Args:
        val_items: the held-back items (annotated mask = the held-back tiles).
        train_config: the round's ``TrainConfig`` (task, label map, validation tile side).
        predict_config: how the tiles are predicted (the experiment's ``PredictConfig``).
    """
    task, model = train_config.task, version.model
    if task == "instances":
        from napari_unet.core.training.operating_point import _ap, _counts, _pieces

        pieces = _pieces(model, val_items, predict_config)
        if not any((truth > 0).any() for _, truth, _, _, _ in pieces):
            return None
        return _ap(*_counts(version.postprocess, pieces))
    if _semantic_tunable(model, task):
        return _semantic_score(version, val_items, train_config, predict_config)
    return score_model(model, list(val_items), train_config)  # labels = argmax: no setting


def score_model(model: Any, val_items: list[Any], config: Any) -> float | None:
    """The validation score of ``model`` on ``val_items``, computed as the training loop does."""
    from napari_unet.core.device import get_device
    from napari_unet.core.training.losses import SegmentationLoss
    from napari_unet.core.training.state import build_pools
    from napari_unet.core.training.validation import evaluate

    _, validation, _ = build_pools(model, [], val_items, config)
    batches = validation.validation_batches(config.batch_size)
    if not batches:
        return None
    device = get_device(config.device)
    model.to(device)
    loss_fn = SegmentationLoss(config.loss, config.task)
    metrics = evaluate(model, batches, task=config.task, loss_fn=loss_fn, device=device)
    model.to("cpu")
    return float(metrics["score"])


def _semantic_score(version: Version, val_items, train_config, predict_config) -> float | None:
    """Class-1 IoU, or 1 - Rand error of the regions class 1 encloses (membranes), of a binary
    or 2-class semantic version: the operating point's metric (``operating_point_semantic``)."""
    from napari_unet.core.training.operating_point import _pieces
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
        return None
    boundary = boundary_like(truths, masks, _cells(pieces, train_config.val_tile))
    metric = "rand_error" if boundary else "iou"
    score = _score(version.postprocess.replace(output="semantic"), metric, pieces, task)
    return 1.0 - score if boundary else score


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
    task = train_config.task
    if task == "instances":
        from napari_unet.core.training.operating_point import choose_operating_point

        point = choose_operating_point(
            model, val_items, base=parent, predict_config=predict_config,
            tile=train_config.val_tile,
        )  # fmt: skip
        return (parent, None) if point is None else (point.config, point.ap50)
    if not _semantic_tunable(model, task):
        return parent, score_model(model, list(val_items), train_config)
    from napari_unet.core.training.operating_point_semantic import (
        choose_semantic_operating_point,
    )

    point = choose_semantic_operating_point(
        model, val_items, task=task, base=parent, predict_config=predict_config,
        tile=train_config.val_tile, targets=train_config.targets,
    )  # fmt: skip
    if point is None:
        return parent, None
    score = 1.0 - point.score if point.metric == "rand_error" else point.score
    return point.config.replace(output=parent.output), score
