"""The typed events the training loop yields, and what a run produced.

Small frozen dataclasses that cross process boundaries (the GUI trains in a child process and
streams them through a queue); no torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class StepEvent:
    """One optimisation step done: ``step`` counts from 1; ``loss`` is this batch's loss."""

    step: int
    loss: float
    lr: float
    patches_per_s: float
    elapsed_s: float


@dataclasses.dataclass(frozen=True)
class ValidationEvent:
    """Metrics on the held-back tiles after ``step`` (``metrics["score"]`` selects the best)."""

    step: int
    metrics: dict
    improved: bool


@dataclasses.dataclass(frozen=True)
class CheckpointEvent:
    """A checkpoint was written atomically: ``kind`` is ``best`` or ``latest``.

    ``metrics``: the validation metrics of the weights written (``best``; empty when they were
    not validated), None where not given.
    """

    step: int
    path: Path
    kind: str
    metrics: dict | None = None


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        best_path: the published checkpoint: the final weights (``TrainConfig.keep="final"``,
            a run that used its budget, or no validation data) or the best validation score.
        latest_path: the last state, with the training state for resuming.
        steps: steps done in total.
        best_metrics: validation metrics of ``best_path`` (empty without validation).
        stopped_early: True unless the step budget was used up.
        reason: ``steps``, ``time``, ``stopped`` or ``early_stopping``.
        operating_point: ``provenance["operating_point"]`` of ``best_path`` when the
            post-processing was tuned on the held-back tiles (instance models), else None.
        kept: which weights ``best_path`` holds: ``final`` or ``best`` (validation-best).
    """

    best_path: Path
    latest_path: Path
    steps: int
    best_metrics: dict
    stopped_early: bool
    reason: str
    operating_point: dict | None = None
    kept: str = "best"


TrainEvent = StepEvent | ValidationEvent | CheckpointEvent
