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
from napari_unet.core.errors import TrainingDataError
from napari_unet.core.training.instance_classes import instances_to_classes
from napari_unet.core.training.label_map import LabelMap, apply_label_map, parse_label_map
from napari_unet.core.training.weightmap import border_weight_map, class_balance_weights

__all__ = [
    "AUTO_CLASS_BALANCE",
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

#: ``TargetConfig.class_balance = None`` per task (``True`` for tasks not listed). Instances take
#: the square root of the inverse-frequency weights: where objects are rare (2 % of the pixels in
#: grey bright-field or a 3-D embryo stack) the full weights make the interior ~75x and the
#: boundary ~130x a background pixel, and a net trained minutes on them paints every doubtful pixel
#: foreground (docs/learning_ablation.md, session 23).
AUTO_CLASS_BALANCE: dict[str, bool | str] = {"instances": "sqrt"}


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
        class_balance: class weights ``w_c``: ``True`` = inverse frequency, ``"sqrt"`` = its
            square root (both rescaled to mean 1 over the annotated pixels), ``False`` =
            ``w_c = 1``; ``None`` = auto (:data:`AUTO_CLASS_BALANCE` of the task).
    """

    task: str = "semantic"
    n_classes: int | None = None
    boundary_width: int = 2
    ignore_value: int | None = None
    label_map: tuple[tuple[int, int], ...] | None = None
    w0: float = 10.0
    sigma: float = 5.0
    border_weights: bool | None = None
    class_balance: bool | str | None = None

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.class_balance not in (None, True, False, "sqrt"):
            raise ValueError(
                f"class_balance must be True, False, 'sqrt' or None, got {self.class_balance!r}"
            )
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

    @property
    def resolved_class_balance(self) -> bool | str:
        """The resolved ``class_balance`` (auto: :data:`AUTO_CLASS_BALANCE` of the task)."""
        if self.class_balance is None:
            return AUTO_CLASS_BALANCE.get(self.task, True)
        return self.class_balance


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
    valid = _valid_pixels(raw, annotated_mask, config)
    mapped = apply_label_map(raw, dict(config.label_map)) if config.label_map else raw
    mapped = np.where(valid, mapped, 0).astype(np.int64, copy=False)
    if mapped.min() < 0:
        raise TrainingDataError(
            f"the labels contain negative values (down to {mapped.min()}); use 0 for background "
            "and positive ids for classes or objects (or map them with a label map)"
        )
    classes, objects = _classes_and_objects(mapped, valid, config)
    classes[~valid] = IGNORE_INDEX
    weights = border_weight_map(
        np.zeros_like(classes) if objects is None else objects,
        valid,
        w0=0.0 if objects is None else config.w0,
        sigma=config.sigma,
        class_weights=_class_weights(classes, valid, config.resolved_class_balance),
        classes=classes,
    )
    logger.debug("targets: %d annotated pixels of %d", int(valid.sum()), valid.size)
    return Targets(classes=classes, weights=weights)


def _valid_pixels(
    raw: np.ndarray, annotated_mask: np.ndarray | None, config: TargetConfig
) -> np.ndarray:
    """(Y, X) bool: annotated pixels without the ignore value.

    Raises:
        TrainingDataError: the mask's shape differs from the labels', or nothing is left.
    """
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
    return valid


def _classes_and_objects(
    mapped: np.ndarray, valid: np.ndarray, config: TargetConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """(Y, X) int64 class ids and the objects of the border term (None without it).

    Raises:
        TrainingDataError: a semantic class id >= ``config.n_classes``.
    """
    border = config.use_border_weights
    if config.task == "binary":
        classes = (mapped > 0).astype(np.int64)
        return classes, connected_components(classes, connectivity=1) if border else None
    if config.task == "semantic":
        top = int(mapped.max())
        if config.n_classes is not None and top >= config.n_classes:
            raise TrainingDataError(
                f"the labels contain class id {top} but the model has {config.n_classes} classes "
                f"(ids 0..{config.n_classes - 1}); fix the labels, map them with a label map, or "
                "train a model with more classes"
            )
        objects = connected_components(mapped, background=0, connectivity=1) if border else None
        return mapped, objects
    classes = instances_to_classes(
        mapped, boundary_width=config.boundary_width, annotated_mask=valid
    ).astype(np.int64)
    return classes, mapped if border else None


def _class_weights(
    classes: np.ndarray, valid: np.ndarray, balance: bool | str
) -> np.ndarray | str | None:
    """The ``class_weights`` argument of :func:`border_weight_map` for ``balance``.

    ``"sqrt"``: square roots of the inverse-frequency weights, rescaled to mean 1 over the
    annotated pixels (as the inverse-frequency weights are).
    """
    if balance != "sqrt":
        return "balanced" if balance else None
    table = np.sqrt(class_balance_weights(classes, valid))
    counted = classes[valid & (classes >= 0)]
    mean = float(table[counted].mean()) if counted.size else 1.0
    return table / mean if mean > 0 else table
