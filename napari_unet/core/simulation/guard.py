"""The experiment's trainer that never hands on a model worse than its parent (issue 17).

A round whose start model is trained (a built-in or checkpoint given with ``--init``, or any round
after the first) holds back tiles of the corrected images (``TrainConfig.val_fraction``, else
:data:`GUARD_FRACTION`), scores the parent there, trains with those tiles as validation and keeps
the best model only when it scores higher than the parent; otherwise the parent goes on to the
next round and a :class:`~napari_unet.core.simulation.records.ParentKept` record says so
("version not published: held-back score 0.610 < parent 0.650"). A round from a fresh model trains
on every corrected pixel, as before.
"""

from __future__ import annotations

import logging
from typing import Any

from napari_unet.core.simulation.config import SimulateConfig
from napari_unet.core.simulation.records import ParentKept
from napari_unet.core.training.guard import skip_message

__all__ = ["GUARD_FRACTION", "guarded_trainer", "score_model"]

logger = logging.getLogger(__name__)

#: Share of the corrected tiles held back to compare a round's model with its parent.
GUARD_FRACTION = 0.1


def score_model(model: Any, val_items: list[Any], config: Any) -> float | None:
    """The validation score of ``model`` on ``val_items``, computed as the training loop does."""
    from napari_unet.core.device import get_device
    from napari_unet.core.training.losses import SegmentationLoss
    from napari_unet.core.training.state import build_pools
    from napari_unet.core.training.validation import evaluate

    _, validation, _ = build_pools(model, [], val_items, config)
    batches = validation.validation_batches(config.batch_size)
    if not batches:
        return None
    device = get_device(config.device)
    model.to(device)
    loss_fn = SegmentationLoss(config.loss, config.task)
    metrics = evaluate(model, batches, task=config.task, loss_fn=loss_fn, device=device)
    model.to("cpu")
    return float(metrics["score"])


def guarded_trainer(config: SimulateConfig, work_dir: str, *, start_trained: bool) -> Any:
    """The experiment's default trainer (:data:`~napari_unet.core.simulation.experiment.Trainer`):
    :func:`~napari_unet.core.training.loop.iter_train` in place, guarded as the module says."""
    from napari_unet.core.training.loop import iter_train
    from napari_unet.core.training.split import split_validation

    def trainer(model: Any, items: list[Any], round_index: int):
        train_config = config.round_train_config(round_index, f"{work_dir}/round_{round_index}")
        fraction = train_config.val_fraction or GUARD_FRACTION
        train, val = split_validation(
            items, fraction, tile=train_config.val_tile, seed=train_config.seed
        )
        train, items = _flat(train, model, config), _flat(items, model, config)
        if not (start_trained or round_index > 1) or not val:
            yield from iter_train(model, items, train_config, parent=None)
            return model
        parent_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        parent_score = score_model(model, val, train_config)
        result = yield from iter_train(model, train, train_config, val_items=val, parent=None)
        score = result.best_metrics.get("score")
        refused = skip_message(score, parent_score)
        if refused is not None:
            model.load_state_dict(parent_state)
            logger.info("round %d: %s", round_index, refused)
            yield ParentKept(round_index, float(score), float(parent_score), refused)
        else:
            _load_best(model, result.best_path)
        return model

    return trainer


def _flat(items: list[Any], model: Any, config: SimulateConfig) -> list[Any]:
    """A 2.5-D ``model``'s training items with their flat copies (``config.flat_copies``), made
    after the held-back split so that no copy of a held-back tile is trained on."""
    from napari_unet.core.training.context import with_flat_copies

    radius = int(getattr(model, "context_slices", 0) or 0)
    return with_flat_copies(items, radius) if config.flat_copies else list(items)


def _load_best(model: Any, best_path: Any) -> None:
    """Put the weights of the run's ``best.pt`` (chosen on the held-back tiles) into ``model``."""
    from napari_unet.core.checkpoint.format import load_checkpoint

    model.load_state_dict(load_checkpoint(best_path).model.state_dict())
