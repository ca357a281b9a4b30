"""The fine-tune process: data from the session, versions, stop, keep-learning, SIGKILL safety."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time

import numpy as np
import pytest
from trainer_kill_helper import collect, make_session, request, review_slice, start_model

from napari_unet.core.checkpoint.format import load_checkpoint
from napari_unet.core.training.items import TrainingItem
from napari_unet.session import Session
from napari_unet.trainer.data import ValidationPlan
from napari_unet.trainer.events import (
    PoolChanged,
    TrainerFailed,
    TrainerFinished,
    VersionPublished,
)
from napari_unet.trainer.process import run_trainer

FINAL = (TrainerFinished, TrainerFailed)


def run_inline(req) -> list:
    """Run the trainer in this process; returns every event it sent."""
    events = queue.Queue()
    run_trainer(req.to_dict(), events, queue.Queue())
    return [events.get_nowait() for _ in range(events.qsize())]


@pytest.fixture
def start(tmp_path):
    return start_model(tmp_path / "start.pt")


def test_reviewed_slice_becomes_a_new_version(tmp_path, start):
    folder = tmp_path / "session"
    make_session(folder)
    events = run_inline(request(folder, start, train={"steps": 5, "val_fraction": 0.0}))
    assert isinstance(events[-1], TrainerFinished), events[-1]
    assert events[-1].reason == "steps" and events[-1].steps == 5
    pool = [e for e in events if isinstance(e, PoolChanged)]
    assert pool[0].n_items == 1 and pool[0].annotated_pixels == 64 * 64
    published = [e for e in events if isinstance(e, VersionPublished)]
    assert len(published) == 1 and events[-1].best_version == published[0].version_id
    session = Session.open(folder, readonly=True)
    (version,) = session.versions()
    assert version.id == published[0].version_id and version.steps == 5
    assert version.parent == str(start)
    assert version.data["n_slices"] == 1 and version.data["n_images"] == 1
    assert version.data["objects"] >= 1
    assert session.version_path(version.id).parent.name == "models"
    loaded = load_checkpoint(session.version_path(version.id))
    assert loaded.info.task == "binary"
    assert list((folder / "runs").glob("*/latest.pt")), "latest.pt kept for resume"


def test_issue15_point9_each_start_reclaims_finished_runs(tmp_path, start):
    folder = tmp_path / "session"
    make_session(folder)
    req = request(folder, start, train={"steps": 2, "val_fraction": 0.0})
    for _ in range(3):
        assert isinstance(run_inline(req)[-1], TrainerFinished)
    runs = folder / "runs"
    # the third start reclaimed the first run whole and the second's best.pt
    assert len([p for p in runs.rglob("*") if p.is_file() and p.name != ".lock"]) == 3
    session = Session.open(folder)
    left = sorted(p.relative_to(runs).as_posix() for p in runs.rglob("*") if p.is_file())
    assert len(left) == 2 and left[1].endswith("/latest.pt"), left  # what resuming needs
    assert left[0].endswith("/.lock")  # the run's marker stays with its folder
    registered = {session.version_path(v.id) for v in session.versions()}
    assert set((folder / "models").iterdir()) == registered and len(registered) == 3
    resumed = run_inline(
        request(
            folder, start, resume_from=str(runs / left[1]), train={"steps": 4, "val_fraction": 0.0}
        )
    )
    assert isinstance(resumed[-1], TrainerFinished), resumed[-1]


def test_start_from_a_version_and_validation_gate(tmp_path, start):
    folder = tmp_path / "session"
    make_session(folder)
    run_inline(request(folder, start, train={"steps": 2, "val_fraction": 0.0}))
    first = Session.open(folder).versions()[0].id
    events = run_inline(request(folder, first, train={"steps": 4, "lr": 0.01}))
    assert isinstance(events[-1], TrainerFinished), events[-1]
    validations = [e for e in events if type(e).__name__ == "ValidationEvent"]
    assert validations[0].step == 0, "the start model is scored first"
    for event in events:  # judged on the held-back tiles, each with its own post-processing
        if isinstance(event, VersionPublished):
            assert event.metrics["held_back_score"] > event.metrics["parent_held_back_score"]
    for version in Session.open(folder).versions()[1:]:
        assert version.parent == first


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nothing", "Nothing is reviewed yet"),
        ("one_class", "Only background is annotated"),
        ("instances", "are instances labels but"),
        ("bad_start", "cannot start from 'nope'"),
    ],
)
def test_unusable_data_fails_with_what_to_do(tmp_path, start, case, expected):
    folder = tmp_path / "session"
    labels_task = {"instances": "instances"}.get(case, "binary")  # more classes: test_widen.py
    session, image_id, labels = make_session(folder, review=False, labels_task=labels_task)
    model = start
    if case == "one_class":
        review_slice(session, image_id, 0, np.zeros_like(labels[0]))
    elif case in ("instances", "bad_start"):
        review_slice(session, image_id, 0, labels[0])
    events = run_inline(request(folder, "nope" if case == "bad_start" else model))
    assert isinstance(events[-1], TrainerFailed)
    assert expected in events[-1].message
    assert not Session.open(folder).versions()


def test_validation_plan_keeps_held_back_tiles_out():
    rng = np.random.default_rng(0)
    items = [
        TrainingItem(
            image=rng.random((1, 64, 64), dtype=np.float32),
            labels=(rng.random((64, 64)) > 0.5).astype(np.uint8),
            annotated_mask=np.ones((64, 64), bool),
            name=f"img0001/{s:05d}",
        )
        for s in range(2)
    ]
    pins = [{"image_id": "img0001", "slice_index": 1, "rect": [0, 0, 16, 16]}]
    plan = ValidationPlan(fraction=0.25, tile=32, seed=0, pins=pins)
    train, val = plan.split(items)
    held = {}
    for item in val:
        name = item.name.removesuffix("#pinned")
        held[name] = held.get(name, np.zeros((64, 64), bool)) | item.mask
    assert held["img0001/00001"][:16, :16].all(), "the pinned rectangle is held back"
    for item in train:
        assert not (item.mask & held.get(item.name, False)).any()
    _, again_val = ValidationPlan(fraction=0.25, tile=32, seed=0, pins=pins).split(items)
    assert [v.name for v in again_val] == [v.name for v in val], "stable split"
    new = plan.prepare_new(items[1])
    assert not new.mask[:16, :16].any() and new.mask[32:, 32:].any()


def test_keep_learning_adds_a_correction_made_during_training(tmp_path, start):
    folder = tmp_path / "session"
    _, image_id, labels = make_session(folder)
    events, control = queue.Queue(), queue.Queue()
    req = request(folder, start, keep_learning=True, train={"steps": 100_000, "val_every": 1000})
    thread = threading.Thread(target=run_trainer, args=(req.to_dict(), events, control))
    thread.start()
    try:
        seen = collect(
            events, lambda e: type(e).__name__ == "StepEvent" or isinstance(e, FINAL), 30
        )
        assert type(seen[-1]).__name__ == "StepEvent", seen[-1]
        review_slice(Session.open(folder), image_id, 1, labels[1])  # napari saves a correction
        control.put(("corrections", [(image_id, 1)]))
        seen = collect(events, lambda e: isinstance(e, (PoolChanged, *FINAL)), 20)
        assert isinstance(seen[-1], PoolChanged), seen[-1]
        assert seen[-1].n_items == 2 and seen[-1].added == (f"{image_id}/00001",)
    finally:
        control.put("stop")
        thread.join(10)
    assert not thread.is_alive()
    rest = [events.get_nowait() for _ in range(events.qsize())]
    assert isinstance(rest[-1], TrainerFinished) and rest[-1].reason == "stopped"


def test_spawned_trainer_honours_stop(tmp_path, start):
    folder = tmp_path / "session"
    make_session(folder)
    context = multiprocessing.get_context("spawn")
    events, control = context.Queue(), context.Queue()
    req = request(folder, start, train={"steps": 100_000, "val_every": 1000})
    # the request crosses the spawn boundary as it is (TrainerClient.start does the same)
    process = context.Process(target=run_trainer, args=(req, events, control))
    process.start()
    try:
        seen = collect(
            events, lambda e: type(e).__name__ == "StepEvent" or isinstance(e, FINAL), 90
        )
        assert type(seen[-1]).__name__ == "StepEvent", seen[-1]
        asked = time.monotonic()
        control.put("stop")
        seen = collect(events, lambda e: isinstance(e, FINAL), 5)
        # the promise is the dock's: the trainer reports "stopped" within 2 s; the process
        # then exits (interpreter and torch teardown, not part of the promise) within 5 s
        assert time.monotonic() - asked < 2.0, "stop took longer than 2 s"
        process.join(5)
        assert process.exitcode == 0
        assert isinstance(seen[-1], TrainerFinished) and seen[-1].reason == "stopped"
    finally:
        if process.is_alive():
            process.kill()


def check_session_intact(folder) -> list[str]:
    session = Session.open(folder)  # a writer: also cleans what the killed process left
    for version in session.versions():
        load_checkpoint(session.version_path(version.id))  # raises for a truncated file
    return [v.id for v in session.versions()]


def test_sigkill_at_random_points_never_damages_the_session(tmp_path, start):
    import torch

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # import torch._dynamo before forking
    folder = tmp_path / "session"
    make_session(folder)
    req = request(folder, start, train={"steps": 100_000, "val_every": 1, "lr": 0.01})
    context = multiprocessing.get_context("fork")  # no re-import of torch: many kills quickly
    rng = np.random.default_rng(0)
    registered: list[str] = []
    for _ in range(12):
        events = context.Queue()
        process = context.Process(target=run_trainer, args=(req.to_dict(), events, context.Queue()))
        process.start()
        # kill during start-up, or after a random number of events (while training,
        # validating, writing checkpoints, registering versions...)
        wanted = int(rng.integers(0, 30))
        seen = collect(events, lambda e: False, 0)
        while wanted and len(seen) < wanted and process.is_alive():
            seen += collect(events, lambda e: True, 10)
        time.sleep(float(rng.uniform(0.0, 0.03 if wanted else 0.3)))
        os.kill(process.pid, signal.SIGKILL)
        process.join(5)
        assert process.exitcode == -signal.SIGKILL, seen[-1:]
        now = check_session_intact(folder)
        assert now[: len(registered)] == registered, "a completed version was lost"
        registered = now
        events.close()
    assert registered, "no run lived long enough to publish a version"
    # issue 15 point 9: what the killed runs left is given back (only the newest latest.pt stays)
    runs = folder / "runs"
    assert not list(runs.rglob(".*.tmp")) and not list(runs.rglob("best.pt"))
    assert len(list(runs.rglob("latest.pt"))) <= 1
