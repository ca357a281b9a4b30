"""What the scenarios of ``bench_gui.py`` share: the 10 ms heartbeat, the stall statistics, the
Qt wait loop and the default model."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


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
