"""Fine-tuning a start model on labels with more classes than it has (issue 18, point 2): a new
head, every other weight kept, instead of a refusal."""

from __future__ import annotations

import hashlib
import queue

import numpy as np
import pytest
import torch
from trainer_kill_helper import make_session, request, review_slice, start_model

from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint
from napari_unet.core.checkpoint.widen import widen_classes
from napari_unet.core.models import build_model
from napari_unet.session import Session
from napari_unet.trainer.events import TrainerFinished, VersionPublished
from napari_unet.trainer.process import run_trainer


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize(
    ("arch", "settings", "task", "channels"),
    [
        ("unet", {"depth": 2, "base_channels": 4}, "binary", 1),
        ("unetpp", {"depth": 2, "base_channels": 4, "deep_supervision": True}, "semantic", 2),
    ],
)
def test_widen_keeps_every_weight_but_the_head(tmp_path, arch, settings, task, channels) -> None:
    torch.manual_seed(0)
    model = build_model(arch, in_channels=1, out_channels=channels, **settings)
    start = save_checkpoint(tmp_path / "start.pt", model, task=task, class_names=())
    before = digest(start)
    out = widen_classes(start, 4, tmp_path / "wide.pt")
    assert digest(start) == before, "the start model's file is never changed"
    wide = load_checkpoint(out)
    assert wide.info.task == "semantic" and wide.model.out_channels == 4
    assert len(wide.info.class_names) == 4 and wide.info.class_names[0] == "background"
    old, new = model.state_dict(), wide.model.state_dict()
    same = [k for k in old if old[k].shape == new[k].shape]
    changed = [k for k in old if old[k].shape != new[k].shape]
    assert changed and all(torch.equal(old[k], new[k]) for k in same)
    assert len(same) > 4 * len(changed), "only the head is new"
    logits = wide.model(torch.zeros(1, 1, 32, 32))
    assert logits.shape == (1, 4, 32, 32)
    with pytest.raises(ValueError, match="cannot widen"):
        widen_classes(out, 3, tmp_path / "narrow.pt")


def run_inline(req) -> list:
    events = queue.Queue()
    run_trainer(req.to_dict(), events, queue.Queue())
    return [events.get_nowait() for _ in range(events.qsize())]


@pytest.mark.parametrize(("task", "channels", "factor"), [("binary", 1, 2), ("semantic", 2, 3)])
def test_more_classes_than_the_start_model_trains_a_new_head(
    tmp_path, task, channels, factor
) -> None:
    folder = tmp_path / "session"
    session, image_id, labels = make_session(folder, review=False, labels_task="semantic")
    three = labels[0] * factor  # classes 0 and `factor`: `factor + 1` classes
    three[:8] = np.where(three[:8] > 0, 1, three[:8])
    review_slice(session, image_id, 0, three)
    start = start_model(tmp_path / "start.pt", task=task, out_channels=channels)
    before = digest(start)
    events = run_inline(request(folder, start, train={"steps": 3, "val_fraction": 0.0}))
    assert isinstance(events[-1], TrainerFinished), events[-1]
    (published,) = [e for e in events if isinstance(e, VersionPublished)]
    loaded = load_checkpoint(Session.open(folder).version_path(published.version_id))
    assert loaded.info.task == "semantic" and loaded.model.out_channels == factor + 1
    assert len(loaded.info.class_names) == factor + 1  # the widened names carry into the version
    assert digest(start) == before
