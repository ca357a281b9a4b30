"""The fine-tuning process (spawned; no Qt, no napari): its request and events, the data it
reads from a session folder, and the loop that publishes model versions into it.
"""

from __future__ import annotations

from napari_unet.trainer.data import (
    NOTHING_REVIEWED,
    PINNED_SUFFIX,
    TASK_PHRASES,
    ValidationPlan,
    check_training_data,
    pin_masks,
    resolve_start,
    slice_name,
    summarize,
    task_phrase,
    to_items,
)
from napari_unet.trainer.events import (
    CORRECTIONS,
    STOP,
    FinetuneRequest,
    PoolChanged,
    TrainerFailed,
    TrainerFinished,
    VersionPublished,
    default_num_threads,
)
from napari_unet.trainer.process import CRASH_MESSAGE, run_trainer

__all__ = [
    "CORRECTIONS",
    "CRASH_MESSAGE",
    "NOTHING_REVIEWED",
    "PINNED_SUFFIX",
    "STOP",
    "TASK_PHRASES",
    "FinetuneRequest",
    "PoolChanged",
    "TrainerFailed",
    "TrainerFinished",
    "ValidationPlan",
    "VersionPublished",
    "check_training_data",
    "default_num_threads",
    "pin_masks",
    "resolve_start",
    "run_trainer",
    "slice_name",
    "summarize",
    "task_phrase",
    "to_items",
]
