"""The dataset fingerprint: settings that depend on the corrected data, chosen from it (issue 17).

As nnU-Net derives its patch and batch size from a fingerprint of the data set, :func:`fingerprint`
looks at the corrected images (sizes, channels, annotated pixels, class frequencies, object sizes)
and chooses the patch side (never far bigger than the images, a multiple of the net's divisor), a
batch size that keeps the pixels per step, the scale (the median object diameter against the
net's receptive field: a U-Net for instances sees the images ``k`` times smaller when the objects
are far larger, :mod:`~napari_unet.core.training.downscale`; otherwise a warning) and the zoom
range of the augmentation (as the start model was trained, else :data:`ZOOM`). ``train``,
``simulate`` and the Fine-tune dock's trainer use it; explicit settings win. Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_unet.core.training.downscale import choose_downscale, factor_for
from napari_unet.core.training.gaps import gap_note, gap_share
from napari_unet.core.training.split import is_flat_copy

__all__ = ["ZOOM", "DatasetFingerprint", "fingerprint", "net_geometry", "receptive_field"]

#: Images whose objects are scanned for their size (enough to tell; huge folders are not read).
MAX_SCANNED = 32
#: Objects wider than this share of the receptive field are "far larger" than what the net sees
#: whole (the effective field of a U-Net is about half its theoretical one).
SCALE_WARNING_SHARE = 0.5
#: The batch grows at most this many times when the patch shrinks below the default.
MAX_BATCH_FACTOR = 4
#: Zoom range of the augmentation (``AugmentConfig.affine_scale``'s default). A wider one
#: (0.67-1.5x) helped fluorescence nuclei from scratch and cost bright-field nuclei (issue 17,
#: docs/learning_ablation.md, sessions 14-15), so it is a setting (``train --zoom``), not a default.
ZOOM = (0.9, 1.1)


def receptive_field(depth: int, convs_per_level: int = 2) -> int:
    """Theoretical receptive field (pixels) of a U-Net with ``depth`` 2x2 poolings and
    ``convs_per_level`` 3x3 convolutions per level on both sides of the bottleneck."""
    field = 1
    for level in range(depth):
        field += 2 * (2 * convs_per_level) * 2**level + 2**level  # encoder + decoder convs, pool
    return field + 2 * convs_per_level * 2**depth


def net_geometry(arch: str, model_config: dict[str, Any]) -> tuple[int, int]:
    """``(size_multiple, receptive_field)`` of a registry architecture from its config, at full
    resolution (a ``downscale`` in the config is the fingerprint's to choose again)."""
    if arch in ("unet11", "unet16"):  # TernausNet: a VGG encoder with 5 poolings
        return 32, receptive_field(5, 3)
    depth = int(model_config.get("depth", 4))
    return 2**depth, receptive_field(depth)


@dataclasses.dataclass(frozen=True)
class DatasetFingerprint:
    """What the corrected data look like and the settings chosen from them.

    Attributes:
        n_images: training images (slices). channels: input channels.
        median_shape, min_shape: (Y, X) of the images (median and smallest per axis).
        annotated_pixels: annotated pixels in all images.
        class_fractions: ``((class, share of the annotated pixels), ...)``; foreground is class 1
            for binary and instance labels.
        n_objects: objects touching the annotated pixels (instance ids, or connected foreground).
        object_diameter: median equivalent diameter of those objects (pixels), None without any.
        receptive_field: theoretical receptive field of the net (pixels of the image, so ``k``
            times the net's own with ``downscale`` k).
        downscale: ``k``: the net sees the images ``k`` times smaller (1: full resolution).
        patch_shape, batch_size: the settings chosen (or given).
        patch_reduced: the patch was made smaller than asked to fit the images.
        scale_warning: a sentence when objects are far larger than the receptive field, else "".
        zoom: the augmentation's (low, high) zoom range chosen (or given).
        zoom_reason: why it is not the default range, else "".
        gap_share: instance labels: the share of the annotated background lying in gaps
            between two objects (:mod:`~napari_unet.core.training.gaps`; above half, the
            border weights are off), else None.
    """

    n_images: int
    channels: int
    median_shape: tuple[int, int]
    min_shape: tuple[int, int]
    annotated_pixels: int
    class_fractions: tuple[tuple[int, float], ...]
    n_objects: int
    object_diameter: float | None
    receptive_field: int
    patch_shape: tuple[int, ...]
    batch_size: int
    patch_reduced: bool = False
    downscale: int = 1
    scale_warning: str = ""
    zoom: tuple[float, float] = ZOOM
    zoom_reason: str = ""
    gap_share: float | None = None

    def describe(self) -> str:
        """One line for the user: data, chosen patch and batch, and the scale note."""
        y, x = self.median_shape
        shares = ", ".join(f"{k}: {share:.0%}" for k, share in self.class_fractions)
        classes = f" (classes {shares}), {self.n_objects} objects" if shares else ""
        size = (
            f"median object {self.object_diameter:.0f} px across vs receptive field "
            f"{self.receptive_field} px"
            if self.object_diameter is not None
            else f"receptive field {self.receptive_field} px"
        )
        reduced = " (reduced to fit the images)" if self.patch_reduced else ""
        if self.downscale > 1:
            size += f" (the net sees the images {self.downscale}x smaller)"
        low, high = self.zoom
        why = f" ({self.zoom_reason})" if self.zoom_reason else ""
        line = (
            f"data: {self.n_images} image(s) of median {y}x{x} px, {self.channels} channel(s), "
            f"{self.annotated_pixels} annotated px{classes}; "
            f"{size}; patch {'x'.join(str(s) for s in self.patch_shape)}{reduced}, batch "
            f"{self.batch_size}, zoom {low:g}-{high:g}x{why}"
        )
        line = "; ".join(filter(None, (line, gap_note(self.gap_share))))
        return f"{line}. {self.scale_warning}" if self.scale_warning else line

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a checkpoint's provenance or a version record)."""
        data = dataclasses.asdict(self)
        data["class_fractions"] = [list(pair) for pair in self.class_fractions]
        return data


def fingerprint(
    items: Sequence[Any],
    *,
    task: str,
    size_multiple: int,
    receptive_field: int,
    default_patch: tuple[int, int] = (256, 256),
    default_batch: int = 4,
    patch_shape: tuple[int, int] | None = None,
    batch_size: int | None = None,
    label_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
    zoom: tuple[float, float] | None = None,
    start_zoom: tuple[float, float] | None = None,
    downscale: int | None = None,
    can_downscale: bool = False,
    start_downscale: int = 1,
) -> DatasetFingerprint:
    """The fingerprint of ``items`` and the settings chosen from it.

    Args:
        items: training items: ``image`` (C, Y, X), ``labels`` (Y, X), ``mask`` (Y, X) bool.
        task: ``binary``, ``semantic``, ``instances`` or ``restoration``.
        size_multiple, receptive_field: the net's input divisor and field (px) at ``downscale`` 1.
        default_patch, default_batch: the settings used when the images are large enough (the
            default patch grows ``k`` times with ``downscale`` k, so the net sees as many pixels).
        patch_shape, batch_size, downscale: explicit settings win (else chosen from the data).
        label_map, ignore_value: how raw label values become classes (semantic).
        zoom, start_zoom: the augmentation's zoom range given (it wins) / the start model's.
    """
    items = [item for item in items if not is_flat_copy(item)]  # 2.5-D copies: counted once
    shapes = np.array([tuple(np.shape(item.image)[-2:]) for item in items], dtype=np.int64)
    median = tuple(int(v) for v in np.median(shapes, axis=0))
    counts, diameters = _classes_and_objects(items, task, label_map, ignore_value)
    diameter = float(np.median(diameters)) if diameters else None
    chooses = can_downscale and task == "instances"  # a class's regions are not objects of a size
    downscale = downscale or _downscale(chooses, start_downscale, diameter, size_multiple, median)
    receptive_field = receptive_field * downscale  # in image pixels
    default_patch = tuple(int(d) * downscale for d in default_patch)  # the net sees as much
    chosen = patch_shape or _patch(median, default_patch, size_multiple * downscale)
    return DatasetFingerprint(
        n_images=len(items),
        channels=int(np.shape(items[0].image)[0]) if len(items) else 0,
        median_shape=median,
        min_shape=tuple(int(v) for v in shapes.min(axis=0)),
        annotated_pixels=int(sum(int(np.count_nonzero(item.mask)) for item in items)),
        class_fractions=_fractions(counts),
        n_objects=len(diameters),
        object_diameter=diameter,
        receptive_field=int(receptive_field),
        patch_shape=tuple(int(s) for s in chosen),
        batch_size=_batch(batch_size, default_batch, default_patch, chosen),
        patch_reduced=patch_shape is None and tuple(chosen) != tuple(default_patch),
        downscale=int(downscale),
        scale_warning=_scale_warning(diameter, receptive_field, downscale),
        **_zoom(zoom, start_zoom),
        gap_share=gap_share(items, ignore_value=ignore_value) if task == "instances" else None,
    )


def _downscale(
    chooses: bool, start: int, diameter: float | None, multiple: int, median: tuple[int, ...]
) -> int:
    """The factor instance objects ask for (``chooses``: a U-Net, instance labels; ``multiple``:
    its input divisor); where they ask for none, the start model's ``start`` (a factor set
    before is kept)."""
    chosen = choose_downscale(diameter, median, multiple) if chooses else 1
    return chosen if chosen > 1 else start


def _fractions(counts: dict[int, int]) -> tuple[tuple[int, float], ...]:
    """``((class, share of the annotated pixels), ...)`` of the pixel counts per class."""
    total = sum(counts.values())
    return tuple((k, v / total) for k, v in sorted(counts.items())) if total else ()


def _batch(
    given: int | None, default: int, default_patch: tuple[int, ...], patch: tuple[int, ...]
) -> int:
    """``given``, else the default batch grown to keep the pixels per step of a smaller patch."""
    if given is not None:
        return int(given)
    area = default_patch[0] * default_patch[1] / float(patch[0] * patch[1])
    return int(min(MAX_BATCH_FACTOR * default, max(1, round(default * area))))


def _scale_warning(diameter: float | None, receptive_field: int, downscale: int = 1) -> str:
    """A sentence when objects are far larger than the net's receptive field (``receptive_field``
    in image pixels, at the ``downscale`` factor the net sees the images with), else ""."""
    if diameter is None or diameter <= SCALE_WARNING_SHARE * receptive_field:
        return ""
    needed = max(2, factor_for(diameter))  # as the instance rule would choose
    if needed <= downscale:  # already seen that much smaller: the net is the limit
        return (
            f"Objects ({diameter:.0f} px across) are large for the net's receptive field "
            f"({receptive_field} px) even with the images seen {downscale}x smaller: start "
            "from a deeper model (more poolings) or let it see them smaller still (--downscale, "
            "up to 8)."
        )
    return (
        f"Objects ({diameter:.0f} px across) are large for the net's receptive field "
        f"({receptive_field} px): let it see the images {needed}x smaller (train --downscale "
        f"{needed}, up to 8) or use a deeper model."
    )


def _zoom(given: tuple[float, float] | None, start: tuple[float, float] | None) -> dict[str, Any]:
    """``zoom`` and ``zoom_reason`` of the fingerprint: as given, else as the start model was
    trained, else :data:`ZOOM`."""
    if given is not None:
        return {"zoom": tuple(float(v) for v in given), "zoom_reason": "as given"}
    start = ZOOM if start is None else tuple(float(v) for v in start)
    return {"zoom": start, "zoom_reason": "as the start model was trained" if start != ZOOM else ""}


def _patch(median: tuple[int, ...], default: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The default patch, shrunk per side to the median image side rounded up to ``multiple``."""
    return tuple(
        min(int(d), max(multiple, math.ceil(side / multiple) * multiple))
        for side, d in zip(median, default)
    )


def _classes_and_objects(
    items: Sequence[Any], task: str, label_map: dict[int, int] | None, ignore_value: int | None
) -> tuple[dict[int, int], list[float]]:
    """Annotated pixels per class and the equivalent diameters of the annotated objects."""
    from scipy import ndimage

    counts: dict[int, int] = {}
    diameters: list[float] = []
    if task == "restoration":
        return counts, diameters
    for index, item in enumerate(items):
        labels = np.asarray(item.labels)
        if labels.ndim != 2:
            continue
        labels = labels.astype(np.int64)
        mask = np.asarray(item.mask, bool)
        if ignore_value is not None:
            mask = mask & (labels != ignore_value)
        if label_map:
            from napari_unet.core.training.targets import apply_label_map

            labels = apply_label_map(labels, label_map)
        classes = labels if task == "semantic" else (labels > 0).astype(np.int64)
        values, n = np.unique(classes[mask], return_counts=True)
        for value, count in zip(values.tolist(), n.tolist()):
            counts[int(value)] = counts.get(int(value), 0) + int(count)
        if index >= MAX_SCANNED:
            continue
        objects = labels if task == "instances" else ndimage.label(labels > 0)[0]
        touched = np.unique(objects[mask & (objects > 0)])
        if touched.size:
            areas = np.bincount(objects.ravel())[touched]
            diameters.extend((2.0 * np.sqrt(areas / np.pi)).tolist())
    return counts, diameters
