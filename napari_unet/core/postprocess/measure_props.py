"""Measuring one 2-D slice or 3-D volume of labels with scikit-image's ``regionprops_table``.

Gives the columns of :func:`napari_unet.core.postprocess.measure.measure_objects` (without the
``slice`` column) for one piece: ids, areas, centroids, bounding boxes, intensities, classes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

_INTENSITY = ("mean", "min", "max")


def measure_one(
    labels: np.ndarray,
    image: np.ndarray | None,
    measured_axes: str,
    output: str,
    semantic: np.ndarray | None,
    spacing: tuple[float, ...] | None,
) -> dict[str, np.ndarray]:
    """The columns of one 2-D slice or 3-D volume (no ``slice`` column)."""
    from skimage.measure import label as connected
    from skimage.measure import regionprops_table

    class_ids = labels if output == "semantic" else semantic
    if output == "semantic":
        labels = connected(labels, background=0, connectivity=labels.ndim)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    properties = ["label", "area", "centroid", "bbox"]
    if image is not None:
        properties += [f"intensity_{kind}" for kind in _INTENSITY]
    raw = regionprops_table(labels, intensity_image=image, properties=properties, separator="-")
    letters = [a.lower() for a in measured_axes]
    n = len(letters)
    table: dict[str, np.ndarray] = {
        "label": raw["label"].astype(np.int64),
        "area": raw["area"].astype(np.int64),
    }
    for i, a in enumerate(letters):
        table[f"centroid_{a}"] = raw[f"centroid-{i}"].astype(np.float64)
        table[f"bbox_{a}_min"] = raw[f"bbox-{i}"].astype(np.int64)
        table[f"bbox_{a}_max"] = raw[f"bbox-{i + n}"].astype(np.int64)
    if spacing is not None:
        size = table["area"] * float(np.prod(spacing))
        table["volume_physical" if n == 3 else "area_physical"] = size
        for i, a in enumerate(letters):
            table[f"centroid_{a}_physical"] = table[f"centroid_{a}"] * spacing[i]
    if image is not None:
        _intensity_columns(table, raw, image.ndim > labels.ndim, image)
    if class_ids is not None:
        table["class_id"] = _majority(labels, np.asarray(class_ids), table["label"])
    return table


def _intensity_columns(
    table: dict[str, np.ndarray], raw: Mapping[str, np.ndarray], multichannel: bool, image
) -> None:
    for kind in _INTENSITY:
        if not multichannel:
            table[f"{kind}_intensity"] = raw[f"intensity_{kind}"].astype(np.float64)
            continue
        for c in range(image.shape[-1]):
            table[f"{kind}_intensity_c{c}"] = raw[f"intensity_{kind}-{c}"].astype(np.float64)


def _majority(labels: np.ndarray, class_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The most frequent class id under each object of ``ids`` (ties: the smaller id)."""
    inside = labels != 0
    if not ids.size:
        return np.zeros(0, dtype=np.int64)
    keys, counts = np.unique(
        np.stack([labels[inside].astype(np.int64), class_ids[inside].astype(np.int64)]),
        axis=1,
        return_counts=True,
    )
    best: dict[int, tuple[int, int]] = {}
    for obj, cls, count in zip(keys[0].tolist(), keys[1].tolist(), counts.tolist(), strict=True):
        if obj not in best or count > best[obj][0]:
            best[obj] = (count, cls)
    return np.array([best[int(i)][1] for i in ids], dtype=np.int64)
