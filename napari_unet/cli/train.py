"""``napari-unet-loop train --images DIR --labels DIR --out CHECKPOINT``: train from folders.

Images and labels (for restoration: target images) are paired by file stem, TIFF or PNG of any
bit depth; an optional ``--masks`` folder marks the annotated pixels (non-zero = annotated).
``--model`` is an architecture name (a new model with in/out channels from the data) or a
checkpoint to fine-tune. Without ``--task``, labels that look like instance masks (many ids per
image, each one connected object) train an instance model, anything else a semantic one; the
choice is said in one line. Progress goes to stderr (:mod:`napari_unet.cli.train_progress`), the
final validation metrics to stdout; ``best.pt`` and ``latest.pt`` (for ``--resume``) are kept in
``<out>.training/``, the best model is copied to ``--out`` and the history of the run (loss,
learning rate, validation metrics) to ``<out>.history.csv`` beside it, as the run goes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from napari_unet.cli import (
    train_context,
    train_polarity,
    train_pretrain,
    train_volume,
    train_width,
)
from napari_unet.cli._parser import fraction
from napari_unet.cli.train_data import (  # noqa: F401 (names importable from here, as before)
    BLOB_SHARE,
    _blob_count,
    _default_task,
    _to_cyx,
    _warn_if_instances,
    _warn_small_images,
    instance_evidence,
    load_pairs,
)
from napari_unet.cli.train_setup import (
    ZOOM_HELP,
    data_fingerprint,
    read_training_data,
    removed_on_failure,
    start_model,
    train_config,
    training_folder,
    zoom_argument,
)
from napari_unet.cli.train_steps import (  # noqa: F401
    PEAK_CHECKPOINTS,
    _checked_task,
    _checkpoint_path,
    _first_missing,
    _format,
    _model_bytes,
    _start_score,
    _train,
    _train_and_monitor,
    default_start,
    report,
    write_model,
)
from napari_unet.core.training.config import KEEPS
from napari_unet.core.training.loss_augment_config import LossConfig

logger = logging.getLogger(__name__)

TASK_CHOICES = ("semantic", "binary", "instances", "restoration")

#: ``train --help`` (plain text: argparse prints it as it is).
DESCRIPTION = (
    "Train or fine-tune a model on a folder of images and a folder of labels paired by file "
    "stem (TIFF or PNG, any bit depth); --masks marks the annotated pixels (non-zero = "
    "annotated). --model is an architecture name (a new model) or a checkpoint to fine-tune. "
    "Without --task, labels that look like instance masks (many ids per image, each one "
    "connected object) train an instance model (without --model: from the built-in "
    "fluo-nuclei, as --task instances does), other labels a semantic one. Patch, batch "
    "size and the augmentation's zoom range are chosen from the data and the start model (a "
    "line says what the data look like and what was chosen; --patch, --batch-size and --zoom "
    "win). Data that would train a bad model (too few annotated "
    "pixels, one class only, labels that do not match the task, a patch 20x wider than the "
    "images) are refused before training starts. Progress goes to "
    "stderr: a bar on a terminal, otherwise a line every 10 s (-q: none). best.pt and "
    "latest.pt (for --resume) are kept in OUT.training/, the trained model (--keep) is copied "
    "to --out with its post-processing tuned on the held-back tiles, and "
    "the history (loss, learning rate, validation metrics per step) is written to "
    "OUT.history.csv beside it as training goes."
)

KEEP_HELP = (
    "which weights go to --out: final (default), the weights at the end of the budget, where "
    "the learning rate has come down; best, the validation-best on the held-back tiles (a "
    "stopped run always keeps its best)"
)

VAL_EVERY_HELP = (
    "steps between validations (50); with --minutes also every 8%% of the budget (at least 10 "
    "steps apart), and always at the end"
)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


SKELETON_HELP = (
    "weight of the Skeleton Recall loss term, against gaps in thin structures such as "
    "membranes: 'auto' = 1 when class 1 of a binary or 2-class semantic task is thin and "
    "encloses regions, else off; 'off'; or a weight >= 0 (default: %(default)s)"
)


def _skeleton_weight(text: str) -> float | None:
    """``auto`` -> None (decided from the labels), ``off`` -> 0, else a weight >= 0."""
    if text in ("auto", "off"):
        return None if text == "auto" else 0.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected auto, off or a weight >= 0, got {text!r}")
    return value


AUX_HELP = (
    "auxiliary output of a new instance model (--model unet): 'distance' adds a head learning "
    "each object's normalised distance to its boundary, whose maxima seed the watershed that "
    "splits touching objects (default none)"
)


_SKELETON_DEFAULT = {None: "auto", 0.0: "off"}.get(LossConfig().skeleton_recall, "auto")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train``."""
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune a model on folders of images and labels",
        description=DESCRIPTION,
    )
    add = parser.add_argument
    add("--images", required=True, type=Path, help="folder of images (TIFF/PNG)")
    add("--labels", required=True, type=Path, help="folder of labels with the same file stems")
    add("--masks", type=Path, help="folder of annotated-pixel masks (default: all annotated)")
    add(
        "--task",
        choices=TASK_CHOICES,
        help="default: the checkpoint's task; for a new model instances when the labels look "
        "like instance masks, else semantic",
    )
    add(
        "--model",
        help="architecture name, or checkpoint or built-in model to fine-tune (default: unet; "
        "instances, given by --task or told from the labels: the built-in fluo-nuclei, adapted "
        "to the images' channels)",
    )
    _add_budget(parser)
    add("--label-map", help="label value mapping SRC:DST,... (e.g. ISBI 2012: 0:1,255:0)")
    add("--ignore-value", type=int, help="raw label value to ignore (e.g. 255)")
    add("--seed", type=int, default=0, help="random seed (0)")
    add(
        "--patch",
        type=_positive_int,
        help="output patch side in pixels (default: from the data, at most 256)",
    )
    add("--batch-size", type=_positive_int, help="patches per step (default: from the data, 4+)")
    add("--zoom", type=zoom_argument, help=ZOOM_HELP)
    add("--lr", type=_positive_float, default=1e-3, help="learning rate (1e-3)")
    add("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    add("--freeze-encoder", action="store_true", help="fine-tune the decoder only")
    add("--aux", choices=("none", "distance"), default="none", help=AUX_HELP)
    add("--skeleton-recall", type=_skeleton_weight, default=_SKELETON_DEFAULT, help=SKELETON_HELP)
    add("--axes", help="axes of every image, e.g. YX, YXC, CYX (default: metadata or guess)")
    add("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    add("--threads", type=_positive_int, help="torch CPU threads")
    add(
        "--log-every",
        type=_positive_int,
        help="steps between progress lines and history rows (default: a line every 10 s when "
        "stderr is not a terminal, a history row every 10 steps)",
    )
    add("--resume", type=Path, help="latest.pt of an interrupted run to continue")
    add("--nproc", type=_positive_int, default=1, help="processes training together (DDP; 1)")
    add("--out", required=True, type=Path, help="where to write the trained checkpoint (.pt)")
    train_volume.add_arguments(parser)
    train_context.add_arguments(parser)
    train_pretrain.add_arguments(parser)
    train_polarity.add_arguments(parser)
    train_width.add_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _add_budget(parser: argparse.ArgumentParser) -> None:
    """``--steps | --minutes``, the held-back tiles, how often they are scored, what is kept."""
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, help="number of steps (default 500)")
    budget.add_argument("--minutes", type=_positive_float, help="time budget in minutes")
    add = parser.add_argument
    add("--val-fraction", type=fraction, default=0.1, help="held-back annotated tiles (0.1)")
    add("--val-every", type=_positive_int, default=50, help=VAL_EVERY_HELP)
    add("--keep", choices=KEEPS, default="final", help=KEEP_HELP)


def run(args: argparse.Namespace) -> int:
    """Train and write ``--out``; returns the exit status."""
    from napari_unet.cli import train_ddp
    from napari_unet.cli._output import check_output_file
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.device import get_device
    from napari_unet.core.models import list_architectures

    # --model left out: see default_start (pre-training or --base-channels: a new unet)
    args.model = (
        train_pretrain.default_model(args) or train_width.default_model(args) or default_start(args)
    )
    status = train_ddp.launch_or_join(args)  # --nproc N: N processes run this, one rank each
    if status is not None:
        return status
    out = Path(args.out)
    training_dir = training_folder(args)
    # what the user can get wrong is checked before the data are read and training starts
    check_output_file(out, what="the checkpoint", suffix=".pt")
    get_device(args.device)
    info = None
    if args.model not in list_architectures():
        info = read_checkpoint_info(_checkpoint_path(args.model))
    items, task, targets, volume = read_training_data(args, info)
    with removed_on_failure(training_dir):  # the fitted start model goes when the run fails
        trained = _fit_and_train(args, info, items, task, targets, volume)
    if isinstance(trained, int):  # a follower rank of --nproc N
        return trained
    result, data, start_score, history = trained  # a failed --out write keeps OUT.training/
    write_model(
        out, result, {"fingerprint": data.to_dict(), **train_context.provenance(args, info)}
    )
    report(out, result, start_score)
    print(f"history: {history.path}")
    return 0


def _fit_and_train(
    args: argparse.Namespace, info: Any, items: list, task: str, targets: Any, volume: Any
) -> Any:
    """The start model fitted to the data and trained: ``(result, data fingerprint, start
    score, history)``, or a follower rank's exit status."""
    from napari_unet.cli import train_ddp
    from napari_unet.cli._output import check_output_file
    from napari_unet.cli._progress import PROGRESS
    from napari_unet.cli.train_progress import History, TrainMonitor

    out, training_dir = Path(args.out), training_folder(args)
    model_or_checkpoint, items = start_model(args, info, items, task, targets, volume)
    check_output_file(
        training_dir / "latest.pt",
        what="the training checkpoints",
        needed_bytes=PEAK_CHECKPOINTS * _model_bytes(model_or_checkpoint),
    )
    data = data_fingerprint(args, info, model_or_checkpoint, items, task, targets, volume)
    # the progress logger shows at INFO by default; a scale problem is a warning
    (logger.warning if data.scale_warning else PROGRESS.info)("%s", data.describe())
    model_or_checkpoint = train_width.apply(
        args, info, model_or_checkpoint, items, task, targets, data
    )
    model_or_checkpoint, left = train_pretrain.apply(args, model_or_checkpoint, items, data)
    config = train_config(left, info, task, targets, data, training_dir)
    items, config = train_polarity.apply(args, info, model_or_checkpoint, items, config)
    if train_ddp.rank() > 0:  # trains in step with rank 0, which writes and reports
        return train_ddp.follow(model_or_checkpoint, items, config, resume_from=args.resume)
    start_score = None
    if info is not None:
        start_score = _start_score(Path(model_or_checkpoint), items, config)
        if start_score is not None:
            PROGRESS.info("start model: val %.4f", start_score)
    history = History(out.parent / f"{out.stem}.history.csv", resume=args.resume is not None)
    monitor = TrainMonitor(config, history, log_every=args.log_every, start_score=start_score)
    events = train_ddp.training_events(model_or_checkpoint, items, config, resume_from=args.resume)
    return _train_and_monitor(events, monitor, training_dir), data, start_score, history
