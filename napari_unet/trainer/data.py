"""Training data of the fine-tune process, gathered from a session folder.

- :func:`resolve_start`: the start model from a version id, a built-in name or a checkpoint file.
- :func:`check_training_data`: "nothing reviewed", "one class only" and "the model's classes do
  not match the labels", each as a :class:`TrainingDataError` saying what to do.
- :func:`to_items`: session slices -> normalised
  :class:`~napari_unet.core.training.sampler.TrainingItem`.
- :class:`ValidationPlan`: held-back tiles = stable-hash tiles (``core.training.split``) + the
  user's pins (+ one forced tile when neither gives any); never trained on, also for corrections
  added while training (keep-learning).
- :func:`summarize`: images, slices, annotated pixels and objects, for the version's record.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet.core.errors import CheckpointError, TrainingDataError
from napari_unet.trainer.volume import volume_name

if TYPE_CHECKING:
    from napari_unet.core.training.config import TrainConfig

logger = logging.getLogger(__name__)

NOTHING_REVIEWED = (
    "Nothing is reviewed yet: mark at least one slice or region as reviewed (Correct ▸ Mark "
    "reviewed) or correct some labels before training."
)
#: Suffix of the validation entries that hold pinned (or forced) tiles.
PINNED_SUFFIX = "#pinned"


def slice_name(image_id: str, slice_index: int) -> str:
    """The stable name of a session slice (as ``TrainingSlice.name``)."""
    return f"{image_id}/{int(slice_index):05d}"


def resolve_start(session: Any, start_from: str) -> tuple[Path, str]:
    """``(checkpoint path, parent label)`` for a version id, built-in name or checkpoint file.

    Raises:
        CheckpointError: none of these (the message lists what can be used).
    """
    from napari_unet.core.checkpoint.format import builtin_checkpoints

    start_from = str(start_from)
    versions = {v.id: v for v in session.versions()}
    if start_from in versions:
        return session.version_path(start_from), start_from
    builtins = builtin_checkpoints()
    if start_from in builtins:
        return Path(builtins[start_from]), start_from
    path = Path(start_from).expanduser()
    if path.is_file():
        return path.absolute(), str(path.absolute())
    known = ", ".join([*builtins, *versions]) or "none"
    raise CheckpointError(
        f"cannot start from {start_from!r}: it is not a built-in model, a version of this "
        f"session or a checkpoint file ({known}); pick a model in the list or a .pt file."
    )


def _compatible(label_task: str | None, model_task: str) -> bool:
    if label_task is None or label_task == model_task:
        return True
    return {label_task, model_task} <= {"binary", "semantic"}


#: How a task is named in a sentence ("start from an instance segmentation model").
TASK_PHRASES = {
    "instances": "an instance segmentation",
    "semantic": "a semantic segmentation",
    "binary": "a binary (foreground) segmentation",
    "restoration": "a restoration",
}


def task_phrase(task: str | None) -> str:
    """``"an instance segmentation"`` for ``"instances"``: the article and the task's name."""
    return TASK_PHRASES.get(str(task), f"a {task}")


def check_training_data(slices: Sequence[Any], info: Any, start_label: str) -> None:
    """Refuse data the start model cannot learn from, saying what to do.

    Args:
        slices: ``session.TrainingSlice`` records (labels and annotated masks).
        info: the start model's ``CheckpointInfo``. start_label: how to name the model.

    Raises:
        TrainingDataError: nothing annotated, or labels of another task (the class checks are
            :func:`preflight_items`).
    """
    task = info.task
    if task == "restoration":
        raise TrainingDataError(
            f"{start_label} is a restoration model; corrected labels can only fine-tune a "
            "segmentation model (binary, semantic or instances) — pick one of those."
        )
    annotated = [s for s in slices if np.any(s.annotated_mask)]
    if not annotated:
        raise TrainingDataError(NOTHING_REVIEWED)
    for item in annotated:
        where = f"image {item.image_id} slice {item.slice_index}"
        if not _compatible(item.task, task):
            raise TrainingDataError(
                f"the labels of {where} are {item.task} labels but {start_label} is "
                f"{task_phrase(task)} model; start from {task_phrase(item.task)} model (or one "
                "of this session's versions)."
            )
        values = np.asarray(item.labels)[np.asarray(item.annotated_mask, bool)]
        top = int(values.max()) if values.size else 0
        if task == "binary" and item.task == "semantic" and top > 1:
            raise TrainingDataError(
                f"the labels of {where} have several classes (up to {top}) but "
                f"{start_label} is a binary model; start from a semantic model with "
                f"{top + 1} classes, or use a single foreground class."
            )


def preflight_items(items: Sequence[Any], info: Any) -> None:
    """The checks every entry point runs (``core.training.preflight``) on the session's items:
    too few annotated pixels, one class only, classes beyond the model's, one id over many
    objects for an instance model.

    Raises:
        TrainingDataError: the first problem, as one sentence.
    """
    from napari_unet.core.training.preflight import preflight

    preflight(
        items,
        task=info.task,
        n_classes=info.out_channels if info.task == "semantic" else None,
        where="the reviewed regions",
    )


def to_items(slices: Iterable[Any], normalization: Any) -> list[Any]:
    """Normalised training items (``(C, Y, X)`` float32 images) from session slices."""
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.training.items import TrainingItem

    return [
        TrainingItem(
            image=normalize(np.asarray(s.image), normalization),
            labels=np.asarray(s.labels),
            annotated_mask=np.asarray(s.annotated_mask, dtype=bool),
            name=s.name,
        )
        for s in slices
    ]


def pin_masks(pins: Iterable[dict], shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Bool masks of the pinned slices/rectangles, by item name (known items only): (Y, X) for a
    slice item, (Z, Y, X) for a 3-D model's volume item (``<image_id>/volume``), whose pins are
    those of its slices."""
    masks: dict[str, np.ndarray] = {}
    for pin in pins:
        name, where = slice_name(pin["image_id"], pin["slice_index"]), ()
        if name not in shapes:
            name, where = volume_name(pin["image_id"]), (int(pin["slice_index"]),)
            if name not in shapes or len(shapes[name]) != 3 or where[0] >= shapes[name][0]:
                continue
        mask = masks.setdefault(name, np.zeros(shapes[name], dtype=bool))
        rect = pin.get("rect")
        if rect is None:
            mask[where] = True
        else:
            y0, x0, y1, x1 = (max(0, int(v)) for v in rect)
            mask[(*where, slice(y0, y1), slice(x0, x1))] = True
    return masks


class ValidationPlan:
    """Which annotated pixels are held back, stable across rounds and corrections.

    Args:
        fraction, tile, seed: as ``TrainConfig.val_fraction``, ``val_tile`` and ``seed`` (the
            core splits corrections added while training with the same hash).
        pins: ``session.validation_pins()``.
    """

    def __init__(self, *, fraction: float, tile: int, seed: int, pins: Sequence[dict]) -> None:
        self.fraction, self.tile, self.seed = fraction, tile, seed
        self.pins = list(pins)
        #: held-back masks that the hash does not choose (pins, forced tile), by slice name
        self.fixed: dict[str, np.ndarray] = {}

    def split(self, items: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """``(train_items, val_items)`` of the initial pool; val masks never overlap train."""
        from napari_unet.core.training.split import split_validation

        shapes = {item.name: item.spatial_shape for item in items}
        self.fixed = {
            name: mask for name, mask in pin_masks(self.pins, shapes).items() if mask.any()
        }
        rest = [self._without_fixed(item) for item in items]
        train, held = split_validation(
            rest, self.fraction, tile=self.tile, seed=self.seed, at_least_one=False
        )
        if not held and not self.fixed and self.fraction > 0:
            train, forced = split_validation(
                rest, self.fraction, tile=self.tile, seed=self.seed, at_least_one=True
            )
            self.fixed = {item.name: item.mask for item in forced}
        by_name = {item.name: item for item in items}
        pinned = [
            dataclasses.replace(
                by_name[name],
                annotated_mask=by_name[name].mask & mask,
                name=name + PINNED_SUFFIX,
            )
            for name, mask in self.fixed.items()
        ]
        val = [*held, *(p for p in pinned if p.mask.any())]
        return list(train), val

    def prepare_new(self, item: Any) -> Any:
        """A corrected item for the running trainer, with its pinned/forced tiles removed (the
        core holds back its hash tiles itself)."""
        return self._without_fixed(item)

    def _without_fixed(self, item: Any) -> Any:
        from napari_unet.core.training.context import original_name

        fixed = self.fixed.get(original_name(item.name))  # a flat copy loses its original's
        if fixed is None:
            return item
        return dataclasses.replace(item, annotated_mask=item.mask & ~fixed)


def summarize(items: Sequence[Any], val_items: Sequence[Any], task: str) -> dict[str, int]:
    """Plain counts for a version's ``data`` record and :class:`PoolChanged`.

    ``objects``: distinct non-zero instance ids (instance task) or connected foreground regions
    touching the annotated pixels (binary/semantic).
    """
    from scipy import ndimage

    from napari_unet.core.training.context import originals

    items = originals(list(items))  # a 2.5-D flat copy is the same annotation: counted once
    objects = 0
    for item in items:
        mask = item.mask
        labels = np.asarray(item.labels)
        if task == "instances":
            objects += int(np.unique(labels[mask & (labels > 0)]).size)
        else:
            regions, _ = ndimage.label(labels > 0)
            objects += int(np.unique(regions[mask & (regions > 0)]).size)
    return {
        "n_images": len({item.name.split("/")[0] for item in items}),
        "n_slices": len(items),
        "annotated_pixels": int(sum(int(item.mask.sum()) for item in items)),
        "validation_pixels": int(sum(int(item.mask.sum()) for item in val_items)),
        "n_validation": len({item.name.removesuffix(PINNED_SUFFIX) for item in val_items}),
        "objects": objects,
    }


def start_metrics(
    start_path: Path, train: list[Any], val_items: list[Any], config: TrainConfig
) -> dict[str, float]:
    """Validation metrics of the start model on ``val_items`` (the tiles the run holds back),
    computed as the training loop computes them (same pools and batches)."""
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.device import get_device
    from napari_unet.core.training.losses import SegmentationLoss
    from napari_unet.core.training.state import build_pools
    from napari_unet.core.training.validation import evaluate

    model = load_checkpoint(start_path).model
    _, validation, _ = build_pools(model, train, val_items, config)
    device = get_device(config.device)
    model.to(device)
    return evaluate(
        model,
        validation.validation_batches(config.batch_size),
        task=config.task,
        loss_fn=SegmentationLoss(config.loss, config.task),
        device=device,
    )
