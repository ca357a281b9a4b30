"""Training settings: :class:`TrainConfig` and the loss and augmentation settings it holds.

Frozen, validated :class:`~napari_unet.core.config.Config` records (a ``TrainConfig`` goes into
every checkpoint's provenance and crosses the process boundary to the GUI's trainer), in a
module that does not import torch. Fields the GUI shows carry their label and limits
(:func:`~napari_unet.core.config.setting`); the settings forms are generated from them. The
events the training loop yields live in :mod:`napari_unet.core.training.events` and are
importable from here too.
"""

from __future__ import annotations

import dataclasses

from napari_unet.core.config import Config, check_task, setting
from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.core.training.events import (
    CheckpointEvent,
    StepEvent,
    TrainEvent,
    TrainResult,
    ValidationEvent,
)
from napari_unet.core.training.loss_augment_config import AugmentConfig, LossConfig
from napari_unet.core.training.targets import TargetConfig

__all__ = [
    "KEEPS",
    "OPTIMIZERS",
    "SCHEDULES",
    "AugmentConfig",
    "CheckpointEvent",
    "LossConfig",
    "StepEvent",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "ValidationEvent",
]

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
#: Learning-rate schedules (:class:`~napari_unet.core.training.schedule.LearningRateSchedule`).
SCHEDULES: tuple[str, ...] = ("cosine", "plateau", "constant")
#: Which weights a finished run publishes in ``best.pt`` (:attr:`TrainConfig.keep`).
KEEPS: tuple[str, ...] = ("final", "best")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """How to train.

    Attributes:
        task: ``binary``, ``semantic``, ``instances`` or ``restoration`` (must match the model).
        steps, minutes: the budget; training stops at whichever comes first. With neither,
            ``steps`` is 500.
        batch_size: patches per step.
        patch_shape: (h, w) of the OUTPUT window per patch; valid-convolution models get their
            larger input context on top, padded nets round up to a size they accept.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (with ``momentum``, the paper's 0.99).
        lr, weight_decay, momentum: optimiser settings.
        schedule: ``cosine`` (over the budget), ``plateau`` (halve after ``plateau_patience``
            validations without improvement) or ``constant``; all after ``warmup_steps``.
        grad_clip: maximum gradient norm, or None.
        amp: mixed precision (fp16 autocast + gradient scaling) on CUDA.
        bf16_cpu: bf16 autocast on the CPU; None (default) = on where the CPU has native bf16
            units (AVX512-BF16/AMX: 2.4x the fp32 patches/s in bench_train), off elsewhere.
        channels_last: channels-last memory format for model and batches.
        val_fraction: fraction of annotated ``val_tile`` tiles held back for validation.
        val_every: steps between validations; a ``minutes`` budget also validates by time
            (:mod:`~napari_unet.core.training.cadence`: also when ``latest.pt`` is written).
        early_stopping_patience: stop after this many validations without improvement.
        seed: makes a run reproducible on the CPU.
        freeze_encoder: train only the decoder (``model.encoder_parameters()`` frozen).
        loss, augment, targets: settings of the loss, augmentation and target construction
            (``targets.task`` is overridden by ``task``).
        normalization: how the items were normalised (stored in the checkpoints); None keeps
            the fine-tuned checkpoint's (or the default).
        class_names: stored in the checkpoints; empty keeps the checkpoint's or the defaults.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        num_threads: torch CPU threads during training (None = torch's default).
        checkpoint_dir: folder for ``best.pt`` and ``latest.pt`` (None = a new temporary one).
        tune_postprocess: instance models: after training, choose the post-processing
            (thresholds, minimum size, unseeded foreground) on the held-back tiles and store it
            in ``best.pt`` (:mod:`napari_unet.core.training.operating_point`); binary and
            2-class semantic models: the class-1 threshold and minimum size
            (:mod:`~napari_unet.core.training.operating_point_semantic`); False keeps the
            inherited (or default) setting.
        keep: which weights a run that used its budget publishes in ``best.pt`` (copied to
            ``--out``, offered as the new version): ``final`` (default), the weights at the end
            of the budget, where the cosine schedule has brought the learning rate down; or
            ``best``, the validation-best weights. Either way the operating point is tuned on
            the held-back tiles and a child must beat its parent there to be published; ``final``
            does not pick among checkpoints by a pixel score on those few tiles, which made the
            recipe's spread over seeds (docs/learning_ablation.md). A stopped or early-stopped
            run keeps its validation-best; during a run ``best.pt`` holds the best so far.
    """

    task: str = "semantic"
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = setting(
        4,
        "Batch size",
        tooltip="Patches per step (lower it on a small GPU)",
        min=1,
        max=64,
        advanced=True,
        order=3,
    )
    patch_shape: tuple[int, int] = setting(
        (256, 256),
        "Patch size",
        tooltip="Side of the training patches (output window)",
        min=32,
        max=2048,
        step=32,
        suffix=" px",
        square=True,
        advanced=True,
        order=2,
    )
    optimizer: str = "adam"
    lr: float = setting(
        1e-3,
        "Learning rate",
        tooltip="Learning rate: 1e-4 to fine-tune a trained model, 1e-3 from scratch",
        widget="LineEdit",
        min=1e-7,
        max=1.0,
        order=1,
    )
    weight_decay: float = 0.0
    momentum: float = 0.99
    schedule: str = "cosine"
    warmup_steps: int = 0
    plateau_patience: int = 3
    grad_clip: float | None = 1.0
    amp: bool = True
    bf16_cpu: bool | None = None
    channels_last: bool = True
    val_fraction: float = 0.1
    val_tile: int = 128
    val_every: int = 50
    early_stopping_patience: int | None = None
    seed: int = 0
    freeze_encoder: bool = setting(
        False,
        "Freeze encoder",
        tooltip="Train only the decoder: faster, safer with very few corrections",
        order=3,
    )
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    targets: TargetConfig = dataclasses.field(default_factory=TargetConfig)
    normalization: NormalizationConfig | None = None
    class_names: tuple[str, ...] = ()
    device: str = "auto"
    num_threads: int | None = None
    checkpoint_dir: str | None = None
    tune_postprocess: bool = True
    keep: str = "final"

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.steps is None and self.minutes is None:
            object.__setattr__(self, "steps", 500)
        if self.checkpoint_dir is not None:
            object.__setattr__(self, "checkpoint_dir", str(self.checkpoint_dir))
        object.__setattr__(self, "patch_shape", tuple(int(s) for s in self.patch_shape))
        checks = {
            "steps": self.steps is None or self.steps >= 1,
            "minutes": self.minutes is None or self.minutes > 0,
            "batch_size": self.batch_size >= 1,
            "patch_shape": len(self.patch_shape) in (2, 3) and min(self.patch_shape) >= 1,
            "optimizer": self.optimizer in OPTIMIZERS,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "momentum": 0 <= self.momentum < 1,
            "schedule": self.schedule in SCHEDULES,
            "warmup_steps": self.warmup_steps >= 0,
            "plateau_patience": self.plateau_patience >= 1,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "val_fraction": 0 <= self.val_fraction < 1,
            "val_tile": self.val_tile >= 8,
            "val_every": self.val_every >= 1,
            "early_stopping_patience": self.early_stopping_patience is None
            or self.early_stopping_patience >= 1,
            "num_threads": self.num_threads is None or self.num_threads >= 1,
            "keep": self.keep in KEEPS,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"TrainConfig: invalid {values}")

    def progress(self, step: int, elapsed_s: float) -> float:
        """Fraction of the budget used, in [0, 1] (the larger of steps and time)."""
        done = 0.0
        if self.steps is not None:
            done = max(done, step / self.steps)
        if self.minutes is not None:
            done = max(done, elapsed_s / (60.0 * self.minutes))
        return min(done, 1.0)
