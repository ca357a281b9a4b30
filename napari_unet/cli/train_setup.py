"""Setting up a ``train`` run: the data read and checked, the start model, the data fingerprint
(patch and batch size chosen from the data) and the training settings."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from napari_unet.cli import train_context, train_volume
from napari_unet.cli.train_steps import _checked_task, _checkpoint_path

logger = logging.getLogger(__name__)


def read_training_data(args: argparse.Namespace, info: Any) -> tuple[list, str, Any, Any]:
    """``(items, task, targets, volume)``: the folders read, the task settled and the data checked
    (:func:`~napari_unet.core.training.preflight.preflight`) before anything trains; ``volume``
    is the 3-D path's :class:`~napari_unet.cli.train_volume.VolumeData` (None: a 2-D model).

    Raises:
        TrainingDataError: data that would train a bad model (one sentence, what to do).
    """
    from napari_unet.cli.train_data import _default_task, _warn_small_images, load_pairs
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.training.preflight import preflight
    from napari_unet.core.training.targets import TargetConfig, parse_label_map

    task = _checked_task(args, info)
    normalization = info.normalization_config() if info else NormalizationConfig()
    label_map = tuple(parse_label_map(args.label_map).items()) if args.label_map else None
    targets = TargetConfig(task=task, ignore_value=args.ignore_value, label_map=label_map)
    context = train_context.prepare(args, info, normalization)  # None: not 2.5-D
    volume = None if context else train_volume.prepare(args, info, task, normalization)
    items = (
        volume.items
        if volume
        else context
        if context is not None
        else load_pairs(
            args.images,
            args.labels,
            args.masks,
            task=task,
            normalization=normalization,
            axes=args.axes,
        )
    )
    items = fit_channels(items, info)
    chosen = _default_task(args, info, items)
    if chosen is not None:
        task, targets = chosen, targets.replace(task=chosen)
    patch = (args.patch, args.patch) if args.patch and volume is None else None
    preflight(
        items,
        task=task,
        # a semantic checkpoint with too few classes gets a wider head (start_model)
        n_classes=None,
        label_map=dict(label_map) if label_map else None,
        ignore_value=args.ignore_value,
        patch_shape=patch,
    )
    if patch is not None:
        _warn_small_images(items, args.patch)
    return items, task, targets, volume


def start_model(
    args: argparse.Namespace, info: Any, items: list, task: str, targets: Any, volume: Any = None
) -> Any:
    """The checkpoint to fine-tune (its path, as a str) or a new model built for the data.

    Raises:
        ChannelMismatchError: the checkpoint takes another number of channels than the images.
    """
    from napari_unet.cli.train_data import _warn_if_instances
    from napari_unet.core.simulation.parts import new_model_for

    if info is not None:
        out = Path(args.out)
        folder = out.parent / f"{out.stem}.training"
        path = _adapted_start(_checkpoint_path(args.model), info, items, folder)
        needed = classes_needed(items, info, task, targets)
        if needed is None:
            return str(path)
        from napari_unet.core.checkpoint.widen import widen_classes

        folder.mkdir(parents=True, exist_ok=True)
        logger.info(
            "the labels use %d classes and %s has %d: it is fine-tuned with a new head (the rest "
            "of the network kept; the file itself is not changed)",
            needed,
            args.model,
            info.out_channels,
        )
        return str(widen_classes(path, needed, folder / f"start-{needed}-classes.pt"))
    model = new_model_for(
        args.model,
        items,
        task,
        label_map=dict(targets.label_map) if targets.label_map else None,
        ignore_value=args.ignore_value,
        seed=args.seed,
        **(volume.model_settings if volume else {}),
    )
    if args.task is None and task == "semantic":
        _warn_if_instances(items, targets)
    return model


def fit_channels(items: list, info: Any) -> list:
    """``items`` for a one-channel checkpoint: greyscale images stored as RGB (equal channels)
    keep one channel (logged); every other case is left to :func:`start_model`."""
    from napari_unet.core.checkpoint.channels import collapse_grey, plan_channels

    if info is None or plan_channels([i.image for i in items], info.in_channels) != "grey":
        return items
    logger.info(
        "the images are greyscale stored with equal colour channels: one channel is used, as "
        "the start model takes one"
    )
    return collapse_grey(items)


def _adapted_start(path: Path, info: Any, items: list, folder: Path) -> Path:
    """``path``, or a copy in ``folder`` adapted to the images' channels (1 -> C or C -> 1).

    Raises:
        ChannelMismatchError: the images' channels cannot be fitted to the checkpoint.
    """
    from napari_unet.cli._progress import PROGRESS
    from napari_unet.core.checkpoint.channels import adapt_channels, plan_channels

    if plan_channels([i.image for i in items], info.in_channels) == "same":
        return path
    channels = int(items[0].image.shape[0])
    folder.mkdir(parents=True, exist_ok=True)
    PROGRESS.info(
        "the start model takes %d channel(s) and the images have %d: its first layer is adapted "
        "(%s); %s itself is not changed",
        info.in_channels,
        channels,
        "the channel mean at first" if info.in_channels == 1 else "summed over channels",
        path.name,
    )
    return adapt_channels(path, channels, folder / f"start-{channels}-channels.pt")


def classes_needed(items: list, info: Any, task: str, targets: Any) -> int | None:
    """Classes a semantic checkpoint's new head needs when the annotated labels use more
    classes than it has; None when it fits (or is not semantic: its head cannot grow)."""
    from napari_unet.core.training.preflight import annotated_classes

    if task != "semantic" or info.task != "semantic":
        return None
    classes = annotated_classes(
        items,
        task,
        dict(targets.label_map) if targets.label_map else None,
        targets.ignore_value,
    )
    top = max(classes, default=0)
    return top + 1 if top >= info.out_channels else None


def data_fingerprint(
    args: argparse.Namespace,
    info: Any,
    model: Any,
    items: list,
    task: str,
    targets: Any,
    volume: Any = None,
) -> Any:
    """The :class:`~napari_unet.core.training.fingerprint.DatasetFingerprint` of the data, with
    the patch and batch size chosen from it (``--patch`` / ``--batch-size`` win). Volumes: the
    Y/X patch from the data, ``--patch-depth`` slices deep, the batch as given (default 4)."""
    import dataclasses

    from napari_unet.core.training.config import TrainConfig
    from napari_unet.core.training.fingerprint import fingerprint, net_geometry

    if info is not None:
        arch, config = info.arch, info.model_config
    else:
        arch, config = model.arch, model.config
    multiple, field = net_geometry(arch, config)
    defaults = TrainConfig()
    data = fingerprint(
        items,
        task=task,
        size_multiple=multiple,
        receptive_field=field,
        default_patch=tuple(defaults.patch_shape[-2:]),
        default_batch=defaults.batch_size,
        patch_shape=(args.patch, args.patch) if args.patch else None,
        batch_size=args.batch_size or (defaults.batch_size if volume else None),
        label_map=dict(targets.label_map) if targets.label_map else None,
        ignore_value=args.ignore_value,
    )
    if volume is None:
        return data
    return dataclasses.replace(data, patch_shape=(volume.patch_shape[0], *data.patch_shape))


def train_config(
    args: argparse.Namespace, info: Any, task: str, targets: Any, data: Any, training_dir: Path
) -> Any:
    """The :class:`~napari_unet.core.training.config.TrainConfig` of the run."""
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.training.config import TrainConfig

    return TrainConfig(
        task=task,
        steps=args.steps,
        minutes=args.minutes,
        batch_size=data.batch_size,
        patch_shape=data.patch_shape,
        optimizer=args.optimizer,
        lr=args.lr,
        val_fraction=args.val_fraction,
        val_every=args.val_every,
        seed=args.seed,
        freeze_encoder=args.freeze_encoder,
        targets=targets,
        normalization=info.normalization_config() if info else NormalizationConfig(),
        device=args.device,
        num_threads=args.threads,
        checkpoint_dir=str(training_dir),
    )
