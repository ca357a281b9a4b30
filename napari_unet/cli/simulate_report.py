"""What ``napari-unet-loop simulate`` reports: one line per round, the machine it ran on and the
accuracy curves (``--plot``). Also used by ``benchmarks/bench_hitl.py`` and
``benchmarks/plot_curves.py`` (through :mod:`napari_unet.cli.simulate`).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "CURVE_METRICS",
    "format_round",
    "machine_description",
    "plot_curves",
    "progress_text",
    "show_event",
]


def machine_description() -> str:
    """CPU model, logical cores, torch version and threads."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            model = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                model,
            )
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


#: Metrics drawn per task (the first is the headline; all lie in [0, 1]).
CURVE_METRICS: dict[str, tuple[str, ...]] = {
    "semantic": ("iou", "dice", "rand_error"),
    "binary": ("iou", "dice", "rand_error"),
    "instances": ("ap50", "ap75", "f1_50"),
}


def plot_curves(
    summary: dict, path: str | os.PathLike, *, metrics: tuple[str, ...] = (), title: str = ""
) -> Path:
    """Draw the held-out metrics against corrected images and training minutes (PNG).

    Args:
        summary: the ``simulate`` JSON (``rounds`` with ``corrected_images``,
            ``cumulative_minutes``, ``pixels_corrected`` and ``metrics``).
        path: the PNG to write (atomically).
        metrics: metric keys to draw (default per task, :data:`CURVE_METRICS`).
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from napari_unet.core.atomic import atomic_write_with

    rounds = summary["rounds"]
    task = summary.get("config", {}).get("simulate", {}).get("task", "semantic")
    metrics = metrics or CURVE_METRICS.get(task, ("iou",))
    figure = Figure(figsize=(11, 3.6), layout="constrained")
    axes = figure.subplots(1, 3)
    for key in metrics:
        values = [r["metrics"].get(key) for r in rounds]
        values = [float("nan") if v is None else v for v in values]
        for ax, x in zip(axes[:2], ("corrected_images", "cumulative_minutes")):
            label = f"{key} (lower is better)" if "error" in key else key
            ax.plot([r[x] for r in rounds], values, marker="o", label=label)
    for ax, label in zip(axes[:2], ("images corrected", "minutes of training (cumulative)")):
        ax.set_xlabel(label)
        ax.set_ylabel("held-out score")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    effort = [r["pixels_corrected"] / 1000.0 for r in rounds[1:]]
    axes[2].bar([r["round"] for r in rounds[1:]], effort, color="tab:gray")
    axes[2].set_xticks([r["round"] for r in rounds[1:]])
    axes[2].set_xlabel("round")
    axes[2].set_ylabel("pixels corrected (thousands)")
    axes[2].grid(alpha=0.3, axis="y")
    if title:
        figure.suptitle(title)
    path = Path(path)
    atomic_write_with(path, lambda handle: figure.savefig(handle, format="png", dpi=110))
    return path


def format_round(record: Any, task: str) -> str:
    """One line per round: corrected images, minutes, effort, the main metrics."""
    keys = CURVE_METRICS.get(task, ("iou",))
    flipped = getattr(record, "intensities_flipped", False)
    scores = "  ".join(
        f"{k} {record.metrics[k]:.4f}" for k in keys if record.metrics.get(k) is not None
    )
    return (
        f"round {record.round}: {record.corrected_images} corrected, "
        f"{record.cumulative_minutes:.1f} min ({record.steps} steps), "
        f"{record.pixels_corrected} px / {record.objects_corrected} objects edited  {scores}"
        + ("  (intensities flipped for the start model)" if flipped else "")
        + _held_back_words(getattr(record, "note", ""), getattr(record, "held_back", {}))
    )


def _held_back_words(note: str, held: dict) -> str:
    """``  (version not published: ...: the parent is kept)`` or ``  (held-back AP@0.5 0.700 >
    parent 0.650: published)`` for a guarded round; "" otherwise."""
    if note:
        return f"  ({note}: the parent is kept)"
    if held.get("published") and held.get("score") is not None:
        parent = held.get("parent_score")
        than = f" > parent {parent:.3f}" if parent is not None else ""
        return f"  (held-back {held['metric']} {held['score']:.3f}{than}: published)"
    return ""


def show_event(event: Any, *, task: str, due: Callable[[], bool]) -> None:
    """Print each round's line; log progress at most every ``LINE_INTERVAL_S``."""
    from napari_unet.cli._progress import PROGRESS
    from napari_unet.core.simulation.experiment import RoundRecord, SimulateProgress

    if isinstance(event, RoundRecord):
        print(format_round(event, task), flush=True)
    elif isinstance(event, SimulateProgress) and due():
        PROGRESS.info("%s", progress_text(event))


PHASE_WORDS = {"evaluate": "scoring image", "correct": "correcting image", "train": "training step"}


def progress_text(event: Any) -> str:
    """``round 2: training step 120/300, loss 0.4100`` (no total for a budget in minutes)."""
    total = f"/{event.total}" if event.total else ""
    loss = f", loss {event.loss:.4f}" if event.loss is not None else ""
    words = PHASE_WORDS.get(event.phase, event.phase)
    return f"round {event.round}: {words} {event.done}{total}{loss}"
