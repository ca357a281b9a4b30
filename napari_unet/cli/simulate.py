"""``napari-unet-loop simulate``: the human-in-the-loop experiment on a labelled folder.

Each round predicts the next ``--per-round`` images with the current model, "corrects" them from
the ground truth, fine-tunes for ``--minutes`` (or ``--steps-per-round``) on everything corrected
so far, and scores images that are never corrected (``--eval-images``, held out up front by a
seeded permutation). Round 0 scores the initial model. Writes ``{"rounds": [...], "config":
{...}}`` to ``--json`` and, with ``--plot``, the accuracy against corrected images and minutes.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
from pathlib import Path
from typing import Any

from napari_unet.cli.train import _non_negative_int, _positive_float, _positive_int

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simulate``."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate rounds of correcting and fine-tuning on a labelled folder",
        description=(
            "Each round predicts the next --per-round images with the current model, "
            '"corrects" them from the ground truth, fine-tunes for --minutes (or '
            "--steps-per-round) on everything corrected so far, and scores images that are "
            "never corrected (--eval-images, held out up front by a seeded permutation). Round 0 "
            "scores the initial model. Writes the rounds and the settings to --json and, with "
            "--plot, the accuracy against corrected images and minutes. A line per round goes to "
            "stdout and, every 10 s, a progress line to stderr (-q: none)."
        ),
    )
    add = parser.add_argument
    add("--images", required=True, type=Path, help="folder of images (TIFF/PNG)")
    add("--labels", required=True, type=Path, help="folder of ground truth with the same stems")
    add("--task", required=True, choices=("semantic", "binary", "instances"))
    add("--init", help="checkpoint or built-in model to start from (default: a new model)")
    add("--model", default="unet", help="architecture of a new model, or a built-in model (unet)")
    add("--depth", type=_positive_int, help="depth of a new model (architecture default)")
    add("--base-channels", type=_positive_int, help="width of a new model (architecture default)")
    add("--rounds", required=True, type=_non_negative_int, help="correction rounds after round 0")
    add("--per-round", required=True, type=_positive_int, help="images corrected per round")
    add("--minutes", type=_positive_float, help="training minutes per round")
    add("--steps-per-round", type=_positive_int, help="training steps per round")
    add("--eval-images", type=_positive_int, help="held-out images (default: 1/4 of the rest)")
    add("--label-map", help="truth value mapping SRC:DST,... (ISBI 2012: 0:1,255:0)")
    add("--seed", type=int, default=0, help="random seed (0)")
    add("--patch", type=_positive_int, default=256, help="output patch side (256)")
    add("--batch-size", type=_positive_int, default=4, help="patches per step (4)")
    add("--lr", type=_positive_float, default=1e-3, help="learning rate (1e-3)")
    add("--tile", type=_positive_int, default=512, help="prediction tile side (512)")
    add("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    add("--threads", type=_positive_int, help="torch CPU threads")
    add("--work-dir", type=Path, help="keep each round's checkpoints here (default: temporary)")
    add("--json", required=True, type=Path, help="where to write the rounds (JSON)")
    add("--plot", type=Path, help="where to write the curves (PNG)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the experiment, write the JSON (and plot); returns the exit status."""
    import torch

    from napari_unet.cli._output import check_output_file, existing_folder, probe_folder
    from napari_unet.cli._progress import LINE_INTERVAL_S, PROGRESS, Every
    from napari_unet.cli.train import load_pairs
    from napari_unet.core.atomic import atomic_write_json
    from napari_unet.core.checkpoint.format import (
        builtin_checkpoints,
        load_checkpoint,
        resolve_checkpoint,
    )
    from napari_unet.core.generators import run_to_end
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.inference.prediction import PredictConfig
    from napari_unet.core.simulation.experiment import (
        RoundRecord,
        SimulateConfig,
        SimulateProgress,
        iter_simulate,
        new_model_for,
    )
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.core.training.targets import parse_label_map

    check_output_file(args.json, what="the JSON file", flag="--json", suffix=".json")
    if args.plot:
        check_output_file(args.plot, what="the plot", flag="--plot", suffix=".png")
    if args.work_dir:
        probe_folder(existing_folder(args.work_dir), what="the round checkpoints")
    if args.threads:
        torch.set_num_threads(args.threads)
    label_map = parse_label_map(args.label_map) if args.label_map else None
    init = args.init
    if init is None and args.model in builtin_checkpoints():
        init = args.model  # --model fluo-nuclei starts from the built-in, as predict --model does
    loaded = load_checkpoint(resolve_checkpoint(init)) if init else None
    normalization = loaded.info.normalization_config() if loaded else NormalizationConfig()
    items = load_pairs(args.images, args.labels, task=args.task, normalization=normalization)
    if loaded is not None:
        model = loaded.model
    else:
        extra = {"depth": args.depth, "base_channels": args.base_channels}
        model = new_model_for(
            args.model,
            items,
            args.task,
            label_map=label_map,
            seed=args.seed,
            **{k: v for k, v in extra.items() if v is not None},
        )
    config = SimulateConfig(
        task=args.task,
        rounds=args.rounds,
        per_round=args.per_round,
        minutes=args.minutes,
        steps_per_round=args.steps_per_round,
        eval_images=args.eval_images,
        seed=args.seed,
        label_map=tuple(label_map.items()) if label_map else None,
        train=TrainConfig(
            task=args.task,
            batch_size=args.batch_size,
            patch_shape=(args.patch, args.patch),
            lr=args.lr,
            val_fraction=0.0,
            normalization=normalization,
            device=args.device,
        ),
        predict=PredictConfig(tile_shape=(args.tile, args.tile), device=args.device),
    )

    due = Every(LINE_INTERVAL_S)

    def show(event: Any) -> None:
        if isinstance(event, RoundRecord):
            print(format_round(event, args.task), flush=True)
        elif isinstance(event, SimulateProgress) and due():
            PROGRESS.info("%s", progress_text(event))

    events = iter_simulate(
        model, items, config, work_dir=str(args.work_dir) if args.work_dir else None
    )
    result = run_to_end(events, show)
    summary = result.to_dict(
        {
            "command": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if k != "run"
            },
            "simulate": config.to_dict(),
            "model": {"arch": model.arch, **model.config},
            "n_images": len(items),
            "machine": machine_description(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    atomic_write_json(args.json, summary)
    print(f"wrote {args.json}")
    if args.plot:
        plot_curves(summary, args.plot, title=f"{args.images.parent.name} ({args.task})")
        print(f"wrote {args.plot}")
    return 0


#: What each phase of a round is doing, for the progress lines.
PHASE_WORDS = {"evaluate": "scoring image", "correct": "correcting image", "train": "training step"}


def progress_text(event: Any) -> str:
    """``round 2: training step 120/300, loss 0.4100`` (no total for a budget in minutes)."""
    total = f"/{event.total}" if event.total else ""
    loss = f", loss {event.loss:.4f}" if event.loss is not None else ""
    words = PHASE_WORDS.get(event.phase, event.phase)
    return f"round {event.round}: {words} {event.done}{total}{loss}"


def format_round(record: Any, task: str) -> str:
    """One line per round: corrected images, minutes, effort, the main metrics."""
    keys = CURVE_METRICS.get(task, ("iou",))
    scores = "  ".join(
        f"{k} {record.metrics[k]:.4f}" for k in keys if record.metrics.get(k) is not None
    )
    return (
        f"round {record.round}: {record.corrected_images} corrected, "
        f"{record.cumulative_minutes:.1f} min ({record.steps} steps), "
        f"{record.pixels_corrected} px / {record.objects_corrected} objects edited  {scores}"
    )


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
