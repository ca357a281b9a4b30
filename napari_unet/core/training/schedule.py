"""Learning-rate schedules: linear warm-up, then cosine decay, plateau reduction or constant.

The schedule is a small object with plain-data state (so a checkpoint restores it exactly) that
sets the learning rate of every parameter group before each step. The cosine decay follows the
training progress in [0, 1]: steps done / step budget, or elapsed / time budget when training
is limited by minutes only.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from napari_unet.core.training.config import SCHEDULES

logger = logging.getLogger(__name__)

__all__ = ["SCHEDULES", "LearningRateSchedule", "build_optimizer"]


class LearningRateSchedule:
    """Warm-up + cosine / plateau / constant learning rate.

    Args:
        kind: ``cosine`` (to ``min_factor * lr`` at the end of the budget), ``plateau`` (multiply
            by ``factor`` after ``patience`` validations without improvement) or ``constant``.
        lr: the peak learning rate.
        warmup_steps: linear ramp from ``lr / warmup_steps`` to ``lr`` over this many steps.
        patience: plateau only: validations without improvement before a reduction.
        factor: plateau only: multiplier applied at each reduction.
        min_factor: the smallest fraction of ``lr`` any schedule goes down to.
    """

    def __init__(
        self,
        kind: str,
        lr: float,
        *,
        warmup_steps: int = 0,
        patience: int = 3,
        factor: float = 0.5,
        min_factor: float = 0.01,
    ) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
        self.kind = kind
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.patience = patience
        self.factor = factor
        self.min_factor = min_factor
        self.plateau_factor = 1.0
        self.best: float | None = None
        self.bad_epochs = 0

    def lr_at(self, step: int, progress: float) -> float:
        """Learning rate for step ``step`` (0-based) at ``progress`` in [0, 1] of the budget."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            fraction = min(max(progress, 0.0), 1.0)
            cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
            return self.lr * (self.min_factor + (1.0 - self.min_factor) * cosine)
        if self.kind == "plateau":
            return self.lr * max(self.plateau_factor, self.min_factor)
        return self.lr

    def apply(self, optimizer: torch.optim.Optimizer, step: int, progress: float) -> float:
        """Set the learning rate of every parameter group; returns it."""
        lr = self.lr_at(step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def observe(self, score: float) -> None:
        """Feed a validation score (higher is better); plateau schedules may reduce the rate."""
        if self.kind != "plateau" or not math.isfinite(score):
            return
        if self.best is None or score > self.best:
            self.best, self.bad_epochs = score, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.plateau_factor *= self.factor
            self.bad_epochs = 0
            logger.info("no improvement: learning rate x%.3g", self.plateau_factor)

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state for a checkpoint."""
        return {
            "plateau_factor": self.plateau_factor,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.plateau_factor = float(state["plateau_factor"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


def build_optimizer(
    parameters: list[torch.nn.Parameter],
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.99,
) -> torch.optim.Optimizer:
    """Adam, AdamW, or the U-Net paper's SGD with high momentum (0.99 by default)."""
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")
