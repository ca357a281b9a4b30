"""Which class weights a run trains with: a new model's by the task, a fine-tune's as its start.

A new instance model is trained with the square roots of the inverse-frequency class weights
(:data:`~napari_unet.core.training.targets.AUTO_CLASS_BALANCE`): where objects are rare the full
weights make it paint every doubtful pixel foreground. A fine-tune keeps the weighting its start
model was trained with -- its probabilities, and the operating point tuned on them, were learnt
under it -- read from the start checkpoint's recorded training settings; a model recorded
without one (every built-in, every model trained before the square root) was trained with the
full inverse-frequency weights. ``train``, ``simulate`` and the Fine-tune dock apply
:func:`with_start_balance`; it writes the value out, so the checkpoint records it.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["start_class_balance", "with_start_balance"]

logger = logging.getLogger(__name__)

#: Words for the log line.
NAMES = {True: "inverse frequency", "sqrt": "square root of inverse frequency", False: "none"}

#: The values a checkpoint's ``TargetConfig.class_balance`` is read as recording; ``None`` (auto,
#: left so by a model trained before session 23 or through ``core.training.train`` directly)
#: reads as the full weights.
RECORDED = (True, False, "sqrt")


def start_class_balance(start: Any) -> bool | str | None:
    """The class weighting of the start model (a ``CheckpointInfo``), or None for a new model.

    ``None`` for no start or a new model never trained (``start.untrained``); the recorded
    ``train_config.targets.class_balance`` when it is one of :data:`RECORDED`; ``True`` (full
    inverse-frequency weights, the only weighting before session 23) otherwise.
    """
    if start is None or getattr(start, "untrained", False):
        return None
    provenance = getattr(start, "provenance", None) or {}
    config = provenance.get("train_config")
    targets = config.get("targets") if isinstance(config, dict) else None
    recorded = targets.get("class_balance") if isinstance(targets, dict) else None
    return recorded if recorded in RECORDED else True


def with_start_balance(targets: Any, start: Any, task: str | None = None) -> Any:
    """``targets`` (a ``TargetConfig``) with ``class_balance`` written out: as given when set,
    else the start model's (:func:`start_class_balance`), else the auto value of ``task`` (default
    ``targets.task``; a ``TrainConfig``'s own task overrides its targets' later)."""
    if targets.class_balance is not None:
        return targets
    inherited = start_class_balance(start)
    auto = targets.replace(task=task or targets.task).resolved_class_balance
    balance = auto if inherited is None else inherited
    why = "a new model" if inherited is None else "as the start model was trained"
    logger.info("class weights: %s (%s)", NAMES.get(balance, balance), why)
    return targets.replace(class_balance=balance)
