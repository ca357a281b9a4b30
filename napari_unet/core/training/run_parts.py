"""The parts of one training run, built once, and its progress, updated as it goes.

:func:`build_run` seeds torch, builds the patch pools, the optimiser, schedule, loss, step runner
and checkpoint writer (in this order: the order fixes the random streams, so a resumed run continues
bit-identically); :func:`resume_run` loads a ``latest.pt`` into them. Used by
:mod:`napari_unet.core.training.loop`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from napari_unet.core.models import SegmentationNet
from napari_unet.core.training.config import TrainConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.losses import SegmentationLoss
from napari_unet.core.training.sampler import PatchBatch, PatchSampler
from napari_unet.core.training.schedule import LearningRateSchedule, build_optimizer
from napari_unet.core.training.skeleton import resolve_skeleton_recall
from napari_unet.core.training.state import (
    CheckpointWriter,
    ModelSource,
    build_pools,
    load_resume_state,
    restore_state,
)
from napari_unet.core.training.step import StepRunner, channels_last_format

__all__ = ["RunParts", "RunProgress", "build_run", "resume_run"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunParts:
    """The fixed parts of one training run (built once by :func:`build_run`)."""

    model: SegmentationNet
    config: TrainConfig
    device: torch.device
    generator: torch.Generator
    sampler: PatchSampler
    validation: PatchSampler
    optimizer: torch.optim.Optimizer
    schedule: LearningRateSchedule
    loss_fn: SegmentationLoss
    runner: StepRunner
    writer: CheckpointWriter


@dataclass
class RunProgress:
    """What changes as the run goes: the step, the clock, the best score so far."""

    val_batches: list[PatchBatch]
    val_version: int
    step: int = 0
    elapsed: float = 0.0
    best_score: float | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, float] = field(default_factory=dict)  # the last validation's
    bad_validations: int = 0
    best_written: bool = False
    best_step: int = -1  # the step of the weights in best.pt (written by this process)
    lr: float = 0.0
    last_validated: int = 0
    validated_s: float = 0.0  # the clock at the last validation (time-based cadence)
    last_saved: int = -1
    saved_s: float = 0.0  # the clock at the last ``latest.pt`` (cadence.latest_due)


def _prepare_model(
    model: SegmentationNet, config: TrainConfig, device: torch.device
) -> list[torch.nn.Parameter]:
    """Freeze the encoder if asked, move ``model`` to ``device`` in train mode; returns the
    parameters to optimise."""
    if config.freeze_encoder:
        for parameter in model.encoder_parameters():
            parameter.requires_grad_(False)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=channels_last_format(model))
    model.train()
    return [p for p in model.parameters() if p.requires_grad]


def build_run(
    source: ModelSource,
    items: Sequence[TrainingItem],
    config: TrainConfig,
    device: torch.device,
    val_items: Sequence[TrainingItem] | None,
) -> tuple[RunParts, RunProgress]:
    """Decide the data's loss settings, seed, build the pools, optimiser, schedule, loss, step
    runner and checkpoint writer (the run and its checkpoints hold the decided settings)."""
    model = source.model
    config = resolve_skeleton_recall(config, [*items, *(val_items or ())], model.out_channels)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    sampler, validation, input_shape = build_pools(model, items, val_items, config)
    progress = RunProgress(
        val_batches=validation.validation_batches(config.batch_size),
        val_version=validation.version,
        lr=config.lr,
    )
    parameters = _prepare_model(model, config, device)
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
    loss_fn = SegmentationLoss(config.loss, config.task)
    runner = StepRunner(model, optimizer, loss_fn, config, device, generator, sampler)
    checkpoint_dir = config.checkpoint_dir or tempfile.mkdtemp(prefix="napari-unet-train-")
    writer = CheckpointWriter(
        checkpoint_dir,
        source,
        task=config.task,
        class_names=config.class_names,
        normalization=config.normalization,
        input_shape=input_shape,
    )
    run = RunParts(
        model,
        config,
        device,
        generator,
        sampler,
        validation,
        optimizer,
        schedule,
        loss_fn,
        runner,
        writer,
    )
    return run, progress


def resume_run(run: RunParts, progress: RunProgress, resume_from: str | os.PathLike) -> None:
    """Load the weights and training state of ``resume_from`` into ``run`` and ``progress``."""
    state = load_resume_state(resume_from, run.model)
    run.model.to(run.device)
    restore_state(
        state,
        optimizer=run.optimizer,
        schedule=run.schedule,
        scaler=run.runner.scaler,
        sampler=run.sampler,
        generator=run.generator,
    )
    progress.step, progress.elapsed = int(state["step"]), float(state["elapsed_s"])
    progress.best_score = state.get("best_score")
    progress.bad_validations = int(state["bad_validations"])
    progress.best_metrics = dict(state.get("best_metrics") or {})
    progress.last_validated, progress.validated_s = progress.step, progress.elapsed
    logger.info("resumed from %s at step %d", resume_from, progress.step)
