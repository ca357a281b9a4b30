"""Fine-tuning: (image, labels, annotated_mask) -> targets and weight maps -> sampled,
augmented patches -> loss -> a trained model, as a generator of typed events.

Names from modules that import torch are loaded on first use, so that importing this
package (or one of its torch-free modules) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_unet.core.lazy_exports import lazy_getattr
from napari_unet.core.training.items import (
    TargetsFn,
    TrainingItem,
    check_item,
    crop_targets,
    mirror_index,
    window_start,
)
from napari_unet.core.training.sampler import (
    MAX_CLASSES,
    PatchBatch,
    PatchSampler,
    label_values,
    looks_like_instances,
    semantic_class_count,
)
from napari_unet.core.training.split import iter_validation_windows, split_validation
from napari_unet.core.training.targets import (
    IGNORE_INDEX,
    LabelMap,
    TargetConfig,
    Targets,
    apply_label_map,
    instances_to_classes,
    make_targets,
    parse_label_map,
)
from napari_unet.core.training.weightmap import (
    ClassWeights,
    border_term,
    border_weight_map,
    brute_force_weight_map,
    class_balance_weights,
    cutoff_radius,
)

if TYPE_CHECKING:
    from napari_unet.core.training.augment import augment_batch, augment_restoration
    from napari_unet.core.training.config import (
        OPTIMIZERS,
        SCHEDULES,
        AugmentConfig,
        CheckpointEvent,
        LossConfig,
        StepEvent,
        TrainConfig,
        TrainEvent,
        TrainResult,
        ValidationEvent,
    )
    from napari_unet.core.training.loop import iter_train, train
    from napari_unet.core.training.losses import (
        SegmentationLoss,
        bce_log_jaccard_loss,
        log_jaccard_loss,
        regression_loss,
        soft_dice_loss,
        weighted_cross_entropy,
    )
    from napari_unet.core.training.schedule import LearningRateSchedule, build_optimizer
    from napari_unet.core.training.validation import (
        confusion_matrix,
        evaluate,
        metrics_from_confusion,
    )

_LAZY = {
    "OPTIMIZERS": "napari_unet.core.training.config",
    "SCHEDULES": "napari_unet.core.training.config",
    "AugmentConfig": "napari_unet.core.training.config",
    "CheckpointEvent": "napari_unet.core.training.config",
    "LearningRateSchedule": "napari_unet.core.training.schedule",
    "LossConfig": "napari_unet.core.training.config",
    "SegmentationLoss": "napari_unet.core.training.losses",
    "StepEvent": "napari_unet.core.training.config",
    "TrainConfig": "napari_unet.core.training.config",
    "TrainEvent": "napari_unet.core.training.config",
    "TrainResult": "napari_unet.core.training.config",
    "ValidationEvent": "napari_unet.core.training.config",
    "augment_batch": "napari_unet.core.training.augment",
    "augment_restoration": "napari_unet.core.training.augment",
    "bce_log_jaccard_loss": "napari_unet.core.training.losses",
    "build_optimizer": "napari_unet.core.training.schedule",
    "confusion_matrix": "napari_unet.core.training.validation",
    "evaluate": "napari_unet.core.training.validation",
    "iter_train": "napari_unet.core.training.loop",
    "log_jaccard_loss": "napari_unet.core.training.losses",
    "metrics_from_confusion": "napari_unet.core.training.validation",
    "regression_loss": "napari_unet.core.training.losses",
    "soft_dice_loss": "napari_unet.core.training.losses",
    "train": "napari_unet.core.training.loop",
    "weighted_cross_entropy": "napari_unet.core.training.losses",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


__all__ = [
    "IGNORE_INDEX",
    "MAX_CLASSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "AugmentConfig",
    "CheckpointEvent",
    "ClassWeights",
    "LabelMap",
    "LearningRateSchedule",
    "LossConfig",
    "PatchBatch",
    "PatchSampler",
    "SegmentationLoss",
    "StepEvent",
    "TargetConfig",
    "Targets",
    "TargetsFn",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "TrainingItem",
    "ValidationEvent",
    "apply_label_map",
    "augment_batch",
    "augment_restoration",
    "bce_log_jaccard_loss",
    "border_term",
    "border_weight_map",
    "brute_force_weight_map",
    "build_optimizer",
    "check_item",
    "class_balance_weights",
    "confusion_matrix",
    "crop_targets",
    "cutoff_radius",
    "evaluate",
    "instances_to_classes",
    "iter_train",
    "iter_validation_windows",
    "label_values",
    "log_jaccard_loss",
    "looks_like_instances",
    "make_targets",
    "metrics_from_confusion",
    "mirror_index",
    "parse_label_map",
    "regression_loss",
    "semantic_class_count",
    "soft_dice_loss",
    "split_validation",
    "train",
    "weighted_cross_entropy",
    "window_start",
]
