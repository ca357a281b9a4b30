"""Validation during training: metrics on the held-back annotated tiles.

The held-back tiles are cut into fixed windows once (:meth:`PatchSampler.validation_batches`);
each validation runs the model on them in eval mode and accumulates a confusion matrix over the
annotated pixels only. ``metrics["score"]`` is what "best" means (higher is better):

- ``binary`` / ``semantic``: foreground IoU (mean over the foreground classes),
- ``instances``: mean IoU over the three classes (background, interior, boundary), so the
  boundaries that separate touching objects count,
- ``restoration``: minus the validation loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_unet.core.training.sampler import PatchBatch
from napari_unet.core.training.scaled_pool import at_pool_scale
from napari_unet.core.training.targets import IGNORE_INDEX

logger = logging.getLogger(__name__)


def confusion_matrix(logits: torch.Tensor, classes: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(K, K) int64 counts ``[true, predicted]`` over pixels whose class is not ignored.

    Args:
        logits: (B, K, h, w) (binary: K = 1, thresholded at 0).
        classes: (B, h, w) int64 with IGNORE_INDEX where nothing counts.
        n_classes: K (2 for binary).
    """
    if logits.shape[1] == 1:
        predicted = (logits[:, 0] > 0).long()
    else:
        predicted = logits.argmax(dim=1)
    valid = classes != IGNORE_INDEX
    index = classes[valid] * n_classes + predicted[valid]
    return torch.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def metrics_from_confusion(confusion: np.ndarray, task: str) -> dict[str, float]:
    """IoU per class, mean and foreground IoU, pixel accuracy, and the selection ``score``."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    present = union > 0
    iou = np.divide(true_positive, union, out=np.ones_like(true_positive), where=present)
    metrics = {f"iou_{k}": float(v) for k, v in enumerate(iou)}
    metrics["mean_iou"] = float(iou[present].mean()) if present.any() else 1.0
    foreground = present.copy()
    foreground[0] = False
    metrics["foreground_iou"] = float(iou[foreground].mean()) if foreground.any() else 1.0
    total = confusion.sum()
    metrics["pixel_accuracy"] = float(true_positive.sum() / total) if total else 1.0
    metrics["score"] = metrics["mean_iou" if task == "instances" else "foreground_iou"]
    return metrics


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Sequence[PatchBatch],
    *,
    task: str,
    loss_fn: Callable[..., torch.Tensor],
    device: torch.device,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on fixed validation batches (model left in the mode it had).

    Args:
        model: the network; ``forward`` (default ``model``) maps an image batch to logits.
        batches: windows of the held-back tiles, targets at the output size (of a model that
            sees the images ``k`` times smaller: ``k`` times smaller, run without its resize).
        task: the model task (selects the metrics and ``score``).
        loss_fn: the training loss, reported as ``loss`` (weighted mean over the batches).
        device: where the model lives.
    """
    forward = forward or model
    was_training = model.training
    model.eval()
    n_classes = 2 if task == "binary" else None
    confusion = None
    loss_sum, weight_sum = 0.0, 0.0
    try:
        for batch in batches:
            image = torch.from_numpy(batch.image).to(device)
            classes = torch.from_numpy(batch.classes).to(device)
            weights = torch.from_numpy(batch.weights).to(device)
            with at_pool_scale(model):  # a model seeing the images smaller: batches so too
                logits = forward(image).float()
            mass = float(weights.sum())
            loss_sum += float(loss_fn(logits, classes, weights)) * mass
            weight_sum += mass
            if task == "restoration":
                continue
            k = n_classes or logits.shape[1]
            counts = confusion_matrix(logits, classes, k).cpu().numpy()
            confusion = counts if confusion is None else confusion + counts
    finally:
        model.train(was_training)
    loss = loss_sum / weight_sum if weight_sum else float("nan")
    if task == "restoration":
        return {"loss": loss, "score": -loss}
    metrics = metrics_from_confusion(confusion, task) if confusion is not None else {}
    metrics["loss"] = loss
    return metrics


def pool_metrics(model: torch.nn.Module, validation, config) -> dict[str, float] | None:
    """The loop's validation metrics of ``model`` on a validation pool (``build_pools``' second
    value), as :func:`evaluate` gives them with ``config``'s loss; None when the pool yields no
    batch. The model is left on the CPU."""
    from napari_unet.core.device import get_device
    from napari_unet.core.training.losses import SegmentationLoss

    batches = validation.validation_batches(config.batch_size)
    if not batches:
        return None
    device = get_device(config.device)
    model.to(device)
    loss_fn = SegmentationLoss(config.loss, config.task)
    metrics = evaluate(model, batches, task=config.task, loss_fn=loss_fn, device=device)
    model.to("cpu")
    return metrics
