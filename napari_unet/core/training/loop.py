"""The training loop: fine-tune a U-Net on annotated regions, as a generator of typed events.

``iter_train`` yields :class:`StepEvent` after every step, :class:`ValidationEvent` every
``val_every`` steps and :class:`CheckpointEvent` when ``best.pt`` / ``latest.pt`` are written; it
returns a :class:`TrainResult`. ``train`` drains it. Patches come only from annotated pixels
(class-balanced, see :mod:`napari_unet.core.training.sampler`); validation uses held-back annotated
tiles that are never trained on. ``latest.pt`` carries the full training state, so
``iter_train(..., resume_from=latest)`` continues bit-identically on the CPU. ``best.pt`` holds the
validation-best weights during the run; at the end of the budget it gets the final weights
(``TrainConfig.keep="final"``, the default) or keeps the validation-best (``"best"``). After
training an instance model (unless stopped), the post-processing is re-tuned on the held-back
tiles and stored in ``best.pt`` (:func:`~napari_unet.core.training.retune.tune_best`,
``TrainConfig.tune_postprocess``).

Example:
    >>> result = train(build_model("unet", depth=2, base_channels=8), items,
    ...     TrainConfig(task="binary", steps=100, checkpoint_dir="run"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

import torch

from napari_unet.core.device import get_device
from napari_unet.core.generators import run_to_end
from napari_unet.core.training.augment import AugmentConfig
from napari_unet.core.training.cadence import latest_due, validation_due
from napari_unet.core.training.config import (
    CheckpointEvent,
    StepEvent,
    TrainConfig,
    TrainEvent,
    TrainResult,
    ValidationEvent,
)
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.losses import LossConfig
from napari_unet.core.training.retune import retune_after_training
from napari_unet.core.training.run_parts import RunParts, RunProgress, build_run, resume_run
from napari_unet.core.training.saving import save_latest, write_best
from napari_unet.core.training.state import (
    ModelSource,
    drain_new_items,
    finite_or_raise,
    resolve_model,
    stop_function,
)
from napari_unet.core.training.targets import TargetConfig
from napari_unet.core.training.validation import evaluate

__all__ = [
    "AugmentConfig",
    "CheckpointEvent",
    "LossConfig",
    "StepEvent",
    "TargetConfig",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "ValidationEvent",
    "iter_train",
    "train",
]

logger = logging.getLogger(__name__)


def iter_train(
    model_or_checkpoint: Any,
    items: Sequence[TrainingItem],
    config: TrainConfig,
    *,
    stop: Any = None,
    resume_from: Any = None,
    val_items: Sequence[TrainingItem] | None = None,
    parent: str | None = None,
    new_items: Any = None,
) -> Generator[TrainEvent, None, TrainResult]:
    """Train ``model_or_checkpoint`` on ``items``, yielding events; returns a :class:`TrainResult`.

    Args:
        model_or_checkpoint: a :class:`~napari_unet.core.models.SegmentationNet` (trained in
            place) or the path of a checkpoint to fine-tune.
        items: annotated images (normalised (C, Y, X) float32 images, labels, masks).
        config: the settings; ``config.checkpoint_dir`` receives ``best.pt`` and ``latest.pt``.
        stop: a ``threading.Event`` (or a callable returning True) checked before every step.
        resume_from: a ``latest.pt`` written by an earlier run: weights, optimiser, schedule,
            step and random states continue from there (the budget counts from step 0).
        val_items: validation data; default: ``config.val_fraction`` of the annotated tiles.
        parent: provenance parent (default: the checkpoint path being fine-tuned).
        new_items: a queue of :class:`TrainingItem` drained before every step (continuous
            learning); an item with a known name replaces the old one.

    Raises:
        TrainingDataError: the annotation cannot be trained on (the message says what to add).
        TrainingDivergedError: the loss became NaN/Inf; no checkpoint was overwritten.
    """
    should_stop = stop_function(stop)
    source = resolve_model(model_or_checkpoint, parent)
    model = source.model
    device = get_device(config.device)
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        return (
            yield from _run(
                source, items, config, device, should_stop, resume_from, val_items, new_items
            )
        )
    finally:
        if config.num_threads:
            torch.set_num_threads(previous_threads)
        model.to("cpu")


def _run(
    source: ModelSource,
    items: Sequence[TrainingItem],
    config: TrainConfig,
    device: torch.device,
    should_stop: Callable[[], bool],
    resume_from: str | os.PathLike | None,
    val_items: Sequence[TrainingItem] | None,
    new_items: queue.Queue | None,
) -> Generator[TrainEvent, None, TrainResult]:
    """The body of :func:`iter_train` once the model is resolved and the threads are set."""
    run, progress = build_run(source, items, config, device, val_items)
    if resume_from is not None:
        resume_run(run, progress, resume_from)
    reason = yield from _loop(run, progress, should_stop, new_items)
    kept = yield from _finish(run, progress, reason)
    logger.info("training finished after %d steps (%s)", progress.step, reason)
    operating_point = yield from retune_after_training(run, progress, reason)
    return TrainResult(
        best_path=run.writer.best_path,
        latest_path=run.writer.latest_path,
        steps=progress.step,
        best_metrics=progress.best_metrics,
        stopped_early=reason in ("stopped", "early_stopping", "time"),
        reason=reason,
        operating_point=operating_point,
        kept=kept,
    )


def _stop_reason(
    config: TrainConfig, progress: RunProgress, should_stop: Callable[[], bool]
) -> str | None:
    """Why the loop ends before the next step (``stopped``, ``steps``, ``time``), or None."""
    if should_stop():
        return "stopped"
    if config.steps is not None and progress.step >= config.steps:
        return "steps"
    if config.minutes is not None and progress.elapsed >= 60.0 * config.minutes:
        return "time"
    return None


def _loop(
    run: RunParts,
    progress: RunProgress,
    should_stop: Callable[[], bool],
    new_items: queue.Queue | None,
) -> Generator[TrainEvent, None, str]:
    """Step, validate and save until a budget, a stop or early stopping ends it; returns why."""
    config = run.config
    start = time.perf_counter() - progress.elapsed
    while True:
        reason = _stop_reason(config, progress, should_stop)
        if reason is not None:
            return reason
        _refresh_validation(run, progress, new_items)
        loss = yield from _step(run, progress, start)
        if not validation_due(
            config, progress.step, progress.elapsed, progress.last_validated, progress.validated_s
        ):
            continue
        progress.last_validated, progress.validated_s = progress.step, progress.elapsed
        if progress.val_batches:
            score, improved = yield from _validate(run, progress)
            run.schedule.observe(score)
            progress.bad_validations = 0 if improved else progress.bad_validations + 1
        else:
            run.schedule.observe(-loss)
        if latest_due(progress.elapsed, progress.last_saved, progress.saved_s):
            yield save_latest(run, progress)
        patience = config.early_stopping_patience
        if patience is not None and progress.val_batches and progress.bad_validations >= patience:
            return "early_stopping"


def _refresh_validation(
    run: RunParts, progress: RunProgress, new_items: queue.Queue | None
) -> None:
    """Take queued items into the pools; rebuild the validation batches when they changed."""
    drain_new_items(new_items, run.sampler, run.validation, run.config)
    if run.validation.version != progress.val_version:
        progress.val_batches = run.validation.validation_batches(run.config.batch_size)
        progress.val_version = run.validation.version


def _step(run: RunParts, progress: RunProgress, start: float) -> Generator[TrainEvent, None, float]:
    """One optimiser step: set the learning rate, step, check the loss, yield a StepEvent."""
    config = run.config
    step = progress.step
    progress.lr = lr = run.schedule.apply(
        run.optimizer, step, config.progress(step, progress.elapsed)
    )
    tick = time.perf_counter()
    loss = run.runner.step()
    finite_or_raise(loss, step, lr, run.writer.latest_path if step else None)
    progress.step = step = step + 1
    progress.elapsed = elapsed = time.perf_counter() - start
    rate = config.batch_size / max(time.perf_counter() - tick, 1e-9)
    yield StepEvent(step=step, loss=loss, lr=lr, patches_per_s=rate, elapsed_s=elapsed)
    return loss


def _finish(run: RunParts, progress: RunProgress, reason: str) -> Generator[TrainEvent, None, str]:
    """The last validation, ``latest.pt`` and the published ``best.pt``: the final weights
    (``keep="final"`` after a spent budget; always without validation data) or the validation-best
    (written now when none was). Returns which: ``final`` or ``best``."""
    step, val_batches, writer = progress.step, progress.val_batches, run.writer
    due = progress.last_validated != step or not progress.last_metrics  # (a resume has none)
    if val_batches and due and step and reason != "stopped":
        yield from _validate(run, progress)  # a Stop skips it: the user asked to stop now
    if progress.last_saved != step:
        yield save_latest(run, progress)
    spent = reason in ("steps", "time")  # not a Stop, not early stopping (it wants the best)
    final = run.config.keep == "final" and spent and step > 0 and bool(val_batches)
    if final:  # the weights at the end of the budget, not a pick by a few held-back tiles
        if progress.best_step != step:  # (else the last validation just wrote them)
            progress.best_metrics = dict(progress.last_metrics)
            yield write_best(run, progress, progress.best_metrics)
        return "final"
    if not progress.best_written and (not val_batches or not writer.best_path.exists()):
        # no validation data (or no improvement after a resume): the final model is the best
        yield write_best(run, progress, progress.best_metrics)
        return "final" if not val_batches else "best"
    return "best"


def _validate(
    run: RunParts, progress: RunProgress
) -> Generator[TrainEvent, None, tuple[float, bool]]:
    """Evaluate on the validation batches; write ``best.pt`` when the score improved."""
    metrics = evaluate(
        run.model,
        progress.val_batches,
        task=run.config.task,
        loss_fn=run.loss_fn,
        device=run.device,
    )
    finite_or_raise(metrics["loss"], progress.step - 1, progress.lr, run.writer.latest_path)
    improved = progress.best_score is None or metrics["score"] > progress.best_score
    progress.last_metrics = metrics
    yield ValidationEvent(step=progress.step, metrics=metrics, improved=improved)
    if improved:
        progress.best_score, progress.best_metrics = metrics["score"], metrics
        yield write_best(run, progress, metrics)
    return metrics["score"], improved


def train(*args: Any, **kwargs: Any) -> TrainResult:
    """Run :func:`iter_train` to the end (same arguments) and return its result."""
    return run_to_end(iter_train(*args, **kwargs))
