"""``napari-unet-loop train --images DIR --labels DIR --out CHECKPOINT``: train from folders.

Images and labels (for restoration: target images) are paired by file stem, TIFF or PNG of any
bit depth; an optional ``--masks`` folder marks the annotated pixels (non-zero = annotated).
``--model`` is an architecture name (a new model with in/out channels from the data) or a
checkpoint to fine-tune. Progress goes to stderr every ``--log-every`` steps, the final
validation metrics to stdout; ``best.pt`` and ``latest.pt`` (for ``--resume``) are kept in
``<out>.training/`` and the best model is copied to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

TASK_CHOICES = ("semantic", "binary", "instances", "restoration")


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


def _fraction(text: str) -> float:
    """A number in [0, 1) (``nan``, ``inf`` and 1.5 are refused by argparse, exit status 2)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a fraction from 0 up to (not including) 1, got {text!r}"
        )
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train``."""
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune a model on folders of images and labels",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    add = parser.add_argument
    add("--images", required=True, type=Path, help="folder of images (TIFF/PNG)")
    add("--labels", required=True, type=Path, help="folder of labels with the same file stems")
    add("--masks", type=Path, help="folder of annotated-pixel masks (default: all annotated)")
    add("--task", choices=TASK_CHOICES, help="default: the checkpoint's task, else semantic")
    add("--model", default="unet", help="architecture name or checkpoint to fine-tune (unet)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, help="number of steps (default 500)")
    budget.add_argument("--minutes", type=_positive_float, help="time budget in minutes")
    add("--val-fraction", type=_fraction, default=0.1, help="held-back annotated tiles (0.1)")
    add("--label-map", help="label value mapping SRC:DST,... (e.g. ISBI 2012: 0:1,255:0)")
    add("--ignore-value", type=int, help="raw label value to ignore (e.g. 255)")
    add("--seed", type=int, default=0, help="random seed (0)")
    add("--patch", type=_positive_int, default=256, help="output patch side in pixels (256)")
    add("--batch-size", type=_positive_int, default=4, help="patches per step (4)")
    add("--lr", type=_positive_float, default=1e-3, help="learning rate (1e-3)")
    add("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    add("--freeze-encoder", action="store_true", help="fine-tune the decoder only")
    add("--axes", help="axes of every image, e.g. YX, YXC, CYX (default: metadata or guess)")
    add("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    add("--threads", type=_positive_int, help="torch CPU threads")
    add("--val-every", type=_positive_int, default=50, help="steps between validations (50)")
    add("--log-every", type=_positive_int, default=10, help="steps between progress lines (10)")
    add("--resume", type=Path, help="latest.pt of an interrupted run to continue")
    add("--out", required=True, type=Path, help="where to write the best checkpoint (.pt)")
    parser.set_defaults(run=run)
    return parser


def _to_cyx(image: np.ndarray, axes: str | None, forced: str | None) -> np.ndarray:
    """(S, C, Y, X) view of an image read from disk."""
    from napari_unet.core.axes import check_axes, guess_axes, to_stack

    axes = (
        check_axes(forced, image.shape) if forced else guess_axes(image.shape, metadata_axes=axes)
    )
    stack, _ = to_stack(image, axes)
    return stack


def load_pairs(
    images: Path,
    labels: Path,
    masks: Path | None = None,
    *,
    task: str = "semantic",
    normalization: Any = None,
    axes: str | None = None,
) -> list:
    """Read image/label(/mask) files paired by stem into :class:`TrainingItem` objects.

    Stacks (Z or T) become one item per slice. Images are normalised with ``normalization``;
    restoration targets with the default percentile normalisation.

    Raises:
        TrainingDataError: no pairs, or an image without labels.
    """
    from napari_unet.core.data import TrainingItem
    from napari_unet.core.errors import TrainingDataError
    from napari_unet.core.io import list_images, read_image
    from napari_unet.core.normalize import normalize

    label_files = {p.stem: p for p in list_images(labels)}
    mask_files = {p.stem: p for p in list_images(masks)} if masks else {}
    image_files = list_images(images)
    missing = [p.name for p in image_files if p.stem not in label_files]
    if missing or not image_files:
        raise TrainingDataError(
            f"{len(missing)} image(s) in {images} have no labels with the same file stem in "
            f"{labels} ({', '.join(missing[:5])}); name each label file like its image."
            if missing
            else f"no TIFF/PNG images in {images}; point --images at the image folder."
        )
    items = []
    for path in image_files:
        data = read_image(path)
        stack = _to_cyx(data.image, data.axes, axes)
        target = read_image(label_files[path.stem]).image
        if task == "restoration":
            target = _to_cyx(target, None, None)
        else:
            target = target.reshape((-1, *target.shape[-2:])) if target.ndim > 2 else target[None]
        mask = None
        if path.stem in mask_files:
            mask = read_image(mask_files[path.stem]).image != 0
            mask = mask.reshape((-1, *mask.shape[-2:])) if mask.ndim > 2 else mask[None]
        if len(target) != len(stack):
            raise TrainingDataError(
                f"{path.name} has {len(stack)} slice(s) but its labels have {len(target)}; give "
                "labels for every slice."
            )
        for s in range(len(stack)):
            labels_s = target[s]
            if task == "restoration":
                labels_s = normalize(np.asarray(labels_s))
            name = path.stem if len(stack) == 1 else f"{path.stem}[{s}]"
            items.append(
                TrainingItem(
                    image=normalize(np.asarray(stack[s]), normalization),
                    labels=np.asarray(labels_s),
                    annotated_mask=None if mask is None else mask[min(s, len(mask) - 1)],
                    name=name,
                )
            )
    logger.info("read %d training image(s) from %s", len(items), images)
    return items


def _warn_if_instances(items: list, targets: Any) -> None:
    """Semantic training chosen by default on labels that look like instance masks: say so."""
    from napari_unet.core.data import label_values, looks_like_instances

    if looks_like_instances(label_values(items, ignore_value=targets.ignore_value)):
        logger.warning(
            "the labels hold many object ids per image, like instance masks, and are trained as "
            "that many classes; pass --task instances to segment objects."
        )


def _checkpoint_path(model: str) -> Path:
    """``--model`` as a checkpoint file (a path or a built-in name).

    Raises:
        CheckpointError: neither an architecture, nor a file, nor a built-in model.
    """
    from napari_unet.core.checkpoint import builtin_checkpoints, resolve_checkpoint
    from napari_unet.core.errors import CheckpointError
    from napari_unet.core.models import list_architectures

    try:
        return resolve_checkpoint(model)
    except CheckpointError:
        builtins = ", ".join(builtin_checkpoints()) or "none installed"
        raise CheckpointError(
            f"--model {model} is neither an architecture ({', '.join(list_architectures())}), "
            f"nor a built-in model ({builtins}), nor a checkpoint file; check the name or path."
        ) from None


def _warn_small_images(items: list, patch: int) -> None:
    """Images much smaller than the patch train on mostly padding: say so (it still works)."""
    small = [item for item in items if max(item.spatial_shape) * 4 <= patch]
    if small:
        side = max(max(item.spatial_shape) for item in small)
        logger.warning(
            "%d image(s) are at most %d pixels wide, far smaller than --patch %d; the patches "
            "are mostly padding, so a --patch of about %d trains faster.",
            len(small),
            side,
            patch,
            side,
        )


def _checked_task(args: argparse.Namespace, info: Any) -> str:
    """The task to train: ``--task``, else the checkpoint's, else semantic.

    Raises:
        UserInputError: ``--task`` differs from the task of the checkpoint being fine-tuned.
    """
    from napari_unet.core.errors import UserInputError

    if info is not None and args.task and args.task != info.task:
        raise UserInputError(
            f"--model {args.model} was trained for the {info.task!r} task, not {args.task!r}; "
            f"fine-tune it with --task {info.task} (or leave --task out), or start a new model "
            f"with --model unet --task {args.task}."
        )
    return args.task or (info.task if info else "semantic")


#: Checkpoints on disk at the peak of a run, in model sizes: best.pt, latest.pt (with the
#: optimiser's state: about 3), the temporary copy of latest.pt being written (3) and --out.
PEAK_CHECKPOINTS = 8


def _model_bytes(model_or_checkpoint: Any) -> int:
    """Bytes of one checkpoint of this model (about its weights)."""
    if isinstance(model_or_checkpoint, (str, Path)):
        return Path(model_or_checkpoint).stat().st_size
    return sum(p.numel() * p.element_size() for p in model_or_checkpoint.parameters())


def _first_missing(folder: Path) -> Path | None:
    """The topmost folder on the way to ``folder`` that does not exist yet (None: all exist)."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _train(events: Any, log: Any, training_dir: Path) -> Any:
    """Run the training events to the end; on failure remove the folders this run created.

    Only folders that did not exist before the run are removed (with what the run wrote in
    them); an earlier run's files are never touched. An interrupted (Ctrl-C) or diverged run
    keeps its folder: its ``latest.pt`` resumes it.

    Raises:
        OutputError: a checkpoint could not be written (full or read-only disk).
    """
    import shutil

    from napari_unet.core.errors import OutputError, TrainingDivergedError, describe_os_error
    from napari_unet.core.generators import run_to_end

    created = _first_missing(training_dir)
    try:
        return run_to_end(events, log)
    except (KeyboardInterrupt, TrainingDivergedError):
        raise
    except BaseException as err:
        if created is not None and created.exists():
            shutil.rmtree(created, ignore_errors=True)
            logger.debug("removed %s, created by this failed run", created)
        if isinstance(err, OSError):
            raise OutputError(describe_os_error(err, what="the training checkpoints")) from None
        raise


def run(args: argparse.Namespace) -> int:
    """Train and write ``--out``; returns the exit status."""
    from napari_unet.cli._output import check_output_file
    from napari_unet.core.atomic import atomic_write_bytes
    from napari_unet.core.checkpoint import read_checkpoint_info
    from napari_unet.core.device import get_device
    from napari_unet.core.errors import ChannelMismatchError, OutputError, describe_os_error
    from napari_unet.core.models import list_architectures
    from napari_unet.core.normalize import NormalizationConfig
    from napari_unet.core.simulate_parts import new_model_for
    from napari_unet.core.targets import TargetConfig, parse_label_map
    from napari_unet.core.train import (
        CheckpointEvent,
        StepEvent,
        TrainConfig,
        ValidationEvent,
        iter_train,
    )

    out = Path(args.out)
    training_dir = out.parent / f"{out.stem}.training"
    # what the user can get wrong is checked before the data are read and training starts
    check_output_file(out, what="the checkpoint", suffix=".pt")
    get_device(args.device)
    info = None
    if args.model not in list_architectures():
        info = read_checkpoint_info(_checkpoint_path(args.model))
    task = _checked_task(args, info)
    normalization = info.normalization_config() if info else NormalizationConfig()
    label_map = tuple(parse_label_map(args.label_map).items()) if args.label_map else None
    targets = TargetConfig(task=task, ignore_value=args.ignore_value, label_map=label_map)
    items = load_pairs(
        args.images,
        args.labels,
        args.masks,
        task=task,
        normalization=normalization,
        axes=args.axes,
    )
    _warn_small_images(items, args.patch)
    if info is not None:
        model_or_checkpoint = str(_checkpoint_path(args.model))
        if items[0].image.shape[0] != info.in_channels:
            raise ChannelMismatchError(
                f"the checkpoint expects {info.in_channels} channel(s) but the images have "
                f"{items[0].image.shape[0]}; use matching images or train a new model."
            )
    else:
        model_or_checkpoint = new_model_for(
            args.model,
            items,
            task,
            label_map=dict(label_map) if label_map else None,
            ignore_value=args.ignore_value,
            seed=args.seed,
        )
        if args.task is None:
            _warn_if_instances(items, targets)
    check_output_file(
        training_dir / "latest.pt",
        what="the training checkpoints",
        needed_bytes=PEAK_CHECKPOINTS * _model_bytes(model_or_checkpoint),
    )
    config = TrainConfig(
        task=task,
        steps=args.steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        patch_shape=(args.patch, args.patch),
        optimizer=args.optimizer,
        lr=args.lr,
        val_fraction=args.val_fraction,
        val_every=args.val_every,
        seed=args.seed,
        freeze_encoder=args.freeze_encoder,
        targets=targets,
        normalization=normalization,
        device=args.device,
        num_threads=args.threads,
        checkpoint_dir=str(training_dir),
    )

    def log(event: Any) -> None:
        if isinstance(event, StepEvent) and event.step % args.log_every == 0:
            logger.info(
                "step %d  loss %.4f  lr %.2e  %.1f patches/s  %.0f s",
                event.step,
                event.loss,
                event.lr,
                event.patches_per_s,
                event.elapsed_s,
            )
        elif isinstance(event, ValidationEvent):
            logger.info(
                "validation at step %d: %s%s",
                event.step,
                _format(event.metrics),
                " (best)" if event.improved else "",
            )
        elif isinstance(event, CheckpointEvent):
            logger.debug("wrote %s checkpoint %s", event.kind, event.path)

    events = iter_train(model_or_checkpoint, items, config, resume_from=args.resume)
    result = _train(events, log, training_dir)
    try:
        atomic_write_bytes(out, Path(result.best_path).read_bytes())
    except OSError as err:  # the trained model stays where it is: say where
        message = describe_os_error(err, what="the checkpoint").rstrip(".")
        raise OutputError(f"{message}; the trained model is kept in {result.best_path}.") from None
    print(f"trained {result.steps} steps ({result.reason}); best model: {out}")
    if result.best_metrics:
        print(f"validation: {_format(result.best_metrics)}")
    else:
        print("validation: none (no held-back tiles; use --val-fraction with more annotation)")
    return 0


def _format(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
