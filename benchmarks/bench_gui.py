"""GUI responsiveness benchmark: does napari's event loop keep running while the widget predicts?

Usage (napari needs a real OpenGL context, so run it under Xvfb)::

    xvfb-run -a python benchmarks/bench_gui.py [--quick] [--json OUT] [--threads N]

A real napari window with the "U-Net Segment" widget docked and a synthetic nuclei image of
2048x2048 (``--quick``: 1024x1024). A ``QTimer`` heartbeat fires every 10 ms on the main thread
and records when it ran; the gaps between ticks are the event-loop stalls. The benchmark clicks
Run (CPU, the default model: a built-in 1-channel checkpoint, instance models first, else a
random-weight ``unet`` base 32 depth 4 with 3 classes, task ``instances``) and waits until the
labels are on screen.

JSON keys: ``max_stall_ms_predict`` (longest gap from the click until the finished labels are
handed to the layer, i.e. excluding the final refresh), ``p99_stall_ms_predict``,
``max_stall_ms_refresh`` (the gap spanning the one labels write + redraw, on its own),
``seconds_to_labels`` (click -> first heartbeat after the labels were drawn),
``seconds_predict_worker`` (the worker's own time), ``torch_threads_worker``, plus the setup.

Scenario ``train`` (``--scenario train``): the real ``TrainerClient`` spawns the fine-tune
process on CPU (the Fine-tune widget's default request: trainer threads = cores - 1, nice 5) on a
reviewed synthetic nuclei session of 512x512 (``--quick``: 256x256) and trains for
``--train-seconds`` (30; quick 15) after its first step while the heartbeat runs, then Stop.
Keys: ``max_stall_ms_train`` (longest gap from the ``start()`` call to the end of the measured
training, start-up included), ``p99_stall_ms_train``, ``max_stall_ms_train_start`` (``start()``
-> first step: process spawn, imports, data loading), ``max_stall_ms_train_steady`` /
``p99_stall_ms_train_steady`` (after the first step), ``max_stall_ms_train_stop`` (Stop -> the
process is gone), ``ms_start_call``, ``seconds_to_first_step``, ``train_steps``,
``torch_threads_trainer``. ``load_average_1min`` says how busy the machine was.

Scenario ``refresh`` (``--scenario refresh``): issue 18's region-level refresh of one 2-D
image. A session version v001 (a constant binary net: background everywhere) predicts the image,
one region is painted and one reviewed, then v002 (foreground everywhere) is published with
"follow the newest version" on. Keys: ``max_stall_ms_refresh_version`` /
``p99_stall_ms_refresh_version`` (publish -> refreshed and drawn), ``max_stall_ms_idle`` (the
same heartbeat for 1 s just before, with nothing running: the machine's share),
``seconds_refresh_version``,
``refresh_regions_identical`` (both regions byte-identical), ``refresh_changed_elsewhere``.

Scenario ``volume`` (``--scenario volume``, in ``bench_gui_volume.py``): the loop in 3-D, a
Z-stack predicted by a 3-D model then refreshed by a new 3-D version around the user's work
(``max_stall_ms_predict_3d``, ``max_stall_ms_refresh_3d``, ...).

Scenarios live in ``SCENARIOS`` (``--scenario`` picks, default all) and share
:class:`Heartbeat` and :func:`stall_stats`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TARGET_STALL_MS = 100.0


class Heartbeat:
    """Records ``time.perf_counter()`` at every tick of a 10 ms QTimer on the main thread."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        self.ticks.clear()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


def stall_stats(ticks: list[float], start: float, end: float) -> dict[str, float]:
    """Max and p99 gap (ms) between heartbeat ticks ending inside (start, end]."""
    times = np.asarray(ticks)
    gaps = np.diff(times)
    keep = (times[1:] > start) & (times[1:] <= end)
    gaps = gaps[keep] * 1000.0
    if not gaps.size:
        return {"max": float("nan"), "p99": float("nan"), "n": 0}
    return {"max": float(gaps.max()), "p99": float(np.percentile(gaps, 99)), "n": int(gaps.size)}


def spanning_gap_ms(ticks: list[float], start: float, end: float) -> float:
    """The gap (ms) from the last tick before ``start`` to the first tick after ``end``."""
    times = np.asarray(ticks)
    before = times[times <= start]
    after = times[times >= end]
    if not before.size or not after.size:
        return float("nan")
    return float((after[0] - before[-1]) * 1000.0)


def default_checkpoint(folder: Path) -> tuple[Path, str]:
    """A built-in 1-channel checkpoint (instances first), else a random unet (base 32, depth 4)."""
    from napari_unet.core.checkpoint.format import builtin_checkpoints, read_checkpoint_info

    usable = {
        name: read_checkpoint_info(path) for name, path in builtin_checkpoints().items()
    }  # instance models first: their post-processing (watershed) is the heavier path
    for name, info in sorted(usable.items(), key=lambda item: item[1].task != "instances"):
        if info.in_channels == 1:
            return builtin_checkpoints()[name], f"built-in {name} ({info.task})"
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=4, base_channels=32, in_channels=1, out_channels=3)
    path = save_checkpoint(folder / "bench_unet32.pt", model, task="instances")
    return path, "random unet base 32 depth 4 (instances)"


def wait_until(app: Any, predicate: Callable[[], bool], timeout_s: float) -> None:
    """Run the Qt event loop until ``predicate()`` (raises TimeoutError after ``timeout_s``)."""
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the widget did not finish in time")
        app.processEvents()
        time.sleep(0.001)


def scenario_predict(viewer: Any, widget: Any, app: Any, args: argparse.Namespace) -> dict:
    """Click Run on the image and measure stalls until the labels are on screen."""
    panel = widget.segment
    panel.form.scope.setCurrentIndex(panel.form.scope.findData("slice"))
    panel.form.device.setCurrentIndex(max(panel.form.device.findText("cpu"), 0))
    if args.threads:
        panel.num_threads = args.threads
    marks: dict[str, float] = {}
    real_write = panel.writer.write

    def timed_write(target: Any, result: Any, plan: Any = None) -> None:
        marks["write_start"] = time.perf_counter()
        if args.profile:
            import cProfile
            import pstats

            with cProfile.Profile() as profile:
                real_write(target, result, plan)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
        else:
            real_write(target, result, plan)
        marks["write_end"] = time.perf_counter()
        marks["worker_s"] = result.seconds

    panel.writer.write = timed_write
    beat = Heartbeat()
    beat.start()
    wait_until(app, lambda: len(beat.ticks) > 20, 5)  # a settled loop before the click
    marks["click"] = time.perf_counter()
    panel.run_button.click()
    wait_until(app, lambda: panel.worker is None, args.timeout)
    if "write_end" not in marks:
        raise RuntimeError(f"no labels were written: {panel.message.text()}")
    # labels on screen: the event loop has come back after the write and the redraw it posted
    drawn = marks["write_end"]
    wait_until(app, lambda: beat.ticks and beat.ticks[-1] > drawn, 10)
    wait_until(app, lambda: len([t for t in beat.ticks if t > drawn]) >= 3, 10)
    beat.stop()
    first_after = next(t for t in beat.ticks if t > drawn)
    predict = stall_stats(beat.ticks, marks["click"], marks["write_start"])
    return {
        "max_stall_ms_predict": round(predict["max"], 1),
        "p99_stall_ms_predict": round(predict["p99"], 1),
        "heartbeats_predict": predict["n"],
        "max_stall_ms_refresh": round(
            spanning_gap_ms(beat.ticks, marks["write_start"], marks["write_end"]), 1
        ),
        "seconds_to_labels": round(first_after - marks["click"], 2),
        "seconds_predict_worker": round(marks["worker_s"], 2),
        "status": panel.status.text(),
    }


def _train_session(folder: Path, side: int) -> Path:
    """A session with one synthetic nuclei image, fully reviewed (instance labels)."""
    from napari_unet.core.synthetic import synthetic_nuclei
    from napari_unet.session import Session

    image, labels = synthetic_nuclei((side, side), n_nuclei=side * side // 1600, seed=2)
    session = Session.create(folder)
    image_id = session.add_image("nuclei", axes="YX", image=image, task="instances")
    session.save_slice(image_id, 0, labels=labels, reviewed=np.ones(labels.shape, bool))
    return session.root


def scenario_train(viewer: Any, widget: Any, app: Any, args: argparse.Namespace) -> dict:
    """Start the real trainer (``TrainerClient``, spawned, CPU) and measure stalls while it runs.

    The request is what the Fine-tune widget sends by default (trainer threads = cores - 1,
    nice 5, patch 256, batch 4, validation every 20 steps), on a fully reviewed synthetic
    nuclei image, starting from the benchmark's model. The heartbeat runs from the ``start()``
    call until ``--train-seconds`` after the first training step; then Stop is pressed.
    """
    from napari_unet._widgets.trainer_client import TrainerClient
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.trainer.events import FinetuneRequest

    seconds = args.train_seconds or (15.0 if args.quick else 30.0)
    folder = _train_session(Path(args.work_dir) / "train_session", 256 if args.quick else 512)
    train = TrainConfig(
        task="instances",
        minutes=seconds / 60.0 + 5.0,  # never ends on its own while measured
        val_every=20,
        val_fraction=0.1,
        val_tile=128,
        device="cpu",
    )
    request = FinetuneRequest(
        session=str(folder),
        start_from=str(args.resolved_checkpoint),
        train_config=train.to_dict(),
        num_threads=args.train_threads,
        device="cpu",
    )
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
    whole = stall_stats(beat.ticks, marks["start"], marks["end"])
    start = stall_stats(beat.ticks, marks["start"], marks["first_step"])
    steady = stall_stats(beat.ticks, marks["first_step"], marks["end"])
    stop = stall_stats(beat.ticks, marks["stop"], marks["stopped"])
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


def _constant_checkpoint(path: Path, bias: float) -> Path:
    """A binary depth-2 U-Net predicting one class everywhere (bias -10: background, +10: all)."""
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=1)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(bias)
    return save_checkpoint(path, model, task="binary", tile_shape=(256, 256), overlap=16)


def scenario_refresh(viewer: Any, widget: Any, app: Any, args: argparse.Namespace) -> dict:
    """Publish a version after two regions of the 2-D image were corrected; measure the stalls.

    A session with v001 (background everywhere) predicts the image; the user paints region A
    and reviews region B; v002 (foreground everywhere) is published with "follow the newest
    version" on, and the background refresh (predict + merge in the worker, one undoable write
    on the main thread) runs while the heartbeat measures the event loop.
    """
    from napari_unet._widgets import layers as L
    from napari_unet.session import Session

    panel, loop = widget.segment, widget.segment.loop
    session = Session.create(Path(args.work_dir) / "refresh_session")
    session.add_version(_constant_checkpoint(Path(args.work_dir) / "v1.pt", -10.0), parent="x")
    loop.set_session(session)
    loop.set_active_version("v001")
    panel.form.scope.setCurrentIndex(panel.form.scope.findData("slice"))
    panel.run_button.click()
    wait_until(app, lambda: panel.worker is None, args.timeout)
    labels = L.find_plugin_layer(viewer, role="labels", image_layer="nuclei")
    side = labels.data.shape[-1]
    a, b = slice(side // 10, side // 5), slice(side // 2, side // 2 + side // 8)
    ys, xs = np.mgrid[a, a]
    labels.data_setitem((ys.ravel(), xs.ravel()), 1)  # region A painted
    L.plugin_tag(labels)["reviewed"][b, b] = True  # region B reviewed
    before = np.array(labels.data)
    session.add_version(_constant_checkpoint(Path(args.work_dir) / "v2.pt", 10.0), parent="v001")
    beat = Heartbeat()
    beat.start()
    wait_until(app, lambda: len(beat.ticks) > 20, 5)
    idle_start = time.perf_counter()  # the same heartbeat with nothing to do: the machine's own
    wait_until(app, lambda: time.perf_counter() - idle_start > 1.0, 5)
    idle = stall_stats(beat.ticks, idle_start, time.perf_counter())
    start = time.perf_counter()
    loop.add_version("v002")
    repredictor = panel.hot_swap.repredictor
    wait_until(app, lambda: not repredictor.running, args.timeout)
    done = time.perf_counter()
    wait_until(app, lambda: len([t for t in beat.ticks if t > done]) >= 3, 10)
    beat.stop()
    stats = stall_stats(beat.ticks, start, beat.ticks[-1])
    data = np.asarray(labels.data)
    return {
        "max_stall_ms_refresh_version": round(stats["max"], 1),
        "p99_stall_ms_refresh_version": round(stats["p99"], 1),
        "max_stall_ms_idle": round(idle["max"], 1),
        "seconds_refresh_version": round(done - start, 2),
        "refresh_regions_identical": bool(
            np.array_equal(data[a, a], before[a, a]) and np.array_equal(data[b, b], before[b, b])
        ),
        "refresh_changed_elsewhere": bool(
            data[side - 10, side - 10] != before[side - 10, side - 10]
        ),
    }


def scenario_volume(*args: Any) -> dict:
    """The loop in 3-D (:mod:`bench_gui_volume`)."""
    from bench_gui_volume import scenario_volume as run

    return run(*args)


SCENARIOS: dict[str, Callable[..., dict]] = {
    "predict": scenario_predict,
    "refresh": scenario_refresh,
    "train": scenario_train,
    "volume": scenario_volume,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1024x1024 instead of 2048x2048")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--threads", type=int, help="torch threads in the worker (default cores-1)")
    parser.add_argument("--checkpoint", type=Path, help="model to use (default: see module doc)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per scenario")
    parser.add_argument("--profile", action="store_true", help="profile the labels write")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--train-seconds", type=float, help="train scenario: seconds (30; 15)")
    parser.add_argument("--train-threads", type=int, help="trainer threads (default cores-1)")
    args = parser.parse_args(argv)

    import napari
    import torch

    from napari_unet._widgets import SegmentWidget
    from napari_unet.core.synthetic import synthetic_nuclei

    side = 1024 if args.quick else 2048
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("NAPARI_UNET_CONFIG_DIR", str(Path(tmp) / "config"))
        checkpoint, model_name = (
            (args.checkpoint, str(args.checkpoint))
            if args.checkpoint
            else default_checkpoint(Path(tmp))
        )
        args.resolved_checkpoint, args.work_dir = checkpoint, tmp
        image, _ = synthetic_nuclei((side, side), n_nuclei=side * side // 1600, seed=1)
        viewer = napari.Viewer(show=True)
        app = napari.qt.get_qapp()
        viewer.add_image(image, name="nuclei")
        widget = SegmentWidget(viewer)
        viewer.window.add_dock_widget(widget, name="U-Net Segment")
        widget.segment.form.model.add_checkpoint(checkpoint)
        segment = widget.segment  # its model-info job reads the checkpoint's defaults
        wait_until(app, lambda: not segment.loop.jobs.running(segment._info_key), 60)
        results: dict[str, Any] = {
            "image_side": side,
            "model": model_name,
            "quick": args.quick,
            "torch_threads_main": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        }
        from napari_unet._widgets.predict_worker import worker_threads

        results["torch_threads_worker"] = args.threads or worker_threads()
        for name in args.scenario or sorted(SCENARIOS):
            results.update(SCENARIOS[name](viewer, widget, app, args))
        viewer.close()
    results["target_max_stall_ms"] = TARGET_STALL_MS
    for name in ("predict", "train", "refresh_version", "predict_3d", "refresh_3d"):
        if f"max_stall_ms_{name}" in results:
            results[f"pass_{name}"] = bool(results[f"max_stall_ms_{name}"] <= TARGET_STALL_MS)
    results["load_average_1min"] = round(os.getloadavg()[0], 2)
    results["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    results["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    for key, value in results.items():
        print(f"{key:28s} {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
