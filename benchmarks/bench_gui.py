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
from _bench_gui_common import (
    Heartbeat,
    default_checkpoint,
    spanning_gap_ms,
    stall_stats,
    wait_until,
)
from _bench_gui_train import _train_session, scenario_train  # noqa: F401

TARGET_STALL_MS = 100.0


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


def _parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

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
