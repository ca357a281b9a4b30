"""Which model the Fine-tune dock starts from, at which learning rate, and the line that says why.

Issue 17 measured it (docs/learning_ablation.md, "Best start for a new modality"): fine-tuning the
built-in ``fluo-nuclei`` on stained bright-field RGB (channels adapted) at the recipe's rate 1e-3
beat a new model (AP@0.5 0.437 vs 0.355), while at 1e-4 the win was lost. So a session with no
model of its own starts from the built-in whose task matches its labels, and a built-in (trained
on other images) or a start whose channels are adapted fine-tunes at 1e-3; the session's own
versions, which already know these images, keep the gentler 1e-4.

Qt-free: the panel passes what it knows (the session's images, the start key, the start model's
channels once read) and shows :attr:`StartChoice.line`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from napari_unet.core.config import LR_FINETUNE, LR_SCRATCH

__all__ = ["BUILTIN_FOR_TASK", "StartChoice", "builtin_for", "labels_task", "start_choice"]

#: The built-in model for labels of a task (its checkpoint has that task: a test checks it).
BUILTIN_FOR_TASK = {"instances": "fluo-nuclei", "semantic": "em-membranes"}


@dataclass(frozen=True)
class StartChoice:
    """The learning rate for a start model and the one line the dock shows."""

    lr: float
    line: str


def labels_task(images: Iterable[Any]) -> str | None:
    """The one task of the session's images (``ImageEntry.task``), or None (none or mixed)."""
    tasks = {image.task for image in images if image.task}
    return tasks.pop() if len(tasks) == 1 else None


def image_channels(images: Iterable[Any]) -> int | None:
    """The channel count of the session's images when they all agree, else None."""
    counts = {int(image.layout.n_channels) for image in images}
    return counts.pop() if len(counts) == 1 else None


def builtin_for(task: str | None, builtins: Sequence[str]) -> str:
    """``builtin:<name>`` of the built-in model for labels of ``task``, or "" (none matches)."""
    name = BUILTIN_FOR_TASK.get(task or "")
    return f"builtin:{name}" if name in builtins else ""


def start_choice(
    key: str,
    label: str,
    *,
    task: str | None = None,
    suggested: bool = False,
    model_channels: int | None = None,
    channels: int | None = None,
    new: bool = False,
) -> StartChoice:
    """The rate and the line for the start ``key`` (``builtin:…``, ``version:…``, ``file:…``).

    Args:
        key: the start key. label: how the dock names it.
        task: the labels' task (names why a built-in was pre-selected).
        suggested: the dock pre-selected this built-in (the user has no model of their own).
        model_channels: the start model's input channels, once read (None: not yet).
        channels: the session images' channel count (None: unknown or mixed).
        new: an untrained model made in the dock ("New model"): trained from scratch.
    """
    if new:
        line = f"Starts from {label}: a new model, trained from scratch; learning rate "
        return StartChoice(LR_SCRATCH, line + f"{LR_SCRATCH:g}.")
    adapted = bool(model_channels and channels and model_channels != channels)
    if adapted:
        why = (
            f"it takes {_count(model_channels)} and the images have {_count(channels)}, so its "
            "first layer is adapted"
        )
    elif key.startswith("builtin:"):
        why = "a built-in model, trained on other images than yours"
    else:
        why = ""
    if suggested and task:
        reason = f"your labels are {task} and you have no model of your own yet"
        why = f"{reason}; {why}" if adapted else reason
    lr = LR_SCRATCH if adapted or key.startswith("builtin:") else LR_FINETUNE
    rate = (
        f"learning rate {lr:g}, the recipe's rate for a new modality"
        if lr == LR_SCRATCH
        else f"learning rate {lr:g}, gentle: it already learnt from this session"
        if key.startswith("version:")
        else f"learning rate {lr:g}"
    )
    return StartChoice(lr, f"Starts from {label}" + (f": {why}" if why else "") + f"; {rate}.")


def _count(n: int | None) -> str:
    return f"{n} channel{'' if n == 1 else 's'}"
