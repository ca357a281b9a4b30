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
from napari_unet.core.training.targets import TargetConfig

__all__ = [
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


@dataclasses.dataclass(frozen=True)
class LossConfig(Config):
    """Weights of the loss terms.

    Attributes:
        ce: weighted cross entropy (BCE for binary), the paper's loss.
        dice: soft Dice loss (1 − mean Dice over foreground classes).
        jaccard: ``−log(soft Jaccard)``; with ``ce`` this is TernausNet's ``BCE − log J``
            (per-class soft Jaccard of the softmax for multi-class tasks).
        use_weight_map: multiply the cross entropy by the target weight map when given.
        deep_supervision_weights: one weight per supervised head (shallow to deep);
            ``None`` = equal weights. The loss is the weighted mean of the heads' losses.
        regression: ``"l1"`` or ``"mse"`` for the restoration task.
        smooth: additive smoothing of Dice and Jaccard (keeps empty classes finite).
    """

    ce: float = setting(
        1.0,
        "CE",
        tooltip="Weight of the (border-weighted) cross entropy",
        row="Loss weights",
        min=0.0,
        max=10.0,
        step=0.1,
        advanced=True,
        order=1,
    )
    dice: float = setting(
        0.0,
        "Dice",
        tooltip="Weight of the soft Dice loss",
        row="Loss weights",
        min=0.0,
        max=10.0,
        step=0.1,
        advanced=True,
        order=1,
    )
    jaccard: float = setting(
        0.0,
        "Jacc.",
        tooltip="Weight of the −log Jaccard loss",
        row="Loss weights",
        min=0.0,
        max=10.0,
        step=0.1,
        advanced=True,
        order=1,
    )
    use_weight_map: bool = True
    deep_supervision_weights: tuple[float, ...] | None = None
    regression: str = "l1"
    smooth: float = 1.0

    def __post_init__(self) -> None:
        terms = (self.ce, self.dice, self.jaccard)
        if min(terms) < 0 or sum(terms) <= 0:
            raise ValueError(f"loss weights must be >= 0 with a positive sum, got {terms}")
        if self.regression not in ("l1", "mse"):
            raise ValueError(f"regression must be 'l1' or 'mse', got {self.regression!r}")
        if self.smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {self.smooth}")
        if self.deep_supervision_weights is not None:
            weights = tuple(float(w) for w in self.deep_supervision_weights)
            if not weights or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(
                    f"deep_supervision_weights must be >= 0 with a positive sum, got {weights}"
                )
            object.__setattr__(self, "deep_supervision_weights", weights)


@dataclasses.dataclass(frozen=True)
class AugmentConfig(Config):
    """Augmentation settings; magnitudes are the maxima at ``strength == 1``.

    Attributes:
        flip: random horizontal and vertical flips (each with probability 1/2).
        rot90: random rotation by k * 90 degrees (k uniform in 0..3; 0 or 2 for non-square patches).
        elastic: the paper's elastic deformation.
        elastic_alpha: standard deviation, in pixels, of each displacement component at every
            coarse-grid node AFTER smoothing (the paper: 10 px). The smoothed grid is rescaled
            so this holds exactly at every node, whatever ``elastic_sigma`` is.
        elastic_sigma: Gaussian smoothing of the coarse displacement grid, in grid cells (0 = the
            paper: independent node displacements, smoothed only by the bicubic upsampling).
        elastic_grid: nodes per side of the coarse grid (the paper: 3), spanning the patch
            corner to corner.
        affine_scale: (low, high) zoom factor range (> 1 zooms in).
        affine_rotation_deg: maximum rotation angle in degrees (uniform in +-this).
        gamma: (low, high) gamma range, applied to the sample's intensity range rescaled to [0, 1].
        brightness: maximum additive shift, as a fraction of the sample's intensity range.
        contrast: maximum relative contrast change around the sample's mean.
        noise_std: maximum Gaussian noise std, as a fraction of the sample's intensity range
            (each sample draws its std uniformly in [0, noise_std]).
        blur_sigma: (low, high) Gaussian blur sigma range in pixels.
        probability: probability that each random op (elastic, affine, gamma, brightness/contrast,
            noise, blur) is applied to a sample, independently per op and sample.
        image_interpolation: ``"bilinear"`` or ``"bicubic"`` resampling of the image.
        strength: 0..1, scales every magnitude (ranges shrink towards the identity); 0 = identity.
    """

    flip: bool = True
    rot90: bool = True
    elastic: bool = True
    elastic_alpha: float = 10.0
    elastic_sigma: float = 0.0
    elastic_grid: int = 3
    affine_scale: tuple[float, float] = (0.9, 1.1)
    affine_rotation_deg: float = 15.0
    gamma: tuple[float, float] = (0.7, 1.5)
    brightness: float = 0.1
    contrast: float = 0.2
    noise_std: float = 0.03
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    probability: float = 0.5
    image_interpolation: str = "bilinear"
    strength: float = setting(
        1.0,
        "Augmentation",
        tooltip="Augmentation strength (flips, elastic, affine, intensity), 0–1",
        widget="FloatSlider",
        min=0.0,
        max=1.0,
        step=0.01,
        order=2,
    )

    def __post_init__(self) -> None:
        checks = {
            "elastic_alpha": self.elastic_alpha >= 0,
            "elastic_sigma": self.elastic_sigma >= 0,
            "elastic_grid": self.elastic_grid >= 2,
            "affine_scale": 0 < self.affine_scale[0] <= self.affine_scale[1],
            "affine_rotation_deg": 0 <= self.affine_rotation_deg <= 180,
            "gamma": 0 < self.gamma[0] <= self.gamma[1],
            "brightness": self.brightness >= 0,
            "contrast": 0 <= self.contrast < 1,
            "noise_std": self.noise_std >= 0,
            "blur_sigma": 0 <= self.blur_sigma[0] <= self.blur_sigma[1] <= 10,
            "probability": 0 <= self.probability <= 1,
            "image_interpolation": self.image_interpolation in ("bilinear", "bicubic"),
            "strength": 0 <= self.strength <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"AugmentConfig: invalid {values}")


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
        val_every: steps between validations (and ``latest.pt`` writes).
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
            in ``best.pt`` (:mod:`napari_unet.core.training.operating_point`); False keeps the
            inherited (or default) setting.
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
