"""The steps of ``train`` around the loop: the start model, its score, the run and its clean-up."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _start_score(checkpoint: Path, items: list, config: Any) -> float | None:
    """Validation score of the checkpoint being fine-tuned, on the tiles the run validates on.

    The tiles are the ones :func:`~napari_unet.core.training.loop.iter_train` holds back (the same
    seeded split); None without validation tiles.
    """
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.training.state import build_pools
    from napari_unet.core.training.validation import pool_metrics

    if not config.val_fraction:
        return None
    model = load_checkpoint(checkpoint).model
    _, validation, _ = build_pools(model, items, None, config)
    metrics = pool_metrics(model, validation, config)
    if metrics is None:
        return None
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


#: ``train --task T`` without ``--model`` fine-tunes this built-in model (issue 17: on a new
#: modality, 3 images, 2 CPU-minutes, it beat training from scratch; docs/learning_ablation.md).
DEFAULT_START = {"instances": "fluo-nuclei"}


def default_start(args: argparse.Namespace) -> str:
    """``--model`` as given; left out: the built-in model of ``DEFAULT_START[task]`` (said in
    one line; 2-D runs without --context-slices only), else ``unet`` (a new model).

    The task is ``--task``, else told from the labels first (:func:`_detected_task`, which sets
    ``args.task``), so leaving ``--task`` out on instance masks starts where ``--task
    instances`` does.
    """
    from napari_unet.cli._progress import PROGRESS
    from napari_unet.core.checkpoint.format import builtin_checkpoints

    if args.model:
        return str(args.model)
    volume = getattr(args, "voxel_size", None) or getattr(args, "context_slices", None)
    said = None if volume or args.task or args.label_map else _detected_task(args)
    name = DEFAULT_START.get(args.task or "")
    if name is None or volume or name not in builtin_checkpoints():
        if said:
            logger.warning(
                "%s: training an instance model; pass --task semantic if the values are classes.",
                said,
            )
        return "unet"
    if said:
        logger.warning(
            "%s: fine-tuning the built-in %s, as --task instances does; pass --task semantic if "
            "the values are classes, or --model unet for a new model.",
            said,
            name,
        )
        return name
    PROGRESS.info(
        "no --model: fine-tuning the built-in %s (for few images of a new modality it beat a "
        "new model); --model unet trains a new model from scratch",
        name,
    )
    return name


def _detected_task(args: argparse.Namespace) -> str | None:
    """Labels that look like instance masks (no ``--task``): ``args.task`` becomes
    ``instances`` and the evidence line is returned (said by the caller); else None."""
    from napari_unet.cli.train_data import instance_line, label_items

    said = instance_line(args, label_items(args))
    if said is not None:
        args.task = "instances"
    return said


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


def write_model(out: Path, result: Any, provenance: dict[str, Any]) -> None:
    """Copy the best model to ``--out`` with ``provenance`` added (the data fingerprint).

    Raises:
        OutputError: ``--out`` cannot be written (the message says where the model is kept).
    """
    from napari_unet.core.checkpoint.stamp import copy_with_provenance
    from napari_unet.core.errors import OutputError, describe_os_error

    try:
        copy_with_provenance(result.best_path, out, provenance)
    except OSError as err:  # the trained model stays where it is: say where
        message = describe_os_error(err, what="the checkpoint").rstrip(".")
        raise OutputError(f"{message}; the trained model is kept in {result.best_path}.") from None


def report(out: Path, result: Any, start_score: float | None) -> None:
    """What the run did, on stdout: steps, validation, the start model's score, the operating
    point."""
    final = getattr(result, "kept", "best") == "final"
    kept = "final weights" if final else "validation-best weights"
    print(f"trained {result.steps} steps ({result.reason}); model ({kept}): {out}")
    if result.best_metrics:
        print(f"validation: {_format(result.best_metrics)}")
        best = result.best_metrics.get("score")
        if start_score is not None and isinstance(best, float) and best <= start_score:
            which = "final weights" if final else "best"
            print(
                f"the start model scored {start_score:.4f} on the same validation tiles, at "
                f"least as well as this run's {which} ({best:.4f}); keep using it, or train "
                "longer or with more annotation."
            )
    else:
        print("validation: none (no held-back tiles; use --val-fraction with more annotation)")
    if result.operating_point:
        from napari_unet.core.training.operating_point import describe_operating_point

        print(describe_operating_point(result.operating_point))
