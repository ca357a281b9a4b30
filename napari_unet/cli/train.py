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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
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
    add("--model", default="unet",
        help="architecture name, checkpoint or built-in model to fine-tune (unet)")  # fmt: skip
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, help="number of steps (default 500)")
    budget.add_argument("--minutes", type=_positive_float, help="time budget in minutes")
    add("--val-fraction", type=float, default=0.1, help="held-back annotated tiles (0.1)")
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


def _new_model(name: str, items: list, task: str, targets: Any, seed: int):
    """A fresh model with in/out channels from the data."""
    import torch

    from napari_unet.core.models import build_model
    from napari_unet.core.targets import apply_label_map

    in_channels = int(items[0].image.shape[0])
    if task == "restoration":
        out_channels = int(
            np.asarray(items[0].labels).reshape(-1, *items[0].spatial_shape).shape[0]
        )
    elif task == "binary":
        out_channels = 1
    elif task == "instances":
        out_channels = 3
    else:
        top = 1
        for item in items:
            labels = np.asarray(item.labels).astype(np.int64)
            if targets.ignore_value is not None:
                labels = labels[labels != targets.ignore_value]
            if targets.label_map:
                labels = apply_label_map(labels, dict(targets.label_map))
            top = max(top, int(labels.max(initial=0)))
        out_channels = top + 1
    torch.manual_seed(seed)
    return build_model(name, in_channels=in_channels, out_channels=out_channels)


def run(args: argparse.Namespace) -> int:
    """Train and write ``--out``; returns the exit status."""
    from napari_unet.core.atomic import atomic_write_bytes
    from napari_unet.core.checkpoint import read_checkpoint_info, resolve_checkpoint
    from napari_unet.core.errors import ChannelMismatchError
    from napari_unet.core.generators import run_to_end
    from napari_unet.core.models import list_architectures
    from napari_unet.core.normalize import NormalizationConfig
    from napari_unet.core.targets import TargetConfig, parse_label_map
    from napari_unet.core.train import (
        CheckpointEvent,
        StepEvent,
        TrainConfig,
        ValidationEvent,
        iter_train,
    )

    info, checkpoint = None, None
    if args.model not in list_architectures():
        checkpoint = resolve_checkpoint(args.model)  # a file or a built-in name, as in predict
        info = read_checkpoint_info(checkpoint)
    task = args.task or (info.task if info else "semantic")
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
    if info is not None:
        model_or_checkpoint = checkpoint
        if items[0].image.shape[0] != info.in_channels:
            raise ChannelMismatchError(
                f"the checkpoint expects {info.in_channels} channel(s) but the images have "
                f"{items[0].image.shape[0]}; use matching images or train a new model."
            )
    else:
        model_or_checkpoint = _new_model(args.model, items, task, targets, args.seed)
    out = Path(args.out)
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
        checkpoint_dir=str(out.parent / f"{out.stem}.training"),
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
    result = run_to_end(events, log)
    atomic_write_bytes(out, Path(result.best_path).read_bytes())
    print(f"trained {result.steps} steps ({result.reason}); best model: {out}")
    if result.best_metrics:
        print(f"validation: {_format(result.best_metrics)}")
    else:
        print("validation: none (no held-back tiles; use --val-fraction with more annotation)")
    return 0


def _format(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
