"""The human-in-the-loop experiment, done by a script: correct, fine-tune, measure, repeat.

A fixed set of held-out images is chosen up front (the last ``eval_images`` of a seeded
permutation) and never corrected. Round 0 scores the initial model on it. Each later round takes
the next ``per_round`` images of the permutation, predicts them with the current model and
"corrects" them from the ground truth (they become fully annotated :class:`TrainingItem` objects;
the correction effort is how much of the prediction had to change), fine-tunes on every image
corrected so far (continuing from the previous round's model) and scores the held-out set again.

:func:`iter_simulate` yields :class:`SimulateProgress` and one :class:`RoundRecord` per round and
returns a :class:`SimulateResult`; :func:`simulate` drains it. The trainer is pluggable
(:data:`Trainer`) so a benchmark can drive another training back end through the same rounds.
The correction effort is defined in :mod:`napari_unet.core.simulation.parts`.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

from napari_unet.core.generators import run_to_end
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.simulation.config import (  # noqa: F401 (SIMULATE_TASKS: re-export)
    PRIMARY_METRIC,
    SIMULATE_TASKS,
    SimulateConfig,
)
from napari_unet.core.simulation.guard import default_trainer
from napari_unet.core.simulation.parts import (
    correction_effort,
    mapped_truth,
    mean_metrics,
    new_model_for,
    plan_split,
    predict_labels,
)
from napari_unet.core.simulation.plan import Plan, flipped_for_start, make_plan
from napari_unet.core.simulation.records import (
    RoundJudged,
    RoundRecord,
    SimulateEvent,
    SimulateProgress,
    SimulateResult,
)
from napari_unet.core.simulation.versions import Version, as_version
from napari_unet.core.training.config import StepEvent
from napari_unet.core.training.items import TrainingItem

__all__ = [
    "PRIMARY_METRIC",
    "RoundRecord",
    "SimulateConfig",
    "SimulateEvent",
    "SimulateProgress",
    "SimulateResult",
    "Trainer",
    "correction_effort",
    "default_trainer",
    "iter_simulate",
    "mapped_truth",
    "mean_metrics",
    "new_model_for",
    "plan_split",
    "predict_labels",
    "simulate",
]

logger = logging.getLogger(__name__)

#: ``trainer(model, items, round_index) -> generator of events returning the trained model``
#: (or a :class:`~napari_unet.core.simulation.versions.Version`: the model with its own
#: post-processing; a plain model keeps its parent's): trains on every corrected item,
#: continuing from ``model``.
Trainer = Callable[[Any, list[TrainingItem], int], Generator[Any, None, Any]]


def iter_simulate(
    model: Any,
    items: Sequence[TrainingItem],
    config: SimulateConfig,
    *,
    trainer: Trainer | None = None,
    work_dir: str | None = None,
    stop: Callable[[], bool] | None = None,
    start_trained: bool = False,
    postprocess: PostprocessConfig | None = None,
) -> Generator[SimulateEvent, None, SimulateResult]:
    """Run the experiment; yields progress and one :class:`RoundRecord` per round.

    Args:
        model: the initial model (a :class:`~napari_unet.core.models.SegmentationNet`, trained
            in place by the default trainer).
        items: every image with its full ground truth: ``image`` (C, Y, X) float32 normalised,
            ``labels`` (Y, X) raw truth (``config.label_map`` maps it), unique ``name``.
        config: the settings.
        trainer: fine-tunes between rounds (default: :func:`default_trainer`).
        work_dir: where the default trainer writes its checkpoints (default: a temporary
            folder, removed at the end).
        stop: called between steps of work; True ends the experiment after the current round.
        start_trained: ``model`` is a trained model (a built-in or checkpoint): round 1 keeps it
            unless the fine-tune beats it on held-back tiles (later rounds always do this).
        postprocess: the initial model's own post-processing (a checkpoint's stored settings,
            :func:`~napari_unet.core.simulation.versions.checkpoint_postprocess`; default:
            ``config.postprocess_config``). Each round's model is scored with its own: the
            default trainer re-tunes it after every fine-tune (a trainer that returns a plain
            model keeps its parent's).

    Returns:
        The :class:`SimulateResult` (rounds done so far when stopped).

    Raises:
        UserInputError: too few images for the rounds and the held-out set, or duplicate names.
    """
    plan = make_plan(items, config, stop, start_trained=start_trained)
    cleanup = None
    if work_dir is None and trainer is None:
        cleanup = tempfile.TemporaryDirectory(prefix="napari-unet-simulate-")
        work_dir = cleanup.name
    version = Version(model, postprocess or config.postprocess_config)
    trainer = trainer or default_trainer(
        config, str(work_dir), start_trained=start_trained, postprocess=version.postprocess
    )
    records: list[RoundRecord] = []
    try:
        version = yield from _rounds(plan, trainer, version, records)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    return SimulateResult(
        rounds=tuple(records),
        held_out=tuple(plan.names[i] for i in plan.held),
        corrected=tuple(plan.names[i] for i in plan.order),
        model=version.model,
    )


def _rounds(
    plan: Plan, trainer: Trainer, version: Version, records: list[RoundRecord]
) -> Generator[SimulateEvent, None, Version]:
    """Round 0 (``version`` scored), then the rounds until done or stopped; each record is
    appended to ``records`` and yielded. Returns the last round's version."""
    metrics = yield from _evaluate(plan, version, 0)
    settings = version.postprocess.to_dict()
    records.append(RoundRecord(0, 0, (), 0.0, 0.0, 0, 0, 0, metrics, postprocess=settings))
    yield records[-1]
    plan = flipped_for_start(plan, version.model)  # a start model trained the other way up
    corrected: list[TrainingItem] = []
    for r in range(1, plan.config.rounds + 1):
        if plan.should_stop():
            break
        cumulative = records[-1].cumulative_minutes
        version, record = yield from _round(plan, trainer, version, r, corrected, cumulative)
        if r == 1 and plan.flipped:
            record = dataclasses.replace(record, intensities_flipped=True)
        records.append(record)
        yield record
    return version


def _evaluate(
    plan: Plan, version: Version, round_index: int
) -> Generator[SimulateEvent, None, dict]:
    """Score ``version`` (with its own post-processing) on the held-out images; returns the
    mean metrics."""
    from napari_unet.core.evaluation.score import evaluate_pair

    rows = []
    for done, i in enumerate(plan.held, start=1):
        pred = predict_labels(version.model, plan.items[i].image, plan.config, version.postprocess)
        rows.append(evaluate_pair(pred, plan.truths[i], task=plan.config.task))
        yield SimulateProgress(round_index, "evaluate", done, len(plan.held))
    return mean_metrics(rows)


def _correct(
    plan: Plan, version: Version, new: list[int], round_index: int, corrected: list[TrainingItem]
) -> Generator[SimulateEvent, None, tuple[int, int]]:
    """Predict the round's new images and "correct" them (appended to ``corrected``); returns
    the correction effort ``(pixels, objects)``."""
    config = plan.config
    pixels = objects = 0
    for done, i in enumerate(new, start=1):
        pred = predict_labels(version.model, plan.items[i].image, config, version.postprocess)
        p, o = correction_effort(pred, plan.truths[i], task=config.task)
        pixels, objects = pixels + p, objects + o
        corrected.append(dataclasses.replace(plan.items[i], annotated_mask=None))
        yield SimulateProgress(round_index, "correct", done, len(new))
    return pixels, objects


def _round(
    plan: Plan,
    trainer: Trainer,
    version: Version,
    r: int,
    corrected: list[TrainingItem],
    cumulative: float,
) -> Generator[SimulateEvent, None, tuple[Version, RoundRecord]]:
    """Round ``r``: correct the next images, fine-tune, score; returns ``(version, record)``."""
    config = plan.config
    new = plan.order[(r - 1) * config.per_round : r * config.per_round]
    pixels, objects = yield from _correct(plan, version, new, r, corrected)
    version, steps, seconds, judged = yield from _train_round(
        trainer, version, corrected, r, config, plan.should_stop
    )
    cumulative += seconds / 60.0
    metrics = yield from _evaluate(plan, version, r)
    record = RoundRecord(
        round=r,
        corrected_images=len(corrected),
        new_images=tuple(plan.names[i] for i in new),
        minutes_trained=seconds / 60.0,
        cumulative_minutes=cumulative,
        steps=steps,
        pixels_corrected=pixels,
        objects_corrected=objects,
        metrics=metrics,
        note=judged.message if judged else "",
        postprocess=version.postprocess.to_dict(),
        held_back=judged.summary() if judged else {},
    )
    logger.info("round %d: %d steps, %s", r, steps, metrics)
    return version, record


def _train_round(
    trainer: Trainer,
    version: Version,
    corrected: list[TrainingItem],
    round_index: int,
    config: SimulateConfig,
    should_stop: Callable[[], bool],
) -> Generator[SimulateEvent, None, tuple[Version, int, float, RoundJudged | None]]:
    """Run ``trainer`` on the corrected pool; returns ``(version, steps, seconds, judged)``
    (``judged``: the held-back judgement of a guarded round, else None)."""
    total = config.steps_per_round or (0 if config.minutes else config.train.steps or 0)
    steps, start, judged = 0, time.perf_counter(), None
    events = trainer(version.model, list(corrected), round_index)
    parent = version
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            version = as_version(done.value, parent)
            break
        if isinstance(event, StepEvent):
            steps = event.step
            yield SimulateProgress(round_index, "train", steps, total, event.loss)
            if should_stop():
                events.close()
                break
        elif isinstance(event, RoundJudged):
            judged = event
    return version, steps, time.perf_counter() - start, judged


def simulate(*args: Any, **kwargs: Any) -> SimulateResult:
    """Run :func:`iter_simulate` to the end (same arguments) and return its result."""
    return run_to_end(iter_simulate(*args, **kwargs))
