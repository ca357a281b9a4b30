"""Probabilities -> labels: semantic classes or instance ids, with bounded memory.

What each task gives (channel conventions from :mod:`napari_unet.core.config`):

- ``binary`` (1 channel): semantic labels ``p >= threshold`` (0/1); instances by connected
  components of that mask, or by a distance-transform watershed that splits touching objects
  (``binary_instances="watershed"``, peaks at least ``min_distance`` apart).
- ``semantic`` (K >= 2): the argmax class; a 2-class model's class 1 where ``p_1 >= threshold``
  (0.5 is the argmax; a tuned membrane threshold lands here, issue 17). Instances: with
  ``foreground_class=None`` every non-background class is foreground (``1 - p_0 >= threshold``)
  and is split like a binary mask;
  with ``foreground_class=(c, ...)`` those classes are object interiors and the others separators
  (the EM membrane model uses ``foreground_class=0``): seeds are connected components of
  ``sum p_c >= interior_threshold`` (optionally eroded by ``seed_erosion`` pixels), grown by a
  watershed over ``1 - sum p_c``. Class 0 is background (stays 0) unless it is listed, in which
  case there is no background and the regions tile the plane, separators included.
- ``instances`` (3 channels: 0 background, 1 interior, 2 boundary): seeds are connected
  components of ``p_1 >= interior_threshold``, grown by a watershed over ``1 - p_1`` within the
  foreground ``1 - p_0 >= threshold`` (interior ∪ boundary). Semantic output is the argmax.
- ``restoration``: no labels (``ValueError``).

Foreground regions that no seed reaches become objects of their own. Stacks (any stack axes:
(Z, Y, X), (T, Z, Y, X), ...) are done plane by plane; instance ids are unique across the whole
stack. Post-steps, in order: hole filling (holes enclosed by one object), the region of interest
(labels outside -> 0), removal of objects smaller than ``min_size`` (connected regions of each
class for semantic labels), and sequential ids. Label dtypes: semantic uint8 (uint16 above 256
classes); instances uint16 up to 65535 objects, else uint32.

Memory (an 8192 x 8192 plane): semantic labels are computed in row chunks (1 byte per pixel plus
a 4 Mpx chunk: measured peak 0.11 GB above the probabilities; ``fill_holes``/``min_size`` add an
int32 plane and masks: 0.67 GB). Instance labels use a uint32 working plane (4 bytes per pixel),
one padded block at a time (about 40 bytes per pixel of ``block_shape + 2 * block_halo``; the
watershed works in float64) and the final uint16/uint32 copy: measured peak 1.05 GB above the
probabilities at the default 4096 x 4096 blocks (21 s on one core, 85k objects). Nothing makes a
full-image float64 or int64 copy.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import numpy as np

from napari_unet.core.config import check_task
from napari_unet.core.errors import UserInputError
from napari_unet.core.postprocess.blocks import stitched_instances
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.postprocess.ops import (
    apply_lut_,
    fill_holes_labels,
    instance_label_dtype,
    label_counts,
    relabel_sequential_dtype,
    remove_small_objects_,
    remove_small_objects_labels,
    row_chunks,
    semantic_label_dtype,
    sequential_lut,
)

logger = logging.getLogger(__name__)

__all__ = [
    "instance_label_dtype",
    "instance_labels",
    "labels_from_probabilities",
    "relabel_sequential_dtype",
    "remove_small_objects_labels",
    "semantic_labels",
]


def labels_from_probabilities(
    probabilities: np.ndarray,
    *,
    task: str,
    config: PostprocessConfig = PostprocessConfig(),
    roi: np.ndarray | None = None,
) -> np.ndarray:
    """Labels from a model's probabilities.

    Args:
        probabilities: (K, Y, X) or (K, *stack, Y, X) float32/float16 (any stack axes, e.g.
            (K, T, Z, Y, X)), K as the task requires.
        task: the model's task (``binary``, ``semantic``, ``instances``; not ``restoration``).
        config: what to produce; ``config.output`` picks semantic or instance labels.
        roi: optional bool mask (*spatial) or (Y, X) shared by all planes; labels outside -> 0.

    Returns:
        (*spatial) labels: semantic uint8 (uint16 above 256 classes) or instance ids uint16
        (uint32 above 65535 objects), 0 = background, ids sequential.

    Raises:
        UserInputError: a restoration task, a region of interest of the wrong shape, or a
            ``foreground_class`` the model does not have.
        ValueError: probabilities of the wrong shape for the task.
    """
    if config.output == "instances":
        return instance_labels(probabilities, task=task, config=config, roi=roi)
    return semantic_labels(probabilities, task=task, config=config, roi=roi)


def semantic_labels(
    probabilities: np.ndarray,
    *,
    task: str,
    config: PostprocessConfig = PostprocessConfig(),
    roi: np.ndarray | None = None,
) -> np.ndarray:
    """Class ids per pixel: ``p >= threshold`` for binary models and for class 1 of a 2-class
    model (the argmax when ``threshold`` is 0.5), else the argmax class.

    Computed in row chunks, so the only full-size array is the result (1 byte per pixel);
    ``min_size`` adds an int32 plane while it runs. Args and returns as
    :func:`labels_from_probabilities`.
    """
    probabilities, planes, roi = _prepare(probabilities, task, config, roi)
    n_classes = probabilities.shape[0]
    labels = np.empty(probabilities.shape[1:], dtype=semantic_label_dtype(n_classes))
    label_planes = labels.reshape((-1, *labels.shape[-2:]))
    for index, plane in enumerate(label_planes):
        for rows in row_chunks(plane.shape):
            chunk = planes[:, index, rows]
            if task == "binary":
                plane[rows] = chunk[0] >= config.threshold
            elif n_classes == 2 and config.threshold != 0.5:
                plane[rows] = chunk[1] >= config.threshold
            else:
                plane[rows] = np.argmax(chunk, axis=0)
        _finish_plane(plane, None if roi is None else roi[index % roi.shape[0]], config)
        remove_small_objects_(plane, config.min_size, components=True)
    return labels


def instance_labels(
    probabilities: np.ndarray,
    *,
    task: str,
    config: PostprocessConfig = PostprocessConfig(),
    roi: np.ndarray | None = None,
) -> np.ndarray:
    """Instance ids per pixel, unique across a stack, computed block by block.

    Memory: a uint32 working array (4 bytes per pixel) plus one padded block at a time (see the
    module docstring), then the result in its final dtype. Args and returns as
    :func:`labels_from_probabilities`.
    """
    probabilities, planes, roi = _prepare(probabilities, task, config, roi)
    work = np.zeros(probabilities.shape[1:], dtype=np.uint32)
    work_planes = work.reshape((-1, *work.shape[-2:]))
    total = 0
    for index, plane in enumerate(work_planes):
        stitched_instances(planes[:, index], task=task, config=config, out=plane)
        _finish_plane(plane, None if roi is None else roi[index % roi.shape[0]], config)
        lut = sequential_lut(label_counts(plane), min_size=config.min_size, offset=total)
        apply_lut_(plane, lut)
        total = max(total, int(lut.max()) if lut.size else 0)
    logger.debug("instance labels: %d objects in %d plane(s)", total, work_planes.shape[0])
    return work.astype(instance_label_dtype(total), copy=False)


def _finish_plane(plane: np.ndarray, roi: np.ndarray | None, config: PostprocessConfig) -> None:
    """Hole filling, then the region of interest (so its outside is never taken for a hole)."""
    if config.fill_holes:
        fill_holes_labels(plane)
    if roi is not None:
        plane[~roi] = 0


def _prepare(
    probabilities: np.ndarray, task: str, config: PostprocessConfig, roi: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check inputs; return probabilities, a (K, S, Y, X) view and the roi as (S or 1, Y, X).

    Any number of stack axes (``(K, T, Z, Y, X)`` from a TZYX image) is flattened into ``S``.
    """
    check_task(task)
    if task == "restoration":
        raise UserInputError(
            "A restoration model outputs a restored image, not labels; "
            "use its image output instead of asking for labels."
        )
    probabilities = np.asarray(probabilities)
    if probabilities.ndim < 3 or not np.issubdtype(probabilities.dtype, np.floating):
        raise ValueError(
            "probabilities must be a float array (K, Y, X) or (K, *stack, Y, X), "
            f"got {probabilities.dtype} {probabilities.shape}"
        )
    if task == "instances" and probabilities.shape[0] == 4 and config.output != "instances":
        probabilities = probabilities[:3]  # a distance head's channel is no class
    n_classes = probabilities.shape[0]
    # instances: 3 classes, and a distance head's channel last (core.models.aux)
    expected = {
        "binary": n_classes == 1, "semantic": n_classes >= 2, "instances": n_classes in (3, 4)
    }  # fmt: skip
    if not expected[task]:
        need = {"binary": "1 channel", "semantic": ">= 2 channels", "instances": "3 channels"}
        raise ValueError(f"a {task} model needs {need[task]}, got {n_classes}")
    foreground = config.foreground_class if config.output == "instances" else None
    if task == "semantic" and foreground and max(foreground) >= n_classes:
        raise UserInputError(
            f"foreground_class {foreground} does not exist in a model with {n_classes} "
            f"classes; pick class indices from 0 to {n_classes - 1}."
        )
    planes = probabilities.reshape((n_classes, -1, *probabilities.shape[-2:]))
    if roi is not None:
        roi = np.asarray(roi, dtype=bool)
        spatial = probabilities.shape[1:]
        if roi.shape not in (spatial, spatial[-2:]):
            raise UserInputError(
                f"The region-of-interest mask has shape {roi.shape} but the image's spatial "
                f"shape is {spatial}; give a mask of shape {spatial} or {spatial[-2:]}."
            )
        roi = roi.reshape((-1, *spatial[-2:]))
    return probabilities, planes, roi


def postprocess_with_defaults(
    defaults: Mapping[str, object] | None, **overrides: object
) -> PostprocessConfig:
    """A :class:`PostprocessConfig` from a model's stored defaults, then non-``None`` overrides.

    Unknown keys in ``defaults`` (written by a newer version) are skipped with a warning, so an
    older install still loads newer checkpoints.

    Raises:
        ValueError: An override is not a valid setting.
    """
    known = {field.name for field in dataclasses.fields(PostprocessConfig)}
    settings = {}
    for key, value in (defaults or {}).items():
        if key in known:
            settings[key] = value
        else:
            logger.warning("ignoring unknown post-processing default %r", key)
    for key, value in overrides.items():
        if value is not None:
            settings[key] = value
    return PostprocessConfig.from_dict(settings)
