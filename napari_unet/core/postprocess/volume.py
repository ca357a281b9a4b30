"""Labels of volumes ``(K, Z, Y, X)`` from a 3-D model: instances in 3-D, with the voxel size.

:func:`instances_3d` splits objects in 3-D, so an object's id is the same in every slice it
spans (slice-by-slice labels number each plane's pieces on their own). The rules are those of
the 2-D code (:mod:`.blocks`), with 26-connectivity and the voxel size ``spacing`` ``(z, y, x)``:

- ``instances`` (3 channels: background, interior, boundary): seeds are connected components of
  ``p_1 >= interior_threshold`` (eroded by ``seed_erosion`` voxels of the finest side, fewer
  along a coarser axis), grown by a watershed over ``1 - p_1`` within ``1 - p_0 >= threshold``.
- ``semantic`` with ``foreground_class``: the same with ``sum p_c`` as the interior.
- ``binary`` (and ``semantic`` without ``foreground_class``): connected components of the mask,
  or (``binary_instances="watershed"``) a watershed on the Euclidean distance transform measured
  in physical units (``sampling=spacing``), peaks ``min_distance`` finest-side voxels apart.

Foreground regions that no seed reaches become objects of their own. Then ``fill_holes`` (per
plane), the region of interest, ``min_size`` (voxels) and sequential ids. Memory: float32
channels, a float64 flooding volume and scikit-image's watershed copies, about 40 bytes per
voxel of one volume.

:func:`volume_labels` gives semantic or instance labels for ``(K, Z, Y, X)`` or ``(K, T, Z, Y,
X)`` probabilities of a 3-D model (semantic labels are per voxel, ``min_size`` removes small 3-D
components).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from napari_unet.core.errors import UserInputError
from napari_unet.core.postprocess.blocks import _label_leftovers, _tie_free
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.postprocess.labels import _prepare, semantic_labels
from napari_unet.core.postprocess.ops import (
    apply_lut_,
    fill_holes_labels,
    instance_label_dtype,
    label_counts,
    sequential_lut,
)

logger = logging.getLogger(__name__)

__all__ = ["STRUCTURE_26", "check_spacing", "instances_3d", "volume_labels"]

#: Full (26-) connectivity in 3-D.
STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def check_spacing(spacing: object) -> tuple[float, float, float]:
    """``spacing`` as three positive finite floats ``(z, y, x)``, or a one-sentence error.

    Raises:
        UserInputError: Missing, the wrong length, zero, negative, not finite, or absurdly
            anisotropic (sides more than 1000 times apart).
    """
    try:
        sides = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        sides = ()
    if len(sides) != 3 or not all(math.isfinite(s) and s > 0 for s in sides):
        raise UserInputError(
            f"the voxel size {spacing!r} is not valid; give three positive numbers (z, y, x) "
            "in one unit, e.g. (1.75, 0.8, 0.8)."
        )
    if max(sides) / min(sides) > 1000:
        raise UserInputError(
            f"the voxel size {sides} has sides more than 1000 times apart; check its unit "
            "(give z, y and x in the same unit)."
        )
    return sides  # type: ignore[return-value]


def _radii(distance: float, spacing: tuple[float, ...]) -> tuple[int, ...]:
    """Voxels per axis covering ``distance`` finest-side voxels (fewer along coarser axes)."""
    finest = min(spacing)
    return tuple(round(distance * finest / side) for side in spacing)


def _channel(probabilities: np.ndarray, index: int) -> np.ndarray:
    return np.array(probabilities[index], dtype=np.float32, copy=True)


def _seeded(
    interior: np.ndarray, mask: np.ndarray | None, config: PostprocessConfig, spacing
) -> np.ndarray:
    seeds = interior >= config.interior_threshold
    if mask is not None:
        seeds &= mask
    if config.seed_erosion:
        radii = _radii(config.seed_erosion, spacing)
        structure = np.ones(tuple(2 * r + 1 for r in radii), dtype=bool)
        seeds = ndimage.binary_erosion(seeds, structure=structure, border_value=1)
    markers, _ = ndimage.label(seeds, structure=STRUCTURE_26, output=np.int32)
    del seeds
    np.subtract(1.0, interior, out=interior)
    np.clip(interior, 0.0, 1.0, out=interior)
    flood = _tie_free(interior, max_value=1.0)
    del interior
    labels = watershed(flood, markers, mask=mask)
    if config.unseeded == "drop":  # foreground no seed reached stays background, as in 2-D
        return labels.astype(np.int32, copy=False)
    return _label_leftovers(labels, mask, STRUCTURE_26)


def _distance_watershed(mask: np.ndarray, min_distance: int, spacing) -> np.ndarray:
    """Split touching objects at the saddles of the physical distance transform."""
    distance = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)
    distance = distance[1:-1, 1:-1, 1:-1].astype(np.float32)
    size = tuple(2 * r + 1 for r in _radii(min_distance, spacing))
    peaks = ndimage.maximum_filter(distance, size=size, mode="constant")
    peaks = (distance == peaks) & mask
    markers, _ = ndimage.label(peaks, structure=STRUCTURE_26, output=np.int32)
    del peaks
    top = float(distance.max()) if distance.size else 0.0
    np.subtract(top, distance, out=distance)
    flood = _tie_free(distance, max_value=top)
    del distance
    return _label_leftovers(watershed(flood, markers, mask=mask), mask, STRUCTURE_26)


def _raw_instances(probabilities: np.ndarray, task: str, config: PostprocessConfig, spacing):
    """Instance ids ``(Z, Y, X)`` int32 (not sequential) of one volume."""
    if task == "instances":
        mask = (1.0 - _channel(probabilities, 0)) >= config.threshold
        return _seeded(_channel(probabilities, 1), mask, config, spacing)
    if task == "semantic" and config.foreground_class is not None:
        foreground = _channel(probabilities, config.foreground_class[0])
        for index in config.foreground_class[1:]:
            foreground += _channel(probabilities, index)
        mask = None
        if 0 not in config.foreground_class:
            mask = (1.0 - _channel(probabilities, 0)) >= config.threshold
        return _seeded(foreground, mask, config, spacing)
    if task == "binary":
        mask = _channel(probabilities, 0) >= config.threshold
    else:
        mask = (1.0 - _channel(probabilities, 0)) >= config.threshold
    if config.binary_instances == "connected":
        labels, _ = ndimage.label(mask, structure=STRUCTURE_26, output=np.int32)
        return labels
    return _distance_watershed(mask, config.min_distance, spacing)


def instances_3d(
    probabilities: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    config: PostprocessConfig = PostprocessConfig(output="instances"),
    task: str = "instances",
    roi: np.ndarray | None = None,
) -> np.ndarray:
    """Instance ids of a volume, split in 3-D (ids consistent across ``Z``).

    Args:
        probabilities: ``(K, Z, Y, X)`` float32/float16, ``K`` as ``task`` requires.
        spacing: Voxel size ``(z, y, x)`` in one unit (e.g. ``(1.75, 0.8, 0.8)`` µm).
        config: Thresholds, seeds, ``min_size`` (voxels); ``config.output`` is not read.
        task: ``"instances"`` (3 channels), ``"binary"`` or ``"semantic"``.
        roi: Optional bool mask ``(Z, Y, X)`` or ``(Y, X)``; labels outside -> 0.

    Returns:
        ``(Z, Y, X)`` ids 1..N (uint16, uint32 above 65535 objects), 0 = background.

    Raises:
        UserInputError: A bad voxel size, a restoration task, a bad ``roi`` or
            ``foreground_class``.
        ValueError: Probabilities that are not ``(K, Z, Y, X)`` for the task.
    """
    spacing = check_spacing(spacing)
    probabilities, _, roi = _prepare(probabilities, task, config, roi)
    if probabilities.ndim != 4:
        raise ValueError(
            f"instances_3d needs (K, Z, Y, X) probabilities, got {probabilities.shape}"
        )
    labels = _raw_instances(probabilities, task, config, spacing)
    if config.fill_holes:
        fill_holes_labels(labels)
    if roi is not None:
        labels[~np.broadcast_to(roi, labels.shape)] = 0  # roi: (Z or 1, Y, X) from _prepare
    lut = sequential_lut(label_counts(labels), min_size=config.min_size)
    apply_lut_(labels, lut)
    total = int(lut.max()) if lut.size else 0
    logger.debug("3-D instances: %d objects in a volume of %s", total, labels.shape)
    return labels.astype(instance_label_dtype(total), copy=False)


def volume_labels(
    probabilities: np.ndarray,
    *,
    task: str,
    config: PostprocessConfig = PostprocessConfig(),
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    roi: np.ndarray | None = None,
) -> np.ndarray:
    """Labels of a 3-D model's probabilities ``(K, Z, Y, X)`` or ``(K, T, Z, Y, X)`` (per T).

    Semantic labels are per voxel (small 3-D components below ``min_size`` removed); instance
    labels come from :func:`instances_3d`, ids unique across ``T``.

    Returns:
        ``(Z, Y, X)`` or ``(T, Z, Y, X)`` labels (dtypes as
        :func:`~napari_unet.core.postprocess.labels.labels_from_probabilities`).
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim not in (4, 5):
        raise ValueError(
            f"volume labels need (K, Z, Y, X) or (K, T, Z, Y, X), got {probabilities.shape}"
        )
    volumes = probabilities if probabilities.ndim == 5 else probabilities[:, None]
    if config.output != "instances":
        labels = semantic_labels(
            probabilities, task=task, config=config.replace(min_size=0), roi=roi
        )
        for volume in labels.reshape(-1, *labels.shape[-3:]):
            _remove_small_3d(volume, config.min_size)
        return labels
    parts, total = [], 0
    for t in range(volumes.shape[1]):
        part = instances_3d(volumes[:, t], spacing=spacing, config=config, task=task, roi=roi)
        part = part.astype(np.uint32)
        part[part > 0] += total
        total = int(part.max()) if part.size else total
        parts.append(part)
    stacked = np.stack(parts)
    labels = stacked.astype(instance_label_dtype(total), copy=False)
    return labels if probabilities.ndim == 5 else labels[0]


def _remove_small_3d(volume: np.ndarray, min_size: int) -> None:
    """Set 26-connected regions of one class smaller than ``min_size`` voxels to 0, in place."""
    if min_size <= 1:
        return
    for value in np.flatnonzero(label_counts(volume)[1:]) + 1:
        regions, _ = ndimage.label(volume == value, structure=STRUCTURE_26)
        small = label_counts(regions) < min_size
        small[0] = False
        volume[small[regions]] = 0
