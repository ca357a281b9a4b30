"""The ``train`` scenario of ``bench_gui.py``: event-loop stalls while the real trainer runs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _bench_gui_common import Heartbeat, stall_stats, wait_until


def _train_session(folder: Path, side: int) -> Path:
    """A session with one synthetic nuclei image, fully reviewed (instance labels)."""
    from napari_unet.core.synthetic import synthetic_nuclei
    from napari_unet.session import Session

    image, labels = synthetic_nuclei((side, side), n_nuclei=side * side // 1600, seed=2)
    session = Session.create(folder)
    image_id = session.add_image("nuclei", axes="YX", image=image, task="instances")
    session.save_slice(image_id, 0, labels=labels, reviewed=np.ones(labels.shape, bool))
    return session.root


def _train_request(args: argparse.Namespace, folder: Path, seconds: float):
    """The Fine-tune widget's default ``FinetuneRequest`` on ``folder``, for ``seconds`` + 5 min."""
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.trainer.events import FinetuneRequest

    train = TrainConfig(
        task="instances",
        minutes=seconds / 60.0 + 5.0,  # never ends on its own while measured
        val_every=20,
        val_fraction=0.1,
        val_tile=128,
        device="cpu",
    )
    return FinetuneRequest(
        session=str(folder),
        start_from=str(args.resolved_checkpoint),
        train_config=train.to_dict(),
        num_threads=args.train_threads,
        device="cpu",
    )


def _train_results(ticks, marks, counts, failures, client, request, seconds) -> dict:
    """The ``train`` scenario's keys from the heartbeat ``ticks`` and the ``marks`` (times)."""
    whole = stall_stats(ticks, marks["start"], marks["end"])
    start = stall_stats(ticks, marks["start"], marks["first_step"])
    steady = stall_stats(ticks, marks["first_step"], marks["end"])
    stop = stall_stats(ticks, marks["stop"], marks["stopped"])
    return {
        "max_stall_ms_train": round(whole["max"], 1),
        "p99_stall_ms_train": round(whole["p99"], 1),
        "max_stall_ms_train_start": round(start["max"], 1),
        "max_stall_ms_train_steady": round(steady["max"], 1),
        "p99_stall_ms_train_steady": round(steady["p99"], 1),
        "max_stall_ms_train_stop": round(stop["max"], 1),
        "ms_start_call": round((marks["start_returned"] - marks["start"]) * 1000.0, 1),
        "seconds_to_first_step": round(marks["first_step"] - marks["start"], 2),
        "seconds_training_measured": seconds,
        "seconds_to_stop": round(marks["stopped"] - marks["stop"], 2),
        "heartbeats_train": whole["n"],
        "train_steps": client.last_step,
        "train_step_events": counts["step"],
        "train_validations": counts["validation"],
        "train_versions": counts["version"],
        "torch_threads_trainer": request.threads,
        "trainer_nice": request.nice,
        "train_failed": failures[0] if failures else None,
    }


def scenario_train(viewer: Any, widget: Any, app: Any, args: argparse.Namespace) -> dict:
    """Start the real trainer (``TrainerClient``, spawned, CPU) and measure stalls while it runs.

    The request is what the Fine-tune widget sends by default (trainer threads = cores - 1,
    nice 5, patch 256, batch 4, validation every 20 steps), on a fully reviewed synthetic
    nuclei image, starting from the benchmark's model. The heartbeat runs from the ``start()``
    call until ``--train-seconds`` after the first training step; then Stop is pressed.
    """
    from napari_unet._widgets.trainer_client import TrainerClient

    seconds = args.train_seconds or (15.0 if args.quick else 30.0)
    folder = _train_session(Path(args.work_dir) / "train_session", 256 if args.quick else 512)
    request = _train_request(args, folder, seconds)
    client = TrainerClient(viewer=viewer)
    marks: dict[str, float] = {}
    counts = {"step": 0, "validation": 0, "version": 0}
    failures: list[str] = []

    def on_step(event: Any) -> None:
        counts["step"] += 1
        marks.setdefault("first_step", time.perf_counter())

    client.step.connect(on_step)
    client.validation.connect(lambda _e: counts.__setitem__("validation", counts["validation"] + 1))
    client.version.connect(lambda _e: counts.__setitem__("version", counts["version"] + 1))
    client.pool_changed.connect(lambda _e: marks.setdefault("pool", time.perf_counter()))
    client.failed.connect(failures.append)
    beat = Heartbeat()
    beat.start()
    wait_until(app, lambda: len(beat.ticks) > 20, 5)
    marks["start"] = time.perf_counter()
    client.start(request)
    marks["start_returned"] = time.perf_counter()
    wait_until(app, lambda: "first_step" in marks or failures, args.timeout)
    if failures:
        raise RuntimeError(f"the trainer failed: {failures[0]}")
    marks["end"] = marks["first_step"] + seconds
    wait_until(app, lambda: time.perf_counter() >= marks["end"] or failures, seconds + 60)
    marks["stop"] = time.perf_counter()
    client.stop()
    wait_until(app, lambda: not client.running, 15)
    marks["stopped"] = time.perf_counter()
    wait_until(app, lambda: len([t for t in beat.ticks if t > marks["stopped"]]) >= 3, 5)
    beat.stop()
    return _train_results(beat.ticks, marks, counts, failures, client, request, seconds)
