"""The training loop of one rank of a data-parallel run (``torchrun`` or ``train --nproc N``).

:func:`iter_train_distributed` is :func:`~napari_unet.core.training.loop.iter_train` spread over
``world_size`` processes: the same parts (:func:`~napari_unet.core.training.run_parts.build_run`),
the same step, validation and checkpoint functions, with three differences:

- the step runner is a :class:`~napari_unet.core.training.distributed.DistributedStepRunner`
  (DDP: gradients averaged over the ranks, the loss reported is their mean) and each rank draws
  its own patches (:func:`~napari_unet.core.training.distributed.reseed_rank`);
- rank 0 alone decides when to stop (step count, ``--minutes`` on its clock, a stop request),
  validates, writes ``best.pt``/``latest.pt`` (the format of a one-process run) and re-tunes the
  post-processing; it broadcasts the decision, its clock (the learning-rate schedule follows it
  on every rank) and the validation score (plateau schedule, early stopping) to the others;
- the other ranks yield only their step events and write nothing.

Every ``--batch-size`` is per process: a step trains on ``world_size`` times as many patches.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

import torch

from napari_unet.core.device import get_device
from napari_unet.core.training.cadence import latest_due, validation_due
from napari_unet.core.training.config import StepEvent, TrainConfig, TrainEvent, TrainResult
from napari_unet.core.training.distributed import (
    DistributedStepRunner,
    RankGroup,
    RankInfo,
    rank_device,
    reseed_rank,
    translated_errors,
)
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import _finish, _step, _stop_reason, _validate
from napari_unet.core.training.retune import retune_after_training
from napari_unet.core.training.run_parts import RunParts, RunProgress, build_run, resume_run
from napari_unet.core.training.saving import save_latest
from napari_unet.core.training.state import resolve_model, stop_function

__all__ = ["iter_train_distributed"]

logger = logging.getLogger(__name__)

#: Why the loop ends, as broadcast by rank 0 (index 0: it goes on).
REASONS: tuple[str | None, ...] = (None, "stopped", "steps", "time")


def iter_train_distributed(
    model_or_checkpoint: Any,
    items: Sequence[TrainingItem],
    config: TrainConfig,
    info: RankInfo,
    *,
    stop: Any = None,
    resume_from: Any = None,
) -> Generator[TrainEvent, None, TrainResult]:
    """Train as rank ``info.rank`` of ``info.world_size``; returns this rank's :class:`TrainResult`.

    Every rank gets the same ``model_or_checkpoint``, ``items`` and ``config`` (the validation
    split is seeded by ``config.seed``, so it is the same on every rank). Joins the process
    group (``env://``) first and leaves it at the end, also after a failure.

    Raises:
        PeerLostError: another rank failed or was stopped.
        TrainingDataError, TrainingDivergedError: as :func:`iter_train` (on every rank).
    """
    source = resolve_model(model_or_checkpoint, None)
    device = rank_device(get_device(config.device), info)
    group = RankGroup(info, device)
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    group.join()
    try:
        run, progress = build_run(source, items, config, device, None)
        run = dataclasses.replace(run, runner=DistributedStepRunner(run.runner, group))
        if resume_from is not None:
            resume_run(run, progress, resume_from)
        reseed_rank(run.sampler, run.generator, config.seed, info.rank, progress.step)
        events = _rank_events(run, progress, group, stop_function(stop))
        with translated_errors(info):  # DDP's backward raises a plain RuntimeError
            return (yield from _per_world(events, info.world_size))
    finally:
        group.leave()
        if config.num_threads:
            torch.set_num_threads(previous_threads)
        source.model.to("cpu")


def _rank_events(
    run: RunParts, progress: RunProgress, group: RankGroup, should_stop: Callable[[], bool]
) -> Generator[TrainEvent, None, TrainResult]:
    """The loop, then (rank 0) the last validation, checkpoints and re-tuning."""
    reason = yield from _loop(run, progress, group, should_stop)
    operating_point, kept = None, "best"
    if group.rank == 0:
        kept = yield from _finish(run, progress, reason)
        operating_point = yield from retune_after_training(run, progress, reason)
    logger.info(
        "training process %d of %d finished after %d steps (%s)",
        group.rank,
        group.world_size,
        progress.step,
        reason,
    )
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


def _loop(
    run: RunParts, progress: RunProgress, group: RankGroup, should_stop: Callable[[], bool]
) -> Generator[TrainEvent, None, str]:
    """Step in lockstep; rank 0 validates and saves; returns why it ended (same on every rank)."""
    config = run.config
    start = time.perf_counter() - progress.elapsed
    while True:
        reason = _agreed_stop(config, progress, group, should_stop)
        if reason is not None:
            return reason
        agreed = progress.elapsed  # rank 0's clock: every rank takes the same cadence decision
        loss = yield from _step(run, progress, start)
        if not validation_due(
            config, progress.step, agreed, progress.last_validated, progress.validated_s
        ):
            continue
        progress.last_validated, progress.validated_s = progress.step, agreed
        if progress.val_batches:
            score, improved = yield from _validate_on_rank0(run, progress, group)
            run.schedule.observe(score)
            progress.bad_validations = 0 if improved else progress.bad_validations + 1
        else:
            run.schedule.observe(-loss)  # the mean over the ranks: the same everywhere
        if latest_due(agreed, progress.last_saved, progress.saved_s):
            if group.rank == 0:
                yield save_latest(run, progress)
            progress.last_saved, progress.saved_s = progress.step, agreed
        patience = config.early_stopping_patience
        if patience is not None and progress.val_batches and progress.bad_validations >= patience:
            return "early_stopping"


def _agreed_stop(
    config: TrainConfig, progress: RunProgress, group: RankGroup, should_stop: Callable[[], bool]
) -> str | None:
    """Rank 0's stop decision and clock, on every rank (the schedule reads the clock)."""
    code = 0
    if group.rank == 0:
        code = REASONS.index(_stop_reason(config, progress, should_stop))
    code, elapsed = group.share((code, progress.elapsed))
    progress.elapsed = elapsed
    return REASONS[int(code)]


def _validate_on_rank0(
    run: RunParts, progress: RunProgress, group: RankGroup
) -> Generator[TrainEvent, None, tuple[float, bool]]:
    """Rank 0 validates (and writes ``best.pt``); every rank gets its score and verdict."""
    score, improved = 0.0, False
    if group.rank == 0:
        score, improved = yield from _validate(run, progress)
    score, flag = group.share((score, float(improved)))
    return score, bool(flag)


def _per_world(
    events: Generator[TrainEvent, None, TrainResult], world_size: int
) -> Generator[TrainEvent, None, TrainResult]:
    """``events`` with each step's patches/s counted over all ranks (they step together)."""
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            return done.value
        if isinstance(event, StepEvent):
            event = dataclasses.replace(event, patches_per_s=event.patches_per_s * world_size)
        yield event
