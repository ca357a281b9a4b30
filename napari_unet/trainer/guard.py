"""What the fine-tune process publishes: never a version worse than its parent (issue 17).

The parent (the start model) is scored on the held-back tiles before training
(:func:`~napari_unet.trainer.data.start_metrics`); a best model is published only when it scores
higher there. When corrections added while training (keep-learning) change the held-back tiles,
the parent is scored again on the new tiles (:func:`held_back_now`), so the comparison stays
like for like instead of being dropped. :func:`data_settings` applies the dataset fingerprint to the
dock's settings (the patch never far bigger than the corrected images).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from napari_unet.core.training.guard import skip_message

logger = logging.getLogger(__name__)

__all__ = ["VersionSkipped", "data_settings", "held_back_now", "skip_message"]


@dataclasses.dataclass(frozen=True)
class VersionSkipped:
    """A best model was not published: it does not beat its parent on the held-back tiles.

    Attributes:
        step: the optimiser step of the model. score, parent_score: their held-back scores.
        message: the sentence for the log and the dock.
    """

    step: int
    score: float
    parent_score: float
    message: str


def held_back_now(val: dict[str, Any], taken: Iterable[Any], config: Any) -> dict[str, Any]:
    """The held-back tiles after the loop took ``taken`` in, as the core splits them.

    Args:
        val: held-back items by name (updated in place and returned).
        taken: items the training loop took from its ``new_items`` queue.
        config: the run's ``TrainConfig`` (``val_fraction``, ``val_tile``, ``seed``).
    """
    from napari_unet.core.training.split import split_validation

    for item in taken:
        _, held = split_validation(
            [item], config.val_fraction, tile=config.val_tile, seed=config.seed, at_least_one=False
        )
        for part in held:  # the core's validation pool replaces an item of the same name too
            val[part.name] = part
    return val


def data_settings(items: list[Any], info: Any, config: Any) -> tuple[Any, Any]:
    """``(fingerprint, config)``: the dock's patch and batch fitted to the corrected images.

    The dock's settings are the starting point (a patch only shrinks to fit the images; the batch
    grows to keep the pixels per step); the fingerprint's line is shown in the dock.
    """
    from napari_unet.core.training.fingerprint import fingerprint, net_geometry

    multiple, field = net_geometry(info.arch, info.model_config)
    data = fingerprint(
        items,
        task=info.task,
        size_multiple=multiple,
        receptive_field=field,
        default_patch=tuple(config.patch_shape),
        default_batch=config.batch_size,
    )
    logger.info("%s", data.describe())
    return data, config.replace(patch_shape=data.patch_shape, batch_size=data.batch_size)
