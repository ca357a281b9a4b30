"""The experiment's fixed plan: which images are corrected (in order), which are held out, their
ground truths, and the images flipped for a start model trained the other way up.

:func:`make_plan` splits the images (seeded, :func:`~napari_unet.core.simulation.parts.plan_split`).
:func:`flipped_for_start` runs after round 0 has scored the start model as it is: when the start
model is trained (a built-in or checkpoint) and sees round 1's corrected images better with
their intensities flipped (:func:`~napari_unet.core.training.polarity.choose_polarity`, the
choice ``train`` and the Fine-tune dock make on the corrections), every image of the experiment
is flipped from then on, as a user's would be once they corrected those images.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

from napari_unet.core.errors import UserInputError
from napari_unet.core.simulation.config import SimulateConfig
from napari_unet.core.simulation.parts import mapped_truth, plan_split
from napari_unet.core.training.items import TrainingItem

__all__ = ["Plan", "flipped_for_start", "make_plan"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """Which images are corrected (``order``) and which held out (``held``), their mapped ground
    truths, the stop check; ``start_trained``: the start model is trained (its polarity is
    checked); ``flipped``: the images were flipped for it."""

    items: Sequence[TrainingItem]
    config: SimulateConfig
    names: list[str]
    order: list[int]
    held: list[int]
    truths: dict[int, Any]
    should_stop: Callable[[], bool]
    start_trained: bool = False
    flipped: bool = False


def make_plan(
    items: Sequence[TrainingItem],
    config: SimulateConfig,
    stop: Callable[[], bool] | None,
    *,
    start_trained: bool = False,
) -> Plan:
    """Check the names, split the images (seeded) and map their ground truths.

    Raises:
        UserInputError: duplicate or empty image names.
    """
    names = [item.name for item in items]
    if len(set(names)) != len(names) or not all(names):
        raise UserInputError("every image needs a unique name; rename the duplicate files.")
    n_corrected = config.rounds * config.per_round
    n_eval = config.eval_images or max(1, (len(items) - n_corrected) // 4)
    order, held = plan_split(len(items), n_corrected=n_corrected, n_eval=n_eval, seed=config.seed)
    label_map = dict(config.label_map) if config.label_map else None
    truths = {i: mapped_truth(items[i].labels, label_map) for i in (*order, *held)}
    logger.info(
        "simulate: %d image(s) to correct in %d round(s), %d held out: %s",
        n_corrected,
        config.rounds,
        n_eval,
        [names[i] for i in held],
    )
    return Plan(items, config, names, order, held, truths, stop or _never, start_trained)


def _never() -> bool:
    return False


def flipped_for_start(plan: Plan, model: Any) -> Plan:
    """``plan`` with every image flipped when the trained start ``model`` sees round 1's
    corrected images better that way (``plan`` itself otherwise, or when the task is
    restoration or the start model is new)."""
    from napari_unet.core.training.polarity import choose_polarity, flip_image

    config = plan.config
    if not plan.start_trained or config.task == "restoration" or plan.flipped:
        return plan
    first = [plan.items[i] for i in plan.order[: config.per_round]]
    first = [dataclasses.replace(item, annotated_mask=None) for item in first]
    train_config = config.round_train_config(1, checkpoint_dir="")  # task, label map
    choice = choose_polarity(model, first, train_config.replace(checkpoint_dir=None))
    if not choice.invert:
        return plan
    normalization = config.train.normalization
    items = [
        dataclasses.replace(item, image=flip_image(item.image, normalization))
        for item in plan.items
    ]
    return dataclasses.replace(plan, items=items, flipped=True)
