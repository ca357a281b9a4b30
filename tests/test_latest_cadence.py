"""How often ``latest.pt`` (the full training state) is written (session 10).

It was written at every validation point: every ``val_every`` steps and, with a time budget,
every 8 % of it, with or without validation data (about 14 writes of 23 MB in a 2-minute CPU
run). Now: at the first validation point (a killed run can always resume), then at most once a
minute of training, and at the end.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.models import build_model
from napari_unet.core.training.augment import AugmentConfig
from napari_unet.core.training.cadence import LATEST_INTERVAL_S, latest_due
from napari_unet.core.training.config import CheckpointEvent, StepEvent, TrainConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import iter_train, train


def _items() -> list[TrainingItem]:
    yy, xx = np.mgrid[:64, :64]
    labels = (((yy - 32) ** 2 + (xx - 32) ** 2) < 15**2).astype(np.int32)
    image = (labels + np.random.default_rng(0).normal(0, 0.2, labels.shape)).astype(np.float32)
    return [TrainingItem(image[None], labels, name="disc")]


def _config(tmp_path, **changes) -> TrainConfig:
    settings = dict(
        task="binary", steps=12, batch_size=2, patch_shape=(32, 32), val_fraction=0.0,
        val_every=2, augment=AugmentConfig(strength=0.0), device="cpu",
        checkpoint_dir=str(tmp_path / "run"),
    )  # fmt: skip
    settings.update(changes)
    return TrainConfig(**settings)


def _model():
    torch.manual_seed(0)
    return build_model("unet", depth=2, base_channels=8, in_channels=1, out_channels=1)


def test_latest_is_written_at_the_first_validation_point_and_at_the_end(tmp_path):
    events = list(iter_train(_model(), _items(), _config(tmp_path)))
    written = [e.step for e in events if isinstance(e, CheckpointEvent) and e.kind == "latest"]
    assert written == [2, 12], "not at steps 4, 6, 8 and 10: a few seconds of training apart"


def test_a_killed_run_still_resumes_from_latest(tmp_path):
    steps = []
    events = iter_train(_model(), _items(), _config(tmp_path))
    for event in events:
        if isinstance(event, StepEvent):
            steps.append(event.step)
            if event.step == 7:
                break
    events.close()  # killed: no final checkpoint
    latest = tmp_path / "run" / "latest.pt"
    assert load_checkpoint(latest).training_state["step"] == 2
    result = train(_model(), _items(), _config(tmp_path / "again"), resume_from=latest)
    assert result.steps == 12 and result.reason == "steps"


def test_latest_due_once_a_minute_of_training():
    assert latest_due(0.5, -1, 0.0), "the run's first validation point writes it"
    assert not latest_due(30.0, 50, 10.0)
    assert latest_due(10.0 + LATEST_INTERVAL_S, 50, 10.0)
    assert LATEST_INTERVAL_S == 60.0
