"""Reading ``train``'s folders: image/label pairs, and the task their labels imply.

:func:`load_pairs` pairs images and labels by file stem into training items;
:func:`instance_evidence` and ``_default_task`` tell instance masks from class labels when
``--task`` is not given.
"""

from __future__ import annotations

import argparse
import glob
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: A labelled object counts as one blob when this share of ids is one connected component.
BLOB_SHARE = 0.8


def _to_cyx(image: np.ndarray, axes: str | None, forced: str | None) -> np.ndarray:
    """(S, C, Y, X) view of an image read from disk."""
    from napari_unet.core.io.axes import check_axes, guess_axes, to_stack

    axes = (
        check_axes(forced, image.shape) if forced else guess_axes(image.shape, metadata_axes=axes)
    )
    stack, _ = to_stack(image, axes)
    return stack


def load_pairs(
    images: Path,
    labels: Path,
    masks: Path | None = None,
    *,
    task: str = "semantic",
    normalization: Any = None,
    axes: str | None = None,
) -> list:
    """Read image/label(/mask) files paired by stem into :class:`TrainingItem` objects.

    Stacks (Z or T) become one item per slice. Images are normalised with ``normalization``;
    restoration targets with the default percentile normalisation.

    Raises:
        TrainingDataError: no pairs, or an image without labels.
    """
    from napari_unet.core.errors import TrainingDataError
    from napari_unet.core.io.images import list_images

    label_files = {p.stem: p for p in list_images(labels)}
    mask_files = {p.stem: p for p in list_images(masks)} if masks else {}
    image_files = list_images(images)
    missing = [p.name for p in image_files if p.stem not in label_files]
    if missing or not image_files:
        raise TrainingDataError(
            f"{len(missing)} image(s) in {images} have no labels with the same file stem in "
            f"{labels} ({', '.join(missing[:5])}); name each label file like its image."
            if missing
            else f"no TIFF/PNG images in {images}; point --images at the image folder."
        )
    items = []
    for path in image_files:
        mask_file = mask_files.get(path.stem)
        items += _file_items(path, label_files[path.stem], mask_file, task, normalization, axes)
    logger.info("read %d training image(s) from %s", len(items), images)
    return items


def _file_items(
    path: Path, label_file: Path, mask_file: Path | None, task: str, normalization: Any, axes: Any
) -> list:
    """The training items of one image file (one per slice of a stack)."""
    from napari_unet.core.errors import TrainingDataError
    from napari_unet.core.inference.normalization import normalize
    from napari_unet.core.io.images import read_image
    from napari_unet.core.training.items import TrainingItem

    items = []
    data = read_image(path)
    stack = _to_cyx(data.image, data.axes, axes)
    target = read_image(label_file).image
    if task == "restoration":
        target = _to_cyx(target, None, None)
    else:
        target = target.reshape((-1, *target.shape[-2:])) if target.ndim > 2 else target[None]
    mask = None
    if mask_file is not None:
        mask = read_image(mask_file).image != 0
        mask = mask.reshape((-1, *mask.shape[-2:])) if mask.ndim > 2 else mask[None]
    if len(target) != len(stack):
        raise TrainingDataError(
            f"{path.name} has {len(stack)} slice(s) but its labels have {len(target)}; give "
            "labels for every slice."
        )
    for s in range(len(stack)):
        labels_s = target[s]
        if task == "restoration":
            labels_s = normalize(np.asarray(labels_s))
        name = path.stem if len(stack) == 1 else f"{path.stem}[{s}]"
        items.append(
            TrainingItem(
                image=normalize(np.asarray(stack[s]), normalization),
                labels=np.asarray(labels_s),
                annotated_mask=None if mask is None else mask[min(s, len(mask) - 1)],
                name=name,
            )
        )
    return items


def _warn_if_instances(items: list, targets: Any) -> None:
    """Semantic training chosen by default on labels that look like instance masks: say so."""
    from napari_unet.core.training.sampler import label_values, looks_like_instances

    if looks_like_instances(label_values(items, ignore_value=targets.ignore_value)):
        logger.warning(
            "the labels hold many object ids per image, like instance masks, and are trained as "
            "that many classes; pass --task instances to segment objects."
        )


def instance_evidence(items: list, ignore_value: int | None = None) -> tuple[int, str] | None:
    """``(objects, image name)`` when the labels look like instance masks, else ``None``.

    Instance masks hold many ids per image (the median image at least
    :data:`~napari_unet.core.training.sampler.INSTANCE_IDS_PER_IMAGE`), each id one connected object
    (at least :data:`BLOB_SHARE` of them, 8-connected), and the ids carry no meaning shared between
    images: images whose id sets are all identical are classes (an atlas), not instances. The
    example returned is the image with the median object count.
    """
    from napari_unet.core.training.sampler import label_values, looks_like_instances

    per_item = label_values(items, ignore_value=ignore_value)
    if not looks_like_instances(per_item):
        return None
    if len(per_item) > 1 and all(np.array_equal(v, per_item[0]) for v in per_item[1:]):
        return None
    blobs = total = 0
    for item in items[:32]:  # enough images to tell; huge folders are not scanned whole
        one, count = _blob_count(item, ignore_value)
        blobs, total = blobs + one, total + count
    if total == 0 or blobs < BLOB_SHARE * total:
        return None
    counts = [int(np.count_nonzero(v)) for v in per_item]
    median = int(np.argsort(counts, kind="stable")[len(counts) // 2])
    return counts[median], items[median].name


def _blob_count(item: Any, ignore_value: int | None) -> tuple[int, int]:
    """(ids that form one connected object, ids) among the annotated labels of ``item``."""
    from scipy import ndimage

    labels = np.asarray(item.labels)
    if labels.ndim not in (2, 3) or not np.issubdtype(labels.dtype, np.integer):
        return 0, 0
    keep = item.mask & (labels > 0)
    if ignore_value is not None:
        keep &= labels != ignore_value
    ids = np.where(keep, labels, 0).astype(np.int64)
    structure = np.ones((3,) * labels.ndim, bool)
    one = total = 0
    for value, box in enumerate(ndimage.find_objects(ids), start=1):
        if box is None:
            continue
        total += 1
        one += ndimage.label(ids[box] == value, structure=structure)[1] == 1
    return one, total


def _default_task(args: argparse.Namespace, info: Any, items: list) -> str | None:
    """``instances`` for a new model on instance-like labels without ``--task`` (said in a line).

    The line names the image with the median object count by its file name.

    Returns None when the task stays as chosen (given, from the checkpoint, a label map given,
    or labels that look like classes).
    """
    if args.task is not None or info is not None or args.label_map:
        return None
    said = instance_line(args, items)
    if said is None:
        return None
    logger.warning(
        "%s: training an instance model; pass --task semantic if the values are classes.", said
    )
    return "instances"


def instance_line(args: argparse.Namespace, items: list) -> str | None:
    """``"the labels look like instance masks (12 objects in a.tif)"`` when they do, else None
    (the image with the median object count, named by its file name)."""
    evidence = instance_evidence(items, args.ignore_value)
    if evidence is None:
        return None
    objects, name = evidence
    stem, _, rest = name.partition("[")  # "stem" or "stem[slice]" (see load_pairs)
    files = sorted(Path(args.images).glob(f"{glob.escape(stem)}.*"))
    name = files[0].name + (f"[{rest}" if rest else "") if files else name
    return f"the labels look like instance masks ({objects} objects in {name})"


def label_items(args: argparse.Namespace) -> list:
    """The labels (and masks) of ``--images``/``--labels`` as training items whose image is a
    zero view (nothing read from the image files): enough to tell the task before the model
    is chosen. One item per label slice; ``(Y, X)`` labels. Images without labels are left
    out (:func:`load_pairs` refuses them).
    """
    from napari_unet.core.io.images import list_images, read_image
    from napari_unet.core.training.items import TrainingItem

    label_files = {p.stem: p for p in list_images(args.labels)}
    mask_files = {p.stem: p for p in list_images(args.masks)} if args.masks else {}
    items = []
    for path in list_images(args.images):
        if path.stem not in label_files:
            continue
        labels = read_image(label_files[path.stem]).image
        labels = labels.reshape((-1, *labels.shape[-2:]))
        mask = read_image(mask_files[path.stem]).image != 0 if path.stem in mask_files else None
        mask = None if mask is None else mask.reshape((-1, *mask.shape[-2:]))
        for s, plane in enumerate(labels):
            name = path.stem if len(labels) == 1 else f"{path.stem}[{s}]"
            image = np.broadcast_to(np.zeros((1, 1, 1), np.float32), (1, *plane.shape))
            annotated = None if mask is None else mask[min(s, len(mask) - 1)]
            items.append(TrainingItem(image, plane, annotated, name=name))
    return items


def _warn_small_images(items: list, patch: int) -> None:
    """Images much smaller than the patch train on mostly padding: say so (it still works)."""
    small = [item for item in items if max(item.spatial_shape) * 4 <= patch]
    if small:
        side = max(max(item.spatial_shape) for item in small)
        logger.warning(
            "%d image(s) are at most %d pixels wide, far smaller than --patch %d; the patches "
            "are mostly padding, so a --patch of about %d trains faster.",
            len(small),
            side,
            patch,
            side,
        )
