"""Which weights a run publishes (``TrainConfig.keep``): the final ones or the validation-best."""

from __future__ import annotations

import threading

import pytest
import torch

from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import CheckpointEvent, ValidationEvent, iter_train, train
from tests.test_train import config, discs, tiny_model


def _run(tmp_path, **changes):
    """Events and result of a 12-step run validated every 2 steps on held-back tiles."""
    image, labels = discs()
    settings = {"val_fraction": 0.3, "val_tile": 32, "steps": 12, "lr": 0.05, "seed": 3}
    cfg = config(tmp_path, **{**settings, **changes})
    events, gen = [], iter_train(tiny_model(), [TrainingItem(image, labels, name="d")], cfg)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            return events, done.value


def _same_weights(a, b) -> bool:
    sa, sb = load_checkpoint(a).model.state_dict(), load_checkpoint(b).model.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_final_publishes_the_weights_at_the_end_of_the_budget(tmp_path):
    events, result = _run(tmp_path, keep="final")
    validations = [e for e in events if isinstance(e, ValidationEvent)]
    assert result.kept == "final" and result.reason == "steps"
    assert _same_weights(result.best_path, result.latest_path)
    info = load_checkpoint(result.best_path).info
    assert info.provenance["steps"] == 12
    assert result.best_metrics == validations[-1].metrics == info.provenance["metrics"]
    last_best = [e for e in events if isinstance(e, CheckpointEvent) and e.kind == "best"][-1]
    assert last_best.step == 12 and last_best.metrics == validations[-1].metrics


def test_best_publishes_the_validation_best(tmp_path):
    events, result = _run(tmp_path, keep="best", seed=4, lr=0.01)  # peaks at step 8 of 12
    validations = [e for e in events if isinstance(e, ValidationEvent)]
    scores = [v.metrics["score"] for v in validations]
    best = validations[scores.index(max(scores))]
    assert result.kept == "best"
    assert load_checkpoint(result.best_path).info.provenance["steps"] == best.step
    assert result.best_metrics == best.metrics
    assert best.step != 12, "the run should peak before its end (else this proves nothing)"
    assert not _same_weights(result.best_path, result.latest_path)


def test_a_stopped_run_keeps_its_validation_best(tmp_path):
    image, labels = discs()
    stop = threading.Event()
    cfg = config(tmp_path, val_fraction=0.3, val_tile=32, steps=12, keep="final", val_every=2)
    gen = iter_train(tiny_model(), [TrainingItem(image, labels, name="d")], cfg, stop=stop)
    validated = []
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            result = done.value
            break
        if isinstance(event, ValidationEvent):
            validated.append(event)
            if event.step == 6:
                stop.set()
    assert result.reason == "stopped" and result.kept == "best"
    best = max(validated, key=lambda v: v.metrics["score"])
    assert load_checkpoint(result.best_path).info.provenance["steps"] == best.step


def test_resuming_a_spent_budget_publishes_the_final_weights_validated(tmp_path):
    """``train --resume latest.pt --keep final`` after the budget: no step, the final weights
    validated and published (how a kept ``--keep best`` run is re-scored with its final weights)."""
    _, first = _run(tmp_path, keep="best")
    image, labels = discs()
    cfg = config(tmp_path / "again", val_fraction=0.3, val_tile=32, steps=12, lr=0.05, seed=3)
    result = train(
        tiny_model(), [TrainingItem(image, labels, name="d")], cfg, resume_from=first.latest_path
    )
    assert result.steps == 12 and result.kept == "final"
    assert _same_weights(result.best_path, first.latest_path)
    assert result.best_metrics and "score" in result.best_metrics


def test_keep_is_checked(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        config(tmp_path, keep="last")
