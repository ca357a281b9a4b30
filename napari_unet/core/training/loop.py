"""The training loop: fine-tune a U-Net on annotated regions, as a generator of typed events.

``iter_train`` yields :class:`StepEvent` after every step, :class:`ValidationEvent` every
``val_every`` steps and :class:`CheckpointEvent` when ``best.pt`` / ``latest.pt`` are written; it
returns a :class:`TrainResult`. ``train`` drains it. Patches come only from annotated pixels
(class-balanced, see :mod:`napari_unet.core.training.sampler`); validation uses held-back annotated
tiles that are never trained on. ``latest.pt`` carries the full training state, so
``iter_train(..., resume_from=latest)`` continues bit-identically on the CPU. After training an
instance model (unless stopped), the post-processing is re-tuned on the held-back tiles and stored
in ``best.pt`` (:func:`tune_best`, ``TrainConfig.tune_postprocess``).

Example:
    >>> result = train(build_model("unet", depth=2, base_channels=8), items,
    ...     TrainConfig(task="binary", steps=100, checkpoint_dir="run"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import torch

from napari_unet.core.device import get_device
from napari_unet.core.generators import run_to_end
from napari_unet.core.training.augment import AugmentConfig
from napari_unet.core.training.config import (
    CheckpointEvent,
    StepEvent,
    TrainConfig,
    TrainEvent,
    TrainResult,
    ValidationEvent,
)
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.losses import LossConfig, SegmentationLoss
from napari_unet.core.training.schedule import LearningRateSchedule, build_optimizer
from napari_unet.core.training.state import (
    CheckpointWriter,
    build_pools,
    capture_state,
    drain_new_items,
    finite_or_raise,
    load_resume_state,
    resolve_model,
    restore_state,
    stop_function,
)
from napari_unet.core.training.step import StepRunner
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
    task = config.task
    device = get_device(config.device)
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        return (
            yield from _run(
                source, items, config, task, device, should_stop, resume_from, val_items, new_items
            )
        )
    finally:
        if config.num_threads:
            torch.set_num_threads(previous_threads)
        model.to("cpu")


def _run(source, items, config, task, device, should_stop, resume_from, val_items, new_items):
    model = source.model
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    sampler, validation, input_shape = build_pools(model, items, val_items, config)
    val_batches = validation.validation_batches(config.batch_size)
    val_version = validation.version

    if config.freeze_encoder:
        for parameter in model.encoder_parameters():
            parameter.requires_grad_(False)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(
        parameters,
        config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
    )
    schedule = LearningRateSchedule(
        config.schedule,
        config.lr,
        warmup_steps=config.warmup_steps,
        patience=config.plateau_patience,
    )
    loss_fn = SegmentationLoss(config.loss, task)
    runner = StepRunner(model, optimizer, loss_fn, config, device, generator, sampler)
    checkpoint_dir = config.checkpoint_dir or tempfile.mkdtemp(prefix="napari-unet-train-")
    writer = CheckpointWriter(
        checkpoint_dir,
        source,
        task=task,
        class_names=config.class_names,
        normalization=config.normalization,
        input_shape=input_shape,
    )

    step, elapsed, best_score, best_metrics, bad_validations = 0, 0.0, None, {}, 0
    best_written = False
    if resume_from is not None:
        state = load_resume_state(resume_from, model)
        model.to(device)
        restore_state(
            state,
            optimizer=optimizer,
            schedule=schedule,
            scaler=runner.scaler,
            sampler=sampler,
            generator=generator,
        )
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        best_score, bad_validations = state.get("best_score"), int(state["bad_validations"])
        best_metrics = dict(state.get("best_metrics") or {})
        logger.info("resumed from %s at step %d", resume_from, step)

    def provenance(metrics: dict) -> dict[str, Any]:
        return {
            "data": {
                "n_images": len(sampler.items),
                "annotated_pixels": sampler.annotated_pixels(),
                "validation_pixels": validation.annotated_pixels() if val_batches else 0,
            },
            "steps": step,
            "elapsed_s": round(elapsed, 3),
            "metrics": metrics,
            "seed": config.seed,
            "train_config": config.to_dict(),
        }

    def save_latest() -> CheckpointEvent:
        state = capture_state(
            step=step,
            elapsed_s=elapsed,
            optimizer=optimizer,
            schedule=schedule,
            scaler=runner.scaler,
            sampler=sampler,
            generator=generator,
            extra={
                "best_score": best_score,
                "best_metrics": best_metrics,
                "bad_validations": bad_validations,
                "train_config": config.to_dict(),
            },
        )
        path = writer.write("latest", provenance(best_metrics), state)
        return CheckpointEvent(step=step, path=path, kind="latest")

    def validate(lr: float):
        nonlocal best_score, best_metrics, best_written
        metrics = evaluate(model, val_batches, task=task, loss_fn=loss_fn, device=device)
        finite_or_raise(metrics["loss"], step - 1, lr, writer.latest_path)
        improved = best_score is None or metrics["score"] > best_score
        yield ValidationEvent(step=step, metrics=metrics, improved=improved)
        if improved:
            best_score, best_metrics, best_written = metrics["score"], metrics, True
            yield CheckpointEvent(step, writer.write("best", provenance(metrics)), "best")
        return metrics["score"], improved

    reason, lr = "steps", config.lr
    start = time.perf_counter() - elapsed
    last_validated, last_saved = step, -1
    while True:
        if should_stop():
            reason = "stopped"
            break
        if config.steps is not None and step >= config.steps:
            reason = "steps"
            break
        if config.minutes is not None and elapsed >= 60.0 * config.minutes:
            reason = "time"
            break
        drain_new_items(new_items, sampler, validation, config)
        if validation.version != val_version:
            val_batches = validation.validation_batches(config.batch_size)
            val_version = validation.version
        progress = config.progress(step, elapsed)
        lr = schedule.apply(optimizer, step, progress)
        tick = time.perf_counter()
        loss = runner.step()
        finite_or_raise(loss, step, lr, writer.latest_path if step else None)
        step += 1
        elapsed = time.perf_counter() - start
        rate = config.batch_size / max(time.perf_counter() - tick, 1e-9)
        yield StepEvent(step=step, loss=loss, lr=lr, patches_per_s=rate, elapsed_s=elapsed)
        if step % config.val_every:
            continue
        last_validated = step
        if val_batches:
            score, improved = yield from validate(lr)
            schedule.observe(score)
            bad_validations = 0 if improved else bad_validations + 1
        else:
            schedule.observe(-loss)
        yield save_latest()
        last_saved = step
        patience = config.early_stopping_patience
        if patience is not None and val_batches and bad_validations >= patience:
            reason = "early_stopping"
            break

    if val_batches and last_validated != step and step and reason != "stopped":
        yield from validate(lr)  # a Stop skips it: the user asked to stop now
    if last_saved != step:
        yield save_latest()
    if not best_written and (not val_batches or not writer.best_path.exists()):
        # no validation data (or no improvement after a resume): the final model is the best
        yield CheckpointEvent(step, writer.write("best", provenance(best_metrics)), "best")
    logger.info("training finished after %d steps (%s)", step, reason)
    operating_point = None
    tune = config.tune_postprocess and task == "instances" and bool(val_batches) and step > 0
    if tune and reason != "stopped":  # a Stop skips it (as the final validation): stop now
        operating_point, changed = tune_best(writer.best_path, validation.items, config)
        if changed:  # listeners (the trainer process) publish the re-tuned model
            yield CheckpointEvent(step, writer.best_path, "best")
    return TrainResult(
        best_path=writer.best_path,
        latest_path=writer.latest_path,
        steps=step,
        best_metrics=best_metrics,
        stopped_early=reason in ("stopped", "early_stopping", "time"),
        reason=reason,
        operating_point=operating_point,
    )


def tune_best(
    best_path: Path, val_items: Sequence[TrainingItem], config: TrainConfig
) -> tuple[dict | None, bool]:
    """Re-tune the post-processing of ``best_path`` on ``val_items`` and store it there.

    Returns:
        ``(report, changed)``: ``provenance["operating_point"]`` now in the checkpoint (None when
        the held-back tiles hold no object: nothing is written) and whether the stored
        post-processing changed.
    """
    from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint
    from napari_unet.core.inference.prediction import PredictConfig
    from napari_unet.core.training.operating_point import choose_operating_point

    loaded = load_checkpoint(best_path)
    info = loaded.info
    predict_config = PredictConfig(
        tile_shape=info.tile_shape or (512, 512), overlap=info.overlap, device=config.device
    )
    point = choose_operating_point(
        loaded.model,
        val_items,
        base=info.postprocess_config(),
        predict_config=predict_config,
        tile=config.val_tile,
    )
    if point is None:
        return None, False
    provenance = {**info.provenance, "operating_point": point.report()}
    if point.changed:
        inherited = info.provenance.get("postprocess") or {}
        provenance["postprocess"] = {**inherited, **point.settings()}
    save_checkpoint(
        best_path,
        loaded.model,
        task=info.task,
        class_names=info.class_names,
        normalization=info.normalization,
        tile_shape=info.tile_shape,
        overlap=info.overlap,
        provenance=provenance,
        name=info.name,
        description=info.description,
    )
    return point.report(), point.changed


def train(*args: Any, **kwargs: Any) -> TrainResult:
    """Run :func:`iter_train` to the end (same arguments) and return its result."""
    return run_to_end(iter_train(*args, **kwargs))
