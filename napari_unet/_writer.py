"""npe2 writer: a Labels layer -> zlib-compressed TIFF with an integer dtype sized to its ids.

A plugin prediction nobody has touched yet (labels equal to the prediction snapshot, nothing
reviewed) is written with the prediction mark of :mod:`napari_unet.core.io.marks`, as ``predict``
writes it, so reopening it does not turn the model's output into the user's annotation. Once
anything is edited or reviewed the file is the user's labels (unmarked).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import UserInputError
from napari_unet.core.io.images import write_labels as _write_labels
from napari_unet.core.io.marks import PredictionMark, software_tag

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")


def labels_dtype(labels: np.ndarray) -> np.dtype:
    """The smallest of uint8/uint16/uint32 that holds ``labels`` (int32 when ids are negative)."""
    if labels.size == 0:
        return np.dtype(np.uint8)
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        return np.dtype(np.int32)
    for dtype in (np.uint8, np.uint16, np.uint32):
        if high <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise UserInputError(f"label ids up to {high} do not fit a 32-bit TIFF; relabel sequentially.")


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one Labels layer's ``data`` to ``path`` (compressed TIFF, atomic); return the path.

    Args:
        path: Target file; ``.tif`` is appended when it has no TIFF suffix.
        data: The labels array (any integer or integer-valued dtype), e.g. (Y, X) or (Z, Y, X).
        meta: napari layer attributes (``metadata["napari_unet"]["axes"]`` is used if present).
    """
    target = Path(path)
    if target.suffix.lower() not in TIFF_SUFFIXES:
        target = target.with_name(target.name + ".tif")
    labels = np.asarray(data)
    if labels.dtype.kind == "f" and (
        not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
    ):
        raise UserInputError("these labels hold non-integer values and cannot be saved.")
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    labels = labels.astype(labels_dtype(labels), copy=False)
    plugin_meta = (meta.get("metadata") or {}).get("napari_unet") or {}
    axes = plugin_meta.get("axes")
    if not (isinstance(axes, str) and len(axes) == labels.ndim and "C" not in axes):
        axes = None
    mark = _untouched_prediction(labels, plugin_meta)
    _write_labels(target, labels, axes=axes, software=software_tag(mark) if mark else None)
    logger.info(
        "wrote %s %s to %s%s", labels.dtype, labels.shape, target, " (a prediction)" * bool(mark)
    )
    return [str(target)]


def _untouched_prediction(labels: np.ndarray, tag: dict[str, Any]) -> PredictionMark | None:
    """The mark of a plugin labels layer still equal to its prediction snapshot, else None."""
    if tag.get("role") != "labels" or tag.get("output") not in ("semantic", "instances"):
        return None
    snapshot, reviewed = tag.get("snapshot"), tag.get("reviewed")
    if not isinstance(snapshot, np.ndarray) or snapshot.shape != labels.shape:
        return None
    if isinstance(reviewed, np.ndarray) and reviewed.any():
        return None
    if not tag.get("predicted") or not np.array_equal(snapshot, labels):
        return None
    return PredictionMark(
        model=str(tag.get("model") or "unknown"), task=str(tag.get("task")), output=tag["output"]
    )
