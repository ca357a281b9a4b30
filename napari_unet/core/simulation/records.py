"""What the human-in-the-loop experiment reports: :class:`SimulateProgress` inside a round, one
:class:`RoundRecord` per round and the :class:`SimulateResult` (all JSON-ready). Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["RoundJudged", "RoundRecord", "SimulateEvent", "SimulateProgress", "SimulateResult"]


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclasses.dataclass(frozen=True)
class RoundRecord:
    """One round: what was corrected, how long training ran, and the held-out metrics.

    Attributes:
        round: 0 for the initial model, then 1, 2, ...
        corrected_images: images corrected so far (cumulative).
        new_images: names of the images corrected in this round.
        minutes_trained: wall-clock minutes of this round's training (0 for round 0).
        cumulative_minutes: training minutes so far.
        steps: optimisation steps of this round.
        pixels_corrected, objects_corrected: the correction effort of this round (module doc).
        metrics: mean of :func:`~napari_unet.core.evaluation.score.evaluate_pair` over the held-out
            images (NaN where undefined on every image).
        note: why the round's model was not kept ("version not published: held-back score
            0.610 < parent 0.650"; the parent went on), else "".
        postprocess: the post-processing the held-out images were labelled with: the round's
            model's own (``PostprocessConfig.to_dict()``).
        held_back: a guarded round's judgement on the held-back tiles of the corrected images
            (:meth:`RoundJudged.summary`: metric, the child's and the parent's score, whether the
            child was published); empty for a round trained from a fresh model.
        intensities_flipped: from this round on the images are flipped for a start model
            trained the other way up (``core.simulation.plan.flipped_for_start``).
    """

    round: int
    corrected_images: int
    new_images: tuple[str, ...]
    minutes_trained: float
    cumulative_minutes: float
    steps: int
    pixels_corrected: int
    objects_corrected: int
    metrics: dict
    note: str = ""
    postprocess: dict = dataclasses.field(default_factory=dict)
    held_back: dict = dataclasses.field(default_factory=dict)
    intensities_flipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN/Inf metrics become None)."""
        data = dataclasses.asdict(self)
        data["new_images"] = list(self.new_images)
        data["metrics"] = {k: _finite_or_none(v) for k, v in self.metrics.items()}
        data["held_back"] = {k: _finite_or_none(v) for k, v in self.held_back.items()}
        return data


@dataclasses.dataclass(frozen=True)
class RoundJudged:
    """A guarded round's fine-tuned model against its parent on the held-back tiles of the
    corrected images, each with its own post-processing: ``published`` when it scored higher;
    otherwise the parent was kept and ``message`` says so in one sentence."""

    round: int
    metric: str
    score: float | None
    parent_score: float | None
    published: bool
    message: str = ""

    def summary(self) -> dict[str, Any]:
        """``RoundRecord.held_back``: metric, score, parent_score, published."""
        names = ("metric", "score", "parent_score", "published")
        return {name: getattr(self, name) for name in names}


@dataclasses.dataclass(frozen=True)
class SimulateProgress:
    """Work inside a round: ``phase`` is ``evaluate``, ``correct`` or ``train``.

    ``done``/``total`` count images (evaluate, correct) or steps (train; ``total`` 0 when the
    budget is in minutes); ``loss`` is the last training loss.
    """

    round: int
    phase: str
    done: int
    total: int
    loss: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class SimulateResult:
    """The whole experiment: the rounds, the split, and the final model."""

    rounds: tuple[RoundRecord, ...]
    held_out: tuple[str, ...]
    corrected: tuple[str, ...]
    model: Any

    def to_dict(self, config: dict | None = None) -> dict[str, Any]:
        """``{"rounds": [...], "config": {...}, "held_out": [...], "corrected": [...]}``."""
        return {
            "rounds": [r.to_dict() for r in self.rounds],
            "config": dict(config or {}),
            "held_out": list(self.held_out),
            "corrected": list(self.corrected),
        }


SimulateEvent = SimulateProgress | RoundRecord
