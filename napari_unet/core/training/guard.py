"""The rule that keeps a fine-tune from replacing a better parent (issue 17), torch-free.

A fine-tuned model replaces its parent (a published version, the next round's model) only when it
scores higher than the parent on the same held-back tiles. The Fine-tune dock's trainer
(``trainer.guard``), ``simulate`` and ``bench_hitl`` (through the trainer) apply it.
"""

from __future__ import annotations

__all__ = ["skip_message"]


def skip_message(
    score: float | None, parent_score: float | None, metric: str = "score"
) -> str | None:
    """The sentence saying why a model is not published, or None when it may be.

    A model without a score (no held-back tiles) or without a parent score is published: there
    is nothing to compare it with. ``metric`` names the scores in the user's terms (``"AP@0.5"``:
    "version not published: held-back AP@0.5 0.610 < parent 0.650").
    """
    if score is None or parent_score is None or score > parent_score:
        return None
    sign = "<" if score < parent_score else "="
    return f"version not published: held-back {metric} {score:.3f} {sign} parent {parent_score:.3f}"
