"""What the fine-tune process publishes: never a version worse than its parent (issue 17).

:class:`ParentGuard` applies the rule ``simulate`` applies
(:func:`~napari_unet.core.simulation.versions.judge_child`): the parent (the start model) is
scored on the held-back tiles with its own stored post-processing before training; each best
model the run offers gets its operating point re-tuned there from the parent's settings and is
published, with those settings stored in it, only when it scores strictly higher (AP@0.5 for
instances, foreground/class-1 IoU or 1 - Rand error for binary and 2-class semantic models, the
validation score otherwise). This runs in the trainer process, never in napari's. When corrections
added while training (keep-learning) change the held-back tiles, the parent is scored again on
the new tiles (:func:`held_back_now`), so the comparison stays like for like instead of being
dropped. :func:`data_settings` applies the dataset fingerprint to the
dock's settings (the patch never far bigger than the corrected images).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from napari_unet.core.training.guard import skip_message

logger = logging.getLogger(__name__)

__all__ = ["ParentGuard", "VersionSkipped", "data_settings", "held_back_now", "skip_message"]


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


class ParentGuard:
    """The run's parent version and the rule the run's best models must pass to be published.

    Args:
        start_path: the start model's checkpoint (the fitted copy when the head or channels
            were adapted). info: its ``CheckpointInfo``.
        device: where the held-back tiles are predicted (the run's device).
        tune: re-tune each offered model's post-processing (``TrainConfig.tune_postprocess``).
    """

    def __init__(self, start_path: Any, info: Any, device: str, *, tune: bool = True) -> None:
        from napari_unet.core.checkpoint.format import load_checkpoint
        from napari_unet.core.inference.config import PredictConfig
        from napari_unet.core.simulation.versions import Version, checkpoint_postprocess

        self.parent = Version(
            load_checkpoint(start_path).model, checkpoint_postprocess(info, info.task)
        )
        #: the parent's stored settings (a published child keeps them, with its tuned keys)
        self.inherited = dict(info.provenance.get("postprocess") or {})
        self.predict = PredictConfig(
            tile_shape=info.tile_shape or (512, 512), overlap=info.overlap, device=device
        )  # as core.training.retune predicts the held-back tiles
        self.tune = tune
        self.score: Any = None  # the parent's HeldBackScore on the current held-back tiles

    def score_parent(self, val: list[Any], config: Any) -> float | None:
        """Score the parent on the held-back tiles ``val``; returns the value (None: nothing
        held back or nothing to score there)."""
        from napari_unet.core.simulation.versions import HeldBackScore, held_back

        if not val:
            self.score = HeldBackScore(None, "score")
        else:
            self.score = held_back(self.parent, val, config, self.predict)
        logger.info("parent on the held-back tiles: %s %s", self.score.metric, self.score.value)
        return self.score.value

    def judge(self, path: Any, val: list[Any], config: Any) -> Any:
        """The :class:`~napari_unet.core.simulation.versions.Verdict` on the model in ``path``
        (a ``best.pt``), scored on the held-back tiles ``val`` the parent was scored on."""
        from napari_unet.core.checkpoint.format import load_checkpoint
        from napari_unet.core.simulation.versions import judge_child

        model = load_checkpoint(path).model
        return judge_child(
            model, self.parent, self.score, val, config, self.predict, tune=self.tune
        )

    def review(
        self, step: int, path: Any, val: list[Any], config: Any, metrics: dict
    ) -> tuple[dict, dict] | VersionSkipped:
        """What to do with the best model in ``path`` offered at ``step``.

        Args:
            val: the held-back tiles now (the parent's score is on them). metrics: the pixel
                validation metrics of the model (empty: it was never validated).

        Returns:
            ``(metrics, settings)`` to publish it with (the metrics with its held-back score;
            ``settings``: provenance of its re-tuned post-processing, empty when inherited),
            or the :class:`VersionSkipped` to send.
        """
        parent = self.score
        if not val:  # nothing held back: nothing to compare with
            return dict(metrics), {}
        if not metrics and parent.value is not None:  # e.g. stopped before the first validation
            message = (
                "version not published: not scored on the held-back tiles "
                f"(parent {parent.metric} {parent.value:.3f})"
            )
            return VersionSkipped(step, float("nan"), parent.value, message)
        verdict = self.judge(path, val, config)
        if not verdict.better:
            score = float(verdict.score.value)
            return VersionSkipped(step, score, float(parent.value), verdict.message)
        held = {
            "held_back_score": verdict.score.value,
            "held_back_metric": verdict.score.metric,
            "parent_held_back_score": parent.value,
        }
        if verdict.point is not None:  # shown in the dock's status line and versions table
            held["operating_point"] = verdict.point.settings()
        return {**metrics, **held}, verdict.provenance(self.inherited)


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
    """``(fingerprint, config)``: the dock's patch and batch fitted to the corrected images, and
    the zoom range of the augmentation the start model (``info``) was trained with.

    The dock's settings are the starting point (a patch only shrinks to fit the images; the batch
    grows to keep the pixels per step); the fingerprint's line is shown in the dock.
    """
    from napari_unet.core.training import downscale as scale
    from napari_unet.core.training.balance import with_start_balance
    from napari_unet.core.training.fingerprint import fingerprint, net_geometry
    from napari_unet.core.training.gaps import with_gap_rule

    multiple, field = net_geometry(info.arch, info.model_config)
    data = fingerprint(
        items,
        task=info.task,
        size_multiple=multiple,
        receptive_field=field,
        default_patch=tuple(config.patch_shape),
        default_batch=config.batch_size,
        start_zoom=info.trained_zoom,
        can_downscale=info.arch in scale.ARCHS and int(info.spatial_dims) == 2,
        start_downscale=scale.downscale_of(info.model_config),
    )
    logger.info("%s", data.describe())
    augment = config.augment.replace(affine_scale=data.zoom)
    return data, config.replace(
        patch_shape=data.patch_shape,
        batch_size=data.batch_size,
        augment=augment,
        targets=with_start_balance(
            with_gap_rule(config.targets, data.gap_share), info, config.task
        ),
    )
