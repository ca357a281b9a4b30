"""Training targets from what the user annotated: class maps with ignore, and weight maps.

Input is ``labels`` (class ids for a binary/semantic model, instance ids for an instance model;
0 = background) plus an ``annotated_mask`` (bool, which pixels the user vouches for). Pixels
outside the mask get :data:`IGNORE_INDEX` and weight 0, and label values there never influence
the targets inside it (instance boundaries and border weights are computed from the masked
labels), so a user who fixed three rectangles trains on those only.

Example:
    >>> labels = np.zeros((8, 8), np.int32); labels[2:6, 1:4] = 1; labels[2:6, 4:7] = 2
    >>> targets = make_targets(labels, config=TargetConfig(task="instances", boundary_width=1))
    >>> targets.classes[3].tolist()
    [0, 2, 1, 2, 2, 1, 2, 0]
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from skimage.measure import label as connected_components

from napari_unet.core.config import Config, check_task
from napari_unet.core.errors import TrainingDataError, UserInputError
from napari_unet.core.training.weightmap import border_weight_map

__all__ = [
    "IGNORE_INDEX",
    "LabelMap",
    "TargetConfig",
    "Targets",
    "apply_label_map",
    "border_weight_map",
    "instances_to_classes",
    "make_targets",
    "parse_label_map",
]

logger = logging.getLogger(__name__)

#: Class target of pixels that no loss may see (outside the annotated mask, ignore value).
IGNORE_INDEX = -1

#: Maps a data set's label values to ours, e.g. ISBI 2012 ``{0: 1, 255: 0}``.
LabelMap = dict[int, int]


def parse_label_map(text: str) -> LabelMap:
    """Parse ``"SRC:DST,SRC:DST"`` (e.g. ``"0:1,255:0"``) into a :data:`LabelMap`.

    Raises:
        UserInputError: the text is not a comma-separated list of ``int:int`` pairs, or a source
            value appears twice.
    """
    mapping: LabelMap = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            source, target = (int(value) for value in item.split(":"))
        except ValueError:
            raise UserInputError(
                f"cannot read label map entry {item!r}; write pairs SRC:DST separated by commas, "
                "e.g. 0:1,255:0"
            ) from None
        if source in mapping:
            raise UserInputError(f"label map maps value {source} twice; give each source once")
        mapping[source] = target
    if not mapping:
        raise UserInputError("the label map is empty; write pairs SRC:DST, e.g. 0:1,255:0")
    return mapping


def apply_label_map(labels: np.ndarray, mapping: LabelMap) -> np.ndarray:
    """Replace label values by ``mapping``; values not in the map are kept unchanged.

    Sources are matched in the original ``labels``, so swaps such as ``{0: 1, 1: 0}`` work.

    Args:
        labels: integer array of any shape.
        mapping: source value -> target value.

    Returns:
        New array, same shape; dtype wide enough for the targets (at least ``labels.dtype``).
    """
    labels = np.asarray(labels)
    dtype = labels.dtype
    for value in mapping.values():
        dtype = np.promote_types(dtype, np.min_scalar_type(value))
    out = labels.astype(dtype, copy=True)
    for source, target in mapping.items():
        out[labels == source] = target
    return out


def _shifted_pairs(ndim: int):
    """For each axis and direction: (slice of pixels, slice of their neighbours)."""
    for axis in range(ndim):
        for here, there in ((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None))):
            a = [slice(None)] * ndim
            b = [slice(None)] * ndim
            a[axis], b[axis] = here, there
            yield tuple(a), tuple(b)


def instances_to_classes(
    labels: np.ndarray, *, boundary_width: int = 2, annotated_mask: np.ndarray | None = None
) -> np.ndarray:
    """Instance ids -> 3 classes: 0 background, 1 interior, 2 boundary.

    A pixel of an object is a boundary pixel when one of its 4-neighbours (2-D) has a different
    label, background included; the boundary is then widened inward, within the same object, to
    ``boundary_width`` pixels. Two touching objects are therefore separated by
    ``2 · boundary_width`` boundary pixels. The image edge is not a boundary, nor are neighbours
    outside ``annotated_mask`` (their labels are not vouched for). Objects thinner than
    ``2 · boundary_width`` become boundary only.

    Args:
        labels: (Y, X) non-negative integer instance ids, 0 = background.
        boundary_width: boundary thickness in pixels, >= 1.
        annotated_mask: optional (Y, X) bool; see above.

    Returns:
        (Y, X) uint8 classes.
    """
    labels = np.asarray(labels)
    if boundary_width < 1:
        raise ValueError(f"boundary_width must be >= 1, got {boundary_width}")
    known = np.ones(labels.shape, bool) if annotated_mask is None else np.asarray(annotated_mask)
    objects = labels != 0
    boundary = np.zeros(labels.shape, bool)
    for here, there in _shifted_pairs(labels.ndim):
        boundary[here] |= objects[here] & known[there] & (labels[here] != labels[there])
    for _ in range(boundary_width - 1):
        grown = boundary.copy()
        for here, there in _shifted_pairs(labels.ndim):
            grown[here] |= objects[here] & boundary[there] & (labels[here] == labels[there])
        boundary = grown
    classes = objects.astype(np.uint8)
    classes[boundary] = 2
    return classes


@dataclasses.dataclass(frozen=True)
class TargetConfig(Config):
    """How labels become targets.

    Attributes:
        task: ``binary`` (any non-zero label is foreground), ``semantic`` (labels are class ids),
            ``instances`` (labels are instance ids -> 3 classes); ``restoration`` has image
            targets and is refused by :func:`make_targets`.
        n_classes: for ``semantic``: the model's number of classes; larger ids are an error.
        boundary_width: boundary thickness for ``instances``.
        ignore_value: a raw label value (before ``label_map``) marking pixels to ignore, e.g. 255
            for a field-of-view mask; off by default because instance ids can be 255.
        label_map: ``((src, dst), ...)`` applied to the labels first, e.g. ``((0, 1), (255, 0))``.
        w0, sigma: U-Net border weight parameters.
        border_weights: add the border term; ``None`` = auto (on for instances only). For
            binary/semantic the objects are the connected regions of equal non-zero label.
        class_balance: inverse-frequency class weights ``w_c``; else ``w_c = 1``.
    """

    task: str = "semantic"
    n_classes: int | None = None
    boundary_width: int = 2
    ignore_value: int | None = None
    label_map: tuple[tuple[int, int], ...] | None = None
    w0: float = 10.0
    sigma: float = 5.0
    border_weights: bool | None = None
    class_balance: bool = True

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.n_classes is not None and self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2 for a semantic model, got {self.n_classes}")
        if self.boundary_width < 1:
            raise ValueError(f"boundary_width must be >= 1, got {self.boundary_width}")
        if self.w0 < 0 or self.sigma <= 0:
            raise ValueError(f"need w0 >= 0 and sigma > 0, got w0={self.w0}, sigma={self.sigma}")
        if self.label_map is not None:
            pairs = tuple(tuple(int(v) for v in pair) for pair in self.label_map)
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("label_map must be a sequence of (source, target) pairs")
            object.__setattr__(self, "label_map", pairs)

    @property
    def use_border_weights(self) -> bool:
        """The resolved ``border_weights`` (auto = instances only)."""
        return self.task == "instances" if self.border_weights is None else self.border_weights


@dataclasses.dataclass(frozen=True, eq=False)
class Targets:
    """Per-pixel training targets.

    Attributes:
        classes: (Y, X) int64 class ids, :data:`IGNORE_INDEX` where nothing may be learned.
        weights: (Y, X) float32 loss weights, 0 where ignored.
    """

    classes: np.ndarray
    weights: np.ndarray

    @property
    def annotated(self) -> np.ndarray:
        """(Y, X) bool: pixels that count in the loss."""
        return self.classes != IGNORE_INDEX

    def class_counts(self, n_classes: int = 0) -> np.ndarray:
        """(K,) int64 number of annotated pixels per class."""
        return np.bincount(self.classes[self.annotated], minlength=n_classes)


def _integer_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as int64, refusing non-integer floats and other dtypes."""
    labels = np.asarray(labels)
    if labels.dtype == bool or np.issubdtype(labels.dtype, np.integer):
        return labels.astype(np.int64, copy=False)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise TrainingDataError(
                f"the labels are {labels.dtype} with non-integer or non-finite values; labels "
                "must hold whole class or instance ids (save them as an integer image, not a "
                "probability map or an interpolated/resized image)"
            )
        return labels.astype(np.int64)
    raise TrainingDataError(
        f"labels of dtype {labels.dtype} cannot be used; give an integer label image"
    )


def make_targets(
    labels: np.ndarray,
    annotated_mask: np.ndarray | None = None,
    *,
    config: TargetConfig | None = None,
    task: str | None = None,
) -> Targets:
    """Build class targets and the loss weight map from ``labels`` and ``annotated_mask``.

    Args:
        labels: (Y, X) integer (or integer-valued float) labels, 0 = background.
        annotated_mask: (Y, X) bool, the pixels the user vouches for; ``None`` = all.
        config: the settings; default ``TargetConfig(task=task)``.
        task: shorthand when no ``config`` is given (must agree with ``config.task`` if both).

    Returns:
        :class:`Targets` with int64 ``classes`` (binary 0/1, semantic class ids, instances
        0/1/2; :data:`IGNORE_INDEX` outside the mask and at ``ignore_value``) and float32
        ``weights`` (``w_c`` + optional border term, 0 where ignored).

    Raises:
        TrainingDataError: non-integer or negative labels, mask/label shape mismatch, nothing
            annotated, or (semantic) a class id >= ``n_classes``.
        ValueError: ``task == "restoration"`` (its targets are images) or conflicting task.
    """
    if config is None:
        config = TargetConfig(task=task or "semantic")
    elif task is not None and task != config.task:
        raise ValueError(f"task {task!r} disagrees with config.task {config.task!r}")
    if config.task == "restoration":
        raise ValueError("restoration targets are images, not labels; use them as they are")
    raw = _integer_labels(labels)
    if annotated_mask is None:
        valid = np.ones(raw.shape, dtype=bool)
    else:
        valid = np.asarray(annotated_mask).astype(bool, copy=True)
        if valid.shape != raw.shape:
            raise TrainingDataError(
                f"the annotated mask has shape {valid.shape} but the labels have shape "
                f"{raw.shape}; paint the mask on the same image as the labels"
            )
    if config.ignore_value is not None:
        valid &= raw != config.ignore_value
    if not valid.any():
        raise TrainingDataError(
            "nothing is annotated: the annotated mask is empty (or every annotated pixel has the "
            "ignore value); mark at least one corrected region before training"
        )
    mapped = apply_label_map(raw, dict(config.label_map)) if config.label_map else raw
    mapped = np.where(valid, mapped, 0).astype(np.int64, copy=False)
    if mapped.min() < 0:
        raise TrainingDataError(
            f"the labels contain negative values (down to {mapped.min()}); use 0 for background "
            "and positive ids for classes or objects (or map them with a label map)"
        )
    border = config.use_border_weights
    if config.task == "binary":
        classes = (mapped > 0).astype(np.int64)
        objects = connected_components(classes, connectivity=1) if border else None
    elif config.task == "semantic":
        top = int(mapped.max())
        if config.n_classes is not None and top >= config.n_classes:
            raise TrainingDataError(
                f"the labels contain class id {top} but the model has {config.n_classes} classes "
                f"(ids 0..{config.n_classes - 1}); fix the labels, map them with a label map, or "
                "train a model with more classes"
            )
        classes = mapped
        objects = connected_components(mapped, background=0, connectivity=1) if border else None
    else:
        classes = instances_to_classes(
            mapped, boundary_width=config.boundary_width, annotated_mask=valid
        ).astype(np.int64)
        objects = mapped if border else None
    classes[~valid] = IGNORE_INDEX
    class_weights = "balanced" if config.class_balance else None
    weights = border_weight_map(
        np.zeros_like(classes) if objects is None else objects,
        valid,
        w0=0.0 if objects is None else config.w0,
        sigma=config.sigma,
        class_weights=class_weights,
        classes=classes,
    )
    logger.debug("targets: %d annotated pixels of %d", int(valid.sum()), valid.size)
    return Targets(classes=classes, weights=weights)
