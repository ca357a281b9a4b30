"""Pieces of a training run that outlive one step: model source, targets, resume state, writing.

- :func:`resolve_model`: a model object, or a checkpoint to fine-tune (its description is kept:
  class names, normalisation, tiling).
- :func:`targets_function`, :func:`build_pools`, :func:`drain_new_items`: the patch pools
  (:mod:`napari_unet.core.training.pools`, importable from here).
- :func:`capture_state` / :func:`restore_state`: everything exact resume needs (optimiser,
  schedule, gradient scaler, step, elapsed time, torch/augmentation/sampler random states).
- :class:`CheckpointWriter`: best and latest checkpoints, atomically, never with bad weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from napari_unet.core.checkpoint.format import CheckpointInfo, load_checkpoint, save_checkpoint
from napari_unet.core.errors import (
    CheckpointError,
    TrainingDivergedError,
)
from napari_unet.core.models import SegmentationNet
from napari_unet.core.training.pools import (  # noqa: F401 (their old home)
    build_pools,
    drain_new_items,
    targets_function,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ModelSource:
    """The model to train and what its checkpoints should say about it.

    Attributes:
        model: the network (trained in place).
        info: the description of the checkpoint it came from, or None for a fresh model.
        parent: provenance parent (checkpoint path or name), or None.
    """

    model: SegmentationNet
    info: CheckpointInfo | None = None
    parent: str | None = None


def resolve_model(model_or_checkpoint: Any, parent: str | None = None) -> ModelSource:
    """A :class:`ModelSource` from a model object or a checkpoint path (fine-tuning)."""
    if isinstance(model_or_checkpoint, torch.nn.Module):
        return ModelSource(model_or_checkpoint, None, parent)
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        loaded = load_checkpoint(model_or_checkpoint)
        return ModelSource(loaded.model, loaded.info, parent or str(model_or_checkpoint))
    raise TypeError(
        f"expected a SegmentationNet or a checkpoint path, got {type(model_or_checkpoint)}"
    )


def capture_state(
    *,
    step: int,
    elapsed_s: float,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    scaler: Any,
    sampler: Any,
    generator: torch.Generator,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Training state for exact resume (tensors and plain data only)."""
    return {
        "step": step,
        "elapsed_s": elapsed_s,
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "sampler": sampler.state_dict(),
        "augment_rng": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        **extra,
    }


def restore_state(
    state: dict[str, Any],
    *,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    scaler: Any,
    sampler: Any,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Put the objects back where :func:`capture_state` found them; returns ``state``."""
    try:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        generator.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"the training state cannot be restored ({err}); resume with the same training "
            "settings (optimizer, frozen encoder) as the run that wrote it, or start a new run."
        ) from None
    return state


def load_resume_state(path: str | os.PathLike, model: torch.nn.Module) -> dict[str, Any]:
    """Copy the weights of checkpoint ``path`` into ``model``; returns its training state."""
    loaded = load_checkpoint(path)
    if not isinstance(loaded.training_state, dict):
        raise CheckpointError(
            f"{path} holds no training state; resume from the 'latest' checkpoint of a run, or "
            "fine-tune from this file instead."
        )
    model.load_state_dict(loaded.model.state_dict())
    return loaded.training_state


class CheckpointWriter:
    """Writes ``best.pt`` and ``latest.pt`` into ``folder``, atomically.

    Weights are checked first: non-finite weights raise :class:`TrainingDivergedError` and the
    files on disk stay as they were.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        source: ModelSource,
        *,
        task: str,
        class_names: tuple[str, ...],
        normalization: Any,
        input_shape: tuple[int, int],
    ) -> None:
        self.folder = Path(folder)
        self.best_path = self.folder / "best.pt"
        self.latest_path = self.folder / "latest.pt"
        self.source = source
        info = source.info
        model = source.model
        self.metadata = {
            "task": task,
            "class_names": class_names or (info.class_names if info else None),
            "normalization": normalization
            if normalization is not None
            else (info.normalization if info else None),
            "tile_shape": (info.tile_shape if info and info.tile_shape else None)
            or default_tile_shape(model, input_shape),
            # 3-D: None lets prediction cap the overlap at a quarter of each tile side
            "overlap": info.overlap
            if info and info.overlap is not None
            else (32 if len(input_shape) == 2 else None),
        }

    def write(
        self, kind: str, provenance: dict[str, Any], training_state: dict | None = None
    ) -> Path:
        """Save the model as ``kind`` (``best`` or ``latest``) and return the path."""
        model = self.source.model
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise TrainingDivergedError(
                    f"the weights became NaN or infinite ({name}; training diverged); lower the "
                    "learning rate or keep gradient clipping on. The checkpoints on disk were not "
                    "overwritten."
                )
        path = self.best_path if kind == "best" else self.latest_path
        parent = self.source.parent
        provenance = {"parent": parent, **provenance}
        inherited = self._inherited_postprocess()
        if inherited:  # e.g. EM neurite regions (foreground_class) or a tuned nuclei threshold
            provenance.setdefault("postprocess", inherited)
        save_checkpoint(
            path, model, provenance=provenance, training_state=training_state, **self.metadata
        )
        return path

    def _inherited_postprocess(self) -> dict[str, Any] | None:
        """The parent checkpoint's post-processing defaults, when the task is unchanged.

        A fine-tuned model keeps what its parent's output means (a built-in EM model's instances
        are the regions between membranes, not the membranes) and its tuned thresholds as a
        starting point; the user can still override them in the Segment dock or on the CLI.
        """
        info = self.source.info
        if info is None or info.task != self.metadata["task"]:
            return None
        postprocess = info.provenance.get("postprocess")
        return dict(postprocess) if isinstance(postprocess, dict) and postprocess else None


def default_tile_shape(model: SegmentationNet, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The prediction tile stored with a new model: at least 512 pixels a side (2-D), at least
    32x128x128 (3-D, bounded CPU memory), never smaller than the training input."""
    floor = (512,) * len(input_shape) if len(input_shape) == 2 else (32, 128, 128)
    return model.valid_input_shape(tuple(max(s, f) for s, f in zip(input_shape, floor)))


def finite_or_raise(loss: float, step: int, lr: float, latest: Path | None) -> None:
    """Raise :class:`TrainingDivergedError` when ``loss`` is NaN or infinite."""
    if math.isfinite(loss):
        return
    kept = f" The last good checkpoint ({latest}) is untouched." if latest else ""
    raise TrainingDivergedError(
        f"the loss became {loss} at step {step + 1} (training diverged); lower the learning rate "
        f"(it was {lr:.3g}; try {lr / 10:.3g}) or keep gradient clipping on.{kept}"
    )


def stop_function(stop: Any) -> Callable[[], bool]:
    """``stop`` (None, a ``threading.Event`` or a callable) as a callable returning bool."""
    if stop is None:
        return lambda: False
    if hasattr(stop, "is_set"):
        return stop.is_set
    return stop
