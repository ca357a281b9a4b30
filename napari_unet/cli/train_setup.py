"""Setting up a ``train`` run: the data read and checked, the start model, the data fingerprint
(patch and batch size chosen from the data) and the training settings."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from napari_unet.cli import train_context, train_volume
from napari_unet.cli.train_steps import _checked_task, _checkpoint_path, _first_missing

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
) -> tuple[Any, list]:
    """``(start, items)``: the checkpoint to fine-tune (its path, as a str), fitted to the data
    (:func:`~napari_unet.core.checkpoint.start_fit.fit_start`: a wider head for more classes,
    the channels adapted; copies go to ``OUT.training/``), or a new model built for the data;
    and the items as that model takes them (greyscale RGB: one channel).

    Raises:
        ChannelMismatchError: the checkpoint takes another number of channels than the images.
    """
    from napari_unet.cli._progress import PROGRESS
    from napari_unet.cli.train_data import _warn_if_instances
    from napari_unet.core.checkpoint.start_fit import fit_start

    aux = _aux_settings(args, info, task)
    width = _width_settings(args, info)  # --base-channels: a new model's width
    if info is not None:
        fitted = fit_start(
            _checkpoint_path(args.model),
            items,
            training_folder(args),
            task=task,
            label_map=dict(targets.label_map) if targets.label_map else None,
            ignore_value=targets.ignore_value,
        )
        if fitted.note:
            PROGRESS.info("%s", fitted.note)
        return str(fitted.path), fitted.items
    model = new_model(
        args, items, task, targets, **(volume.model_settings if volume else {}), **aux, **width
    )
    if args.task is None and task == "semantic":
        _warn_if_instances(items, targets)
    model.context_slices = train_context.context_radius(args, info)  # 2.5-D: Z-flip augmentation
    return model, items


def new_model(
    args: argparse.Namespace, items: list, task: str, targets: Any, **settings: Any
) -> Any:
    """A new ``--model`` built for the data, seeded by ``--seed`` (``settings``: ``build_model``
    keywords such as ``base_channels``)."""
    from napari_unet.core.simulation.parts import new_model_for

    return new_model_for(
        args.model,
        items,
        task,
        label_map=dict(targets.label_map) if targets.label_map else None,
        ignore_value=args.ignore_value,
        seed=args.seed,
        **settings,
    )


def _width_settings(args: argparse.Namespace, info: Any) -> dict[str, int]:
    """``{"base_channels": N}`` for ``--base-channels N`` of a new model, else ``{}``; raises
    UserInputError with a checkpoint or built-in start model."""
    from napari_unet.core.errors import UserInputError

    width = getattr(args, "base_channels", None)
    if width is None:
        return {}
    if info is not None:
        raise UserInputError(
            f"--base-channels sets the width of a new model, but {args.model} is a trained "
            "model with its own width: leave --base-channels out, or start from --model unet."
        )
    return {"base_channels": int(width)}


def training_folder(args: argparse.Namespace) -> Path:
    """``OUT.training/``: ``best.pt``, ``latest.pt`` and the fitted start model of the run."""
    out = Path(args.out)
    return out.parent / f"{out.stem}.training"


def _aux_settings(args: argparse.Namespace, info: Any, task: str) -> dict[str, str]:
    """``{"aux": "distance"}`` for ``--aux distance`` (a new 2-D unet instance model), else {}.

    Raises:
        UserInputError: ``--aux distance`` with another task, architecture or a checkpoint.
    """
    from napari_unet.core.errors import UserInputError

    if getattr(args, "aux", "none") == "none":
        return {}
    if info is not None and (info.model_config or {}).get("aux") == args.aux:
        return {}  # fine-tuning a model that has the head already
    if task != "instances" or info is not None or (args.model or "unet") != "unet":
        raise UserInputError(
            f"--aux {args.aux} adds a head to a new instance model: use it with --task "
            "instances --model unet (a checkpoint without the head cannot grow one)."
        )
    return {"aux": args.aux}


@contextlib.contextmanager
def removed_on_failure(folder: Path) -> Iterator[None]:
    """Remove ``folder`` when the block fails and the folder did not exist before it (the
    fitted start model written there included). Kept on purpose: an earlier run's folder
    (its files are that run's), and the folder of an interrupted (Ctrl-C) or diverged run,
    whose ``latest.pt`` resumes it."""
    import shutil

    from napari_unet.core.errors import TrainingDivergedError

    created = _first_missing(folder)
    try:
        yield
    except (KeyboardInterrupt, TrainingDivergedError):
        raise
    except BaseException:
        if created is not None and created.exists():
            shutil.rmtree(created, ignore_errors=True)
            logger.debug("removed %s, created by this failed run", created)
        raise


ZOOM_HELP = (
    "zoom range of the augmentation, LOW,HIGH (default: the start model's, else 0.9,1.1); e.g. "
    "0.67,1.5 when your other images show objects at other sizes than the corrected ones"
)


def zoom_argument(text: str) -> tuple[float, float]:
    """``--zoom LOW,HIGH`` -> ``(low, high)`` with ``0 < low <= high``."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        low = high = -1.0
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 < LOW <= HIGH, got {text!r}")
    return low, high


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
    the patch, batch size and zoom range chosen from it (``--patch`` / ``--batch-size`` /
    ``--zoom`` win). Volumes: the Y/X patch from the data, ``--patch-depth`` slices deep, the
    batch as given (default 4)."""
    import dataclasses

    from napari_unet.core.training import downscale as scale
    from napari_unet.core.training.config import TrainConfig
    from napari_unet.core.training.fingerprint import fingerprint, net_geometry

    if info is not None:
        arch, config = info.arch, info.model_config
    else:
        arch, config = model.arch, model.config
    multiple, field = net_geometry(arch, config)
    scale.check_factor(getattr(args, "downscale", None), arch, three_d=volume is not None)
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
        zoom=getattr(args, "zoom", None),
        start_zoom=info.trained_zoom if info is not None else None,
        downscale=getattr(args, "downscale", None) if volume is None else 1,
        can_downscale=arch in scale.ARCHS,
        start_downscale=scale.downscale_of(config),
    )
    if volume is None:
        return data
    return dataclasses.replace(data, patch_shape=(volume.patch_shape[0], *data.patch_shape))


def train_config(
    args: argparse.Namespace, info: Any, task: str, targets: Any, data: Any, training_dir: Path
) -> Any:
    """The :class:`~napari_unet.core.training.config.TrainConfig` of the run."""
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.training.balance import with_start_balance
    from napari_unet.core.training.config import LossConfig, TrainConfig
    from napari_unet.core.training.gaps import with_gap_rule
    from napari_unet.core.training.loss_augment_config import AugmentConfig

    weight = getattr(args, "skeleton_recall", LossConfig().skeleton_recall)
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
        keep=getattr(args, "keep", "final"),
        seed=args.seed,
        freeze_encoder=args.freeze_encoder,
        loss=LossConfig(skeleton_recall=weight),
        augment=AugmentConfig(affine_scale=data.zoom),
        targets=with_start_balance(with_gap_rule(targets, data.gap_share), info),
        normalization=info.normalization_config() if info else NormalizationConfig(),
        device=args.device,
        num_threads=args.threads,
        checkpoint_dir=str(training_dir),
    )
