"""Probabilities -> labels: semantic classes or instance ids, block-wise for huge images; 3-D
instances of volumes (:func:`instances_3d`, :func:`volume_labels`)."""

from __future__ import annotations

from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.postprocess.labels import (
    instance_labels,
    labels_from_probabilities,
    semantic_labels,
)
from napari_unet.core.postprocess.ops import (
    CHUNK_PIXELS,
    STRUCTURE_8,
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
from napari_unet.core.postprocess.volume import instances_3d, volume_labels

__all__ = [
    "CHUNK_PIXELS",
    "STRUCTURE_8",
    "PostprocessConfig",
    "apply_lut_",
    "fill_holes_labels",
    "instance_label_dtype",
    "instance_labels",
    "instances_3d",
    "label_counts",
    "labels_from_probabilities",
    "relabel_sequential_dtype",
    "remove_small_objects_",
    "remove_small_objects_labels",
    "row_chunks",
    "semantic_label_dtype",
    "semantic_labels",
    "sequential_lut",
    "volume_labels",
]
