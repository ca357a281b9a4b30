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
import glob
import logging
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.cli import train_volume

logger = logging.getLogger(__name__)

TASK_CHOICES = ("semantic", "binary", "instances", "restoration")

#: ``train --help`` (plain text: argparse prints it as it is).
DESCRIPTION = (
    "Train or fine-tune a model on a folder of images and a folder of labels paired by file "
    "stem (TIFF or PNG, any bit depth); --masks marks the annotated pixels (non-zero = "
    "annotated). --model is an architecture name (a new model) or a checkpoint to fine-tune. "
    "Without --task, labels that look like instance masks (many ids per image, each one "
    "connected object) train an instance model, other labels a semantic one. Progress goes to "
    "stderr: a bar on a terminal, otherwise a line every 10 s (-q: none). best.pt and "
    "latest.pt (for --resume) are kept in OUT.training/, the best model is copied to --out and "
    "the history (loss, learning rate, validation metrics per step) is written to "
    "OUT.history.csv beside it as training goes."
)

#: A labelled object counts as one blob when this share of ids is one connected component.
BLOB_SHARE = 0.8


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
    add(
        "--log-every",
        type=_positive_int,
        help="steps between progress lines and history rows (default: a line every 10 s when "
        "stderr is not a terminal, a history row every 10 steps)",
    )
    add("--resume", type=Path, help="latest.pt of an interrupted run to continue")
    add("--out", required=True, type=Path, help="where to write the best checkpoint (.pt)")
    train_volume.add_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _to_cyx(image: np.ndarray, axes: str | None, forced: str | None) -> np.ndarray:
    """(S, C, Y, X) view of an image read from disk."""
    from napari_unet.core.io.axes import check_axes, guess_axes, to_stack

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
    from napari_unet.core.errors import TrainingDataError
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.io.images import list_images, read_image
    from napari_unet.core.training.items import TrainingItem

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
    from napari_unet.core.training.sampler import label_values, looks_like_instances

    if looks_like_instances(label_values(items, ignore_value=targets.ignore_value)):
        logger.warning(
            "the labels hold many object ids per image, like instance masks, and are trained as "
            "that many classes; pass --task instances to segment objects."
        )


def instance_evidence(items: list, ignore_value: int | None = None) -> tuple[int, str] | None:
    """``(objects, image name)`` when the labels look like instance masks, else ``None``.

    Instance masks hold many ids per image (the median image at least
    :data:`~napari_unet.core.training.sampler.INSTANCE_IDS_PER_IMAGE`), each id one connected object
    (at least :data:`BLOB_SHARE` of them, 8-connected), and the ids carry no meaning shared between
    images: images whose id sets are all identical are classes (an atlas), not instances. The
    example returned is the image with the median object count.
    """
    from napari_unet.core.training.sampler import label_values, looks_like_instances

    per_item = label_values(items, ignore_value=ignore_value)
    if not looks_like_instances(per_item):
        return None
    if len(per_item) > 1 and all(np.array_equal(v, per_item[0]) for v in per_item[1:]):
        return None
    blobs = total = 0
    for item in items[:32]:  # enough images to tell; huge folders are not scanned whole
        one, count = _blob_count(item, ignore_value)
        blobs, total = blobs + one, total + count
    if total == 0 or blobs < BLOB_SHARE * total:
        return None
    counts = [int(np.count_nonzero(v)) for v in per_item]
    median = int(np.argsort(counts, kind="stable")[len(counts) // 2])
    return counts[median], items[median].name


def _blob_count(item: Any, ignore_value: int | None) -> tuple[int, int]:
    """(ids that form one connected object, ids) among the annotated labels of ``item``."""
    from scipy import ndimage

    labels = np.asarray(item.labels)
    if labels.ndim not in (2, 3) or not np.issubdtype(labels.dtype, np.integer):
        return 0, 0
    keep = item.mask & (labels > 0)
    if ignore_value is not None:
        keep &= labels != ignore_value
    ids = np.where(keep, labels, 0).astype(np.int64)
    structure = np.ones((3,) * labels.ndim, bool)
    one = total = 0
    for value, box in enumerate(ndimage.find_objects(ids), start=1):
        if box is None:
            continue
        total += 1
        one += ndimage.label(ids[box] == value, structure=structure)[1] == 1
    return one, total


def _default_task(args: argparse.Namespace, info: Any, items: list) -> str | None:
    """``instances`` for a new model on instance-like labels without ``--task`` (said in a line).

    The line names the image with the median object count by its file name.

    Returns None when the task stays as chosen (given, from the checkpoint, a label map given,
    or labels that look like classes).
    """
    if args.task is not None or info is not None or args.label_map:
        return None
    evidence = instance_evidence(items, args.ignore_value)
    if evidence is None:
        return None
    objects, name = evidence
    stem, _, rest = name.partition("[")  # "stem" or "stem[slice]" (see load_pairs)
    files = sorted(Path(args.images).glob(f"{glob.escape(stem)}.*"))
    name = files[0].name + (f"[{rest}" if rest else "") if files else name
    logger.warning(
        "the labels look like instance masks (%d objects in %s): training an instance model; "
        "pass --task semantic if the values are classes.",
        objects,
        name,
    )
    return "instances"


def _start_score(checkpoint: Path, items: list, config: Any) -> float | None:
    """Validation score of the checkpoint being fine-tuned, on the tiles the run validates on.

    The tiles are the ones :func:`~napari_unet.core.training.loop.iter_train` holds back (the same
    seeded split); None without validation tiles.
    """
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.device import get_device
    from napari_unet.core.training.losses import SegmentationLoss
    from napari_unet.core.training.state import build_pools
    from napari_unet.core.training.validation import evaluate

    if not config.val_fraction:
        return None
    model = load_checkpoint(checkpoint).model
    _, validation, _ = build_pools(model, items, None, config)
    batches = validation.validation_batches(config.batch_size)
    if not batches:
        return None
    device = get_device(config.device)
    model.to(device)
    loss_fn = SegmentationLoss(config.loss, config.task)
    metrics = evaluate(model, batches, task=config.task, loss_fn=loss_fn, device=device)
    score = float(metrics["score"])
    logger.debug("start model metrics: %s", _format(metrics))
    return score if np.isfinite(score) else None


def _checkpoint_path(model: str) -> Path:
    """``--model`` as a checkpoint file (a path or a built-in name).

    Raises:
        CheckpointError: neither an architecture, nor a file, nor a built-in model.
    """
    from napari_unet.core.checkpoint.format import builtin_checkpoints, resolve_checkpoint
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
    from napari_unet.cli._progress import PROGRESS
    from napari_unet.cli.train_progress import History, TrainMonitor
    from napari_unet.core.atomic import atomic_write_bytes
    from napari_unet.core.checkpoint.format import read_checkpoint_info
    from napari_unet.core.device import get_device
    from napari_unet.core.errors import ChannelMismatchError, OutputError, describe_os_error
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.models import list_architectures
    from napari_unet.core.simulation.parts import new_model_for
    from napari_unet.core.training.loop import TrainConfig, iter_train
    from napari_unet.core.training.targets import TargetConfig, parse_label_map

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
    volume = train_volume.prepare(args, info, task, normalization)  # None: a 2-D model
    items = (
        volume.items
        if volume
        else load_pairs(
            args.images,
            args.labels,
            args.masks,
            task=task,
            normalization=normalization,
            axes=args.axes,
        )
    )
    _warn_small_images(items, args.patch)
    chosen = _default_task(args, info, items)
    if chosen is not None:
        task, targets = chosen, targets.replace(task=chosen)
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
            **(volume.model_settings if volume else {}),
        )
        if args.task is None and task == "semantic":
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
        patch_shape=volume.patch_shape if volume else (args.patch, args.patch),
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

    start_score = None
    if info is not None:
        start_score = _start_score(Path(model_or_checkpoint), items, config)
        if start_score is not None:
            PROGRESS.info("start model: val %.4f", start_score)
    history = History(out.parent / f"{out.stem}.history.csv", resume=args.resume is not None)
    monitor = TrainMonitor(config, history, log_every=args.log_every, start_score=start_score)
    events = iter_train(model_or_checkpoint, items, config, resume_from=args.resume)
    result = _train_and_monitor(events, monitor, training_dir)
    try:
        atomic_write_bytes(out, Path(result.best_path).read_bytes())
    except OSError as err:  # the trained model stays where it is: say where
        message = describe_os_error(err, what="the checkpoint").rstrip(".")
        raise OutputError(f"{message}; the trained model is kept in {result.best_path}.") from None
    print(f"trained {result.steps} steps ({result.reason}); best model: {out}")
    if result.best_metrics:
        print(f"validation: {_format(result.best_metrics)}")
        best = result.best_metrics.get("score")
        if start_score is not None and isinstance(best, float) and best <= start_score:
            print(
                f"the start model scored {start_score:.4f} on the same validation tiles, at "
                f"least as well as this run's best ({best:.4f}); keep using it, or train longer "
                "or with more annotation."
            )
    else:
        print("validation: none (no held-back tiles; use --val-fraction with more annotation)")
    if result.operating_point:
        from napari_unet.core.training.operating_point import describe_operating_point

        print(describe_operating_point(result.operating_point))
    print(f"history: {history.path}")
    return 0


def _train_and_monitor(events: Any, monitor: Any, training_dir: Path) -> Any:
    """:func:`_train` with ``monitor`` shown; a failed run leaves no history it created.

    An interrupted (Ctrl-C) or diverged run keeps its history, like its ``latest.pt``.
    """
    from napari_unet.cli._progress import bar_safe_logging
    from napari_unet.core.errors import TrainingDivergedError

    history = monitor.history
    created = history is not None and not history.path.exists()
    try:
        with bar_safe_logging():
            result = _train(events, monitor, training_dir)
    except (KeyboardInterrupt, TrainingDivergedError):
        monitor.close()
        raise
    except BaseException:
        monitor.close(save=False)
        if created:
            history.path.unlink(missing_ok=True)
        raise
    monitor.close()
    return result


def _format(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
