"""The experiment's trainer that never hands on a model worse than its parent (issue 17).

A round whose start model is trained (a built-in or checkpoint given with ``--init``, or any round
after the first) holds back tiles of the corrected images (``TrainConfig.val_fraction``, else
:data:`GUARD_FRACTION`) and trains with those tiles as validation. The best model's
post-processing is then re-tuned there from its parent's settings
(:func:`~napari_unet.core.simulation.versions.tuned_postprocess`), and the two versions are
scored on the held-back tiles, each with its own post-processing
(:func:`~napari_unet.core.simulation.versions.judge_child`, the rule the Fine-tune dock's trainer
applies too: AP@0.5 for instances). The fine-tuned version goes on only when it scores higher than
the parent; otherwise the parent goes on to the next round. Either way a
:class:`~napari_unet.core.simulation.records.RoundJudged` record carries both scores (the round's
``RoundRecord.held_back``) and, when the parent is kept, the sentence ("version not published:
held-back AP@0.5 0.610 < parent 0.650"). A round from a fresh model
trains on every corrected pixel, as before, and keeps its parent's post-processing.
"""

from __future__ import annotations

import logging
from typing import Any

from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.simulation.config import SimulateConfig
from napari_unet.core.simulation.records import RoundJudged
from napari_unet.core.simulation.versions import Version, held_back, judge_child, score_model

__all__ = [
    "GUARD_FRACTION",
    "GuardedTrainer",
    "default_trainer",
    "guarded_trainer",
    "score_model",
]

logger = logging.getLogger(__name__)

#: Share of the corrected tiles held back to compare a round's model with its parent.
GUARD_FRACTION = 0.1


class GuardedTrainer:
    """The experiment's default trainer (:data:`~napari_unet.core.simulation.experiment.Trainer`):
    :func:`~napari_unet.core.training.loop.iter_train` in place, guarded as the module says.

    Calling it returns the round's generator, which returns a
    :class:`~napari_unet.core.simulation.versions.Version`. ``postprocess`` is the own
    post-processing of the model it is given: the start model's, then that of the version it
    last returned (the experiment hands each round's version to the next round).
    """

    def __init__(
        self,
        config: SimulateConfig,
        work_dir: str,
        *,
        start_trained: bool,
        postprocess: PostprocessConfig | None = None,
    ) -> None:
        self.config, self.work_dir, self.start_trained = config, work_dir, start_trained
        self.postprocess = postprocess or config.postprocess_config

    def __call__(self, model: Any, items: list[Any], round_index: int):
        return self._round(model, items, round_index)

    def _round(self, model: Any, items: list[Any], round_index: int):
        from napari_unet.core.training.loop import iter_train
        from napari_unet.core.training.split import split_validation

        config = self.config
        folder = f"{self.work_dir}/round_{round_index}"
        train_config = config.round_train_config(round_index, folder)
        fraction = train_config.val_fraction or GUARD_FRACTION
        train, val = split_validation(
            items, fraction, tile=train_config.val_tile, seed=train_config.seed
        )
        train, items = _flat(train, model, config), _flat(items, model, config)
        parent = Version(model, self.postprocess)
        if not (self.start_trained or round_index > 1) or not val:
            yield from iter_train(model, items, train_config, parent=None)
            return parent  # trained in place; the parent's post-processing goes on
        parent_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        parent_score = held_back(parent, val, train_config, config.predict)
        untuned = train_config.replace(tune_postprocess=False)  # tuned below, from the parent's
        result = yield from iter_train(model, train, untuned, val_items=val, parent=None)
        if result.best_path is not None:
            _load_best(model, result.best_path)
        verdict = judge_child(model, parent, parent_score, val, train_config, config.predict)
        yield RoundJudged(
            round_index, verdict.score.metric, verdict.score.value, parent_score.value,
            verdict.better, verdict.message or "",
        )  # fmt: skip
        if not verdict.better:
            model.load_state_dict(parent_state)
            logger.info("round %d: %s", round_index, verdict.message)
            return parent
        self.postprocess = verdict.child.postprocess
        return verdict.child


def default_trainer(
    config: SimulateConfig,
    work_dir: str,
    *,
    start_trained: bool = False,
    postprocess: PostprocessConfig | None = None,
) -> GuardedTrainer:
    """The experiment's default :data:`~napari_unet.core.simulation.experiment.Trainer`:
    :func:`~napari_unet.core.training.loop.iter_train` in place; a round from a trained model
    keeps its parent unless it beats it on held-back tiles, each scored with its own
    post-processing (``postprocess``: the start model's; default ``config.postprocess_config``).
    """
    return GuardedTrainer(config, work_dir, start_trained=start_trained, postprocess=postprocess)


#: The name the experiment's default trainer had (tests and scripts call it).
guarded_trainer = default_trainer


def _flat(items: list[Any], model: Any, config: SimulateConfig) -> list[Any]:
    """A 2.5-D ``model``'s training items with their flat copies (``config.flat_copies``), made
    after the held-back split so that no copy of a held-back tile is trained on."""
    from napari_unet.core.training.context import with_flat_copies

    radius = int(getattr(model, "context_slices", 0) or 0)
    return with_flat_copies(items, radius) if config.flat_copies else list(items)


def _load_best(model: Any, best_path: Any) -> None:
    """Put the weights of the run's ``best.pt`` (its published weights) into ``model``."""
    from napari_unet.core.checkpoint.format import load_checkpoint

    model.load_state_dict(load_checkpoint(best_path).model.state_dict())
