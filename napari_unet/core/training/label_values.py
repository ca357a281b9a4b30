"""How many classes the labels ask for, and whether they look like instance masks.

Moved out of :mod:`napari_unet.core.training.sampler` (which still re-exports every name): the
label values of the annotated pixels decide a new semantic model's class count
(:func:`semantic_class_count`) and whether labels look like instance masks
(:func:`looks_like_instances`). Works on 2-D images and on volumes alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_unet.core.errors import TrainingDataError
from napari_unet.core.training.items import TrainingItem, check_item

__all__ = [
    "INSTANCE_IDS_PER_IMAGE",
    "MAX_CLASSES",
    "label_values",
    "looks_like_instances",
    "semantic_class_count",
]

#: The most classes a semantic model built from label values gets (label values 0 .. 255).
MAX_CLASSES = 256
#: Distinct non-zero ids per image from which labels look like instance masks, not classes.
INSTANCE_IDS_PER_IMAGE = 10


def _annotated_values(item: TrainingItem, ignore_value: int | None) -> np.ndarray:
    """Distinct label values of the annotated pixels of ``item`` (the ignore value dropped)."""
    labels = np.asarray(item.labels)
    values = labels[item.mask] if labels.shape == item.spatial_shape else labels.ravel()
    values = np.unique(values)
    if ignore_value is not None:
        values = values[values != ignore_value]
    return values


def label_values(
    items: Sequence[TrainingItem], *, ignore_value: int | None = None
) -> list[np.ndarray]:
    """Per item, the sorted distinct raw label values of its annotated pixels."""
    return [_annotated_values(item, ignore_value) for item in items]


def looks_like_instances(per_item: Sequence[np.ndarray]) -> bool:
    """True when the images hold many distinct non-zero ids each, as instance masks do."""
    counts = [int(np.count_nonzero(values)) for values in per_item]
    return bool(counts) and float(np.median(counts)) >= INSTANCE_IDS_PER_IMAGE


def _listing(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


def semantic_class_count(
    items: Sequence[TrainingItem],
    *,
    ignore_value: int | None = None,
    label_map: dict[int, int] | None = None,
    limit: int = MAX_CLASSES,
) -> int:
    """Classes of a new semantic model for these labels: the largest (mapped) value + 1.

    Args:
        items: the training items; only annotated pixels count.
        ignore_value: a raw value that marks pixels to skip.
        label_map: raw value -> class id, applied before counting.
        limit: the most classes allowed.

    Raises:
        TrainingDataError: an item cannot be trained on (:func:`check_item`), or the count would
            exceed ``limit`` (a value such as 70000 would build a 70,001-class network); the
            message lists the values found and what to do.
    """
    from napari_unet.core.training.targets import apply_label_map

    for item in items:
        check_item(item, "semantic")
    per_item = label_values(items, ignore_value=ignore_value)
    raw = np.unique(np.concatenate([*per_item, np.zeros(1, dtype=np.int64)]).astype(np.int64))
    mapped = apply_label_map(raw, label_map) if label_map else raw
    top = max(int(mapped.max(initial=0)), 1)
    if top < limit:
        return top + 1
    values = np.unique(np.concatenate(per_item)) if per_item else raw
    head = (
        f"the labels hold {len(values)} distinct values up to {int(values.max())} "
        f"({_listing(values)}), which would make a {top + 1:,}-class network (at most {limit})"
    )
    if looks_like_instances(per_item):
        raise TrainingDataError(
            f"{head}; they look like instance masks (one id per object): train them with "
            "--task instances (or --task binary for foreground/background)."
        )
    nonzero = [int(v) for v in values if v != 0]
    if len(nonzero) <= 8:
        example = ",".join(f"{v}:{i + 1}" for i, v in enumerate(nonzero))
    else:
        example = ",".join(f"{v}:{i + 1}" for i, v in enumerate(nonzero[:3])) + ",..."
    raise TrainingDataError(
        f"{head}; for classes map the values to 1, 2, ... with --label-map {example}, for "
        "instance masks use --task instances."
    )
