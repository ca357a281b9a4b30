"""Validation cadence for short time budgets: by time as well as by steps, always at the end,
the same for the same clock (a fake clock here)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from test_train import config, discs, tiny_model

import napari_unet.core.training.loop as loop
from napari_unet.core.training.cadence import MIN_STEPS, validation_due
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import StepEvent, ValidationEvent, iter_train


def test_step_budget_keeps_the_step_cadence(tmp_path):
    steps_only = config(tmp_path, steps=100, val_every=50)
    due = [s for s in range(1, 101) if validation_due(steps_only, s, 1e6, 0, 0.0)]
    assert due == [50, 100]


def test_time_budget_validates_every_8_percent_and_at_least_10_steps_apart(tmp_path):
    timed = config(tmp_path, steps=None, minutes=2.0, val_every=50)  # 8 % = 9.6 s
    assert not validation_due(timed, 5, 20.0, 0, 0.0)  # too few steps
    assert not validation_due(timed, 12, 9.0, 0, 0.0)  # too little time
    assert validation_due(timed, 12, 9.7, 0, 0.0)
    assert not validation_due(timed, 20, 15.0, 12, 9.7)
    assert validation_due(timed, 50, 15.0, 12, 9.7)  # val_every still counts


def _run(tmp_path, name: str) -> tuple[list[int], list[StepEvent]]:
    """Validation steps and step events of a 1-minute run under a clock that advances 0.5 s per
    reading (the loop reads it three times a step: 1.5 s a step, 40 steps)."""
    ticks = itertools.count()
    clock = lambda: 0.5 * next(ticks)  # noqa: E731
    image, labels = discs()
    items = [TrainingItem(image, labels, np.ones_like(labels, bool), name="d")]
    settings = config(
        tmp_path / name, steps=None, minutes=1.0, val_every=50, val_fraction=0.3, val_tile=32
    )
    with pytest.MonkeyPatch.context() as patch:
        # as bench_learn swaps the loop's clock for process CPU time
        patch.setattr(loop, "time", SimpleNamespace(perf_counter=clock))
        events = list(iter_train(tiny_model(), items, settings))
    validated = [e.step for e in events if isinstance(e, ValidationEvent)]
    return validated, [e for e in events if isinstance(e, StepEvent)]


def test_short_time_budget_validates_early_often_and_at_the_end(tmp_path):
    validated, steps = _run(tmp_path, "a")
    last = steps[-1].step
    assert last < 50  # a run that would have validated only at its end
    assert validated[0] == MIN_STEPS  # not at step 50
    assert validated[-1] == last  # always at the end
    assert all(b - a >= MIN_STEPS for a, b in itertools.pairwise(validated[:-1]))
    assert len(validated) >= 4
    assert _run(tmp_path, "b")[0] == validated  # the same clock, the same cadence


def test_data_parallel_loop_validates_by_time_too(tmp_path, monkeypatch):
    """``train --nproc N --minutes M``: the rank loop follows the same cadence (one rank here,
    a fake clock in both loops), deciding on the clock rank 0 shared, so ranks agree."""
    import socket

    import napari_unet.core.training.distributed_loop as distributed_loop
    from napari_unet.core.training.distributed import RankInfo

    ticks = itertools.count()
    clock = SimpleNamespace(perf_counter=lambda: 0.5 * next(ticks))
    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(distributed_loop, "time", clock)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    image, labels = discs()
    items = [TrainingItem(image, labels, np.ones_like(labels, bool), name="d")]
    settings = config(
        tmp_path, steps=None, minutes=1.0, val_every=50, val_fraction=0.3, val_tile=32
    )
    events = list(
        distributed_loop.iter_train_distributed(tiny_model(), items, settings, RankInfo(0, 1))
    )
    validated = [e.step for e in events if isinstance(e, ValidationEvent)]
    last = [e for e in events if isinstance(e, StepEvent)][-1].step
    assert last < 50
    assert validated[0] == MIN_STEPS  # not only at the end
    assert validated[-1] == last
    assert len(validated) >= 3
