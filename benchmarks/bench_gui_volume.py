"""The ``volume`` scenario of ``bench_gui.py``: event-loop stalls of the loop in 3-D.

A Z-stack of bright ellipsoids (``--quick``: 32x256x256, else 64x512x512) is added to the
viewer; a session holds v001, a constant ``unet3d_aniso`` (depth 2, 8 base channels) that
predicts background everywhere. Measured with the shared 10 ms heartbeat:

1. ``max_stall_ms_predict_3d``: Run with scope *stack*: the whole volume predicted in 3-D tiles
   and labelled in 3-D in the worker, then written into a new Labels layer and drawn. napari's
   creation of that first Labels layer (its vispy visuals and layer controls: a fixed cost, the
   same for a 1x1x1 layer) is one step that cannot be split; as in the 2-D scenario it is also
   reported on its own, ``max_stall_ms_layer_3d`` (the gap spanning the one write), and
   ``max_stall_ms_predict_3d_besides_layer`` is the longest stall of the rest;
2. ``max_stall_ms_refresh_3d``: the user paints an object in slice Z/2 and reviews a box in
   slice Z/4; v002 (foreground everywhere) is published with "follow the newest version" on and
   the volume is refreshed in 3-D around that work (merge in the worker, one undoable write).

Keys also: ``p99_*``, ``ms_write_3d`` (the write call itself), ``seconds_predict_3d``,
``seconds_refresh_3d``, ``volume_shape``, ``refresh_3d_regions_identical`` (the painted and
reviewed voxels byte-identical after the refresh), ``refresh_3d_changed_elsewhere``,
``max_stall_ms_idle_3d`` (the heartbeat with nothing running, just before: the machine's own
share). ``bench_gui.py`` adds ``load_average_1min``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np


def constant_checkpoint_3d(path: Path, bias: float) -> Path:
    """A binary ``unet3d_aniso`` predicting one class everywhere (bias -10: none, +10: all)."""
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model(
        "unet3d_aniso", depth=2, base_channels=8, out_channels=1, voxel_size=(2.0, 1.0, 1.0)
    )
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(bias)
    return save_checkpoint(path, model, task="binary", tile_shape=(32, 128, 128), overlap=8)


def ellipsoids(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """(Z, Y, X) uint16: bright ellipsoids (semi-axes 3 x 10 x 10) on noise."""
    rng = np.random.default_rng(seed)
    image = rng.integers(80, 140, size=shape).astype(np.uint16)
    depth, height, width = shape
    zz, yy, xx = np.ogrid[-3:4, -10:11, -10:11]
    ball = (zz / 3.0) ** 2 + (yy / 10.0) ** 2 + (xx / 10.0) ** 2 <= 1
    for _ in range(height * width // 2000):
        cz = rng.integers(3, depth - 3)
        cy, cx = rng.integers(10, height - 10), rng.integers(10, width - 10)
        image[cz - 3 : cz + 4, cy - 10 : cy + 11, cx - 10 : cx + 11][ball] = 600
    return image


def stall_stats_besides(
    ticks: list[float], start: float, end: float, marks: dict[str, float]
) -> dict[str, float]:
    """Max and p99 gap (ms) ending inside ``(start, end]``, the one spanning the write left out."""
    times = np.asarray(ticks)
    gaps, ends = np.diff(times) * 1000.0, times[1:]
    keep = (ends > start) & (ends <= end)
    after = np.flatnonzero(ends >= marks["write_end"])
    if after.size:
        keep[after[0]] = False  # the gap from the last tick before the write to the first after
    gaps = gaps[keep]
    if not gaps.size:
        return {"max": float("nan"), "p99": float("nan"), "n": 0}
    return {"max": float(gaps.max()), "p99": float(np.percentile(gaps, 99)), "n": int(gaps.size)}


def _time_writes(panel: Any) -> dict[str, float]:
    """Wrap ``panel.writer.write``; the returned dict gets ``write_start``/``write_end`` (first)."""
    marks: dict[str, float] = {}
    real_write = panel.writer.write

    def timed_write(target: Any, result: Any, plan: Any = None) -> Any:
        marks.setdefault("write_start", time.perf_counter())
        try:
            return real_write(target, result, plan)
        finally:
            marks.setdefault("write_end", time.perf_counter())

    panel.writer.write = timed_write
    return marks


def _edit_and_publish(labels: Any, session: Any, work: Path, shape: tuple) -> tuple:
    """Paint in slice Z/2, review a box in Z/4, publish v002; ``(a, b, labels before)``."""
    from napari_unet._widgets import layers as L

    depth, side = shape[0], shape[-1]
    a, b = slice(side // 10, side // 5), slice(side // 2, side // 2 + side // 8)
    labels.data[depth // 2, a, a] = 1  # painted: an edit (labels != snapshot)
    labels.refresh()
    L.plugin_tag(labels)["reviewed"][depth // 4, b, b] = True
    before = np.array(labels.data)
    session.add_version(constant_checkpoint_3d(work / "v2_3d.pt", 10.0), parent="v001")
    return a, b, before


def _volume_session(viewer: Any, app: Any, panel: Any, work: Path, shape: tuple) -> Any:
    """A session on v001 (background everywhere) and the Z-stack ``vol`` chosen, scope *stack*."""
    from _bench_gui_common import wait_until

    from napari_unet.session import Session

    loop = panel.loop
    session = Session.create(work / "volume_session")
    session.add_version(constant_checkpoint_3d(work / "v1_3d.pt", -10.0), parent="x")
    loop.set_session(session)
    loop.set_active_version("v001")
    image = viewer.add_image(ellipsoids(shape), name="vol", scale=(2.0, 1.0, 1.0))
    combo = panel.images.combo
    combo.setCurrentIndex(combo.findText("vol"))
    wait_until(app, lambda: panel.image_layer() is image, 10)
    panel.form.scope.setCurrentIndex(panel.form.scope.findData("stack"))
    return session


def scenario_volume(viewer: Any, widget: Any, app: Any, args: argparse.Namespace) -> dict:
    """Predict a Z-stack in 3-D, then refresh it with a new version; the stalls of both."""
    from bench_gui import Heartbeat, spanning_gap_ms, stall_stats, wait_until

    from napari_unet._widgets import layers as L

    shape = (32, 256, 256) if args.quick else (64, 512, 512)
    work = Path(args.work_dir)
    panel, loop = widget.segment, widget.segment.loop
    session = _volume_session(viewer, app, panel, work, shape)
    beat = Heartbeat()
    beat.start()
    wait_until(app, lambda: len(beat.ticks) > 20, 5)
    idle_start = time.perf_counter()
    wait_until(app, lambda: time.perf_counter() - idle_start > 1.0, 5)
    idle = stall_stats(beat.ticks, idle_start, time.perf_counter())
    marks = _time_writes(panel)
    click = time.perf_counter()
    panel.run_button.click()
    wait_until(app, lambda: panel.worker is None, args.timeout)
    predicted = time.perf_counter()
    wait_until(app, lambda: len([t for t in beat.ticks if t > predicted]) >= 3, 10)
    predict = stall_stats(beat.ticks, click, beat.ticks[-1])
    layer_gap = spanning_gap_ms(beat.ticks, marks["write_start"], marks["write_end"])
    besides = stall_stats_besides(beat.ticks, click, beat.ticks[-1], marks)
    labels = L.find_plugin_layer(viewer, role="labels", image_layer="vol")
    if labels is None:
        raise RuntimeError(f"no 3-D labels were written: {panel.message.text()}")
    a, b, before = _edit_and_publish(labels, session, work, shape)
    depth = shape[0]
    settled = time.perf_counter()  # the set-up above blocked the loop: not part of the refresh
    wait_until(app, lambda: len([t for t in beat.ticks if t > settled]) >= 3, 10)
    start = time.perf_counter()
    loop.add_version("v002")
    repredictor = panel.hot_swap.repredictor
    wait_until(app, lambda: not repredictor.running, args.timeout)
    done = time.perf_counter()
    wait_until(app, lambda: len([t for t in beat.ticks if t > done]) >= 3, 10)
    beat.stop()
    refresh = stall_stats(beat.ticks, start, beat.ticks[-1])
    data = np.asarray(labels.data)
    kept = (slice(depth // 2, depth // 2 + 1), a, a), (slice(depth // 4, depth // 4 + 1), b, b)
    return {
        "volume_shape": list(shape),
        "max_stall_ms_predict_3d": round(predict["max"], 1),
        "p99_stall_ms_predict_3d": round(predict["p99"], 1),
        "seconds_predict_3d": round(predicted - click, 2),
        "max_stall_ms_layer_3d": round(layer_gap, 1),
        "ms_write_3d": round(1000 * (marks["write_end"] - marks["write_start"]), 1),
        "max_stall_ms_predict_3d_besides_layer": round(besides["max"], 1),
        "p99_stall_ms_predict_3d_besides_layer": round(besides["p99"], 1),
        "max_stall_ms_refresh_3d": round(refresh["max"], 1),
        "p99_stall_ms_refresh_3d": round(refresh["p99"], 1),
        "seconds_refresh_3d": round(done - start, 2),
        "max_stall_ms_idle_3d": round(idle["max"], 1),
        "refresh_3d_regions_identical": all(np.array_equal(data[k], before[k]) for k in kept),
        "refresh_3d_changed_elsewhere": bool(data[-1, -10, -10] != before[-1, -10, -10]),
    }
