"""Pieces of the simulated human-in-the-loop experiment: the split, the effort, the means.

- :func:`plan_split`: seeded order of images to correct, and the held-out images (disjoint).
- :func:`correction_effort`: how much of a prediction a user would have to change to reach the
  truth. Semantic/binary: ``pixels`` = pixels whose class differs, ``objects`` = the 8-connected
  regions of those pixels (one stroke each). Instances: predicted objects matched one-to-one at
  IoU >= 0.5 take their true id; ``pixels`` = pixels whose (matched) id differs, ``objects`` =
  FP + FN (objects to delete plus objects to draw; a badly drawn one counts as both).
- :func:`mean_metrics`: NaN-skipping mean of per-image metric dicts.
- :func:`predict_labels`: labels of a normalised image; :func:`new_model_for`: a fresh model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from napari_unet.core.errors import UserInputError
from napari_unet.core.inference.normalization import NormalizationConfig
from napari_unet.core.training.items import TrainingItem

logger = logging.getLogger(__name__)


def plan_split(
    n_images: int, *, n_corrected: int, n_eval: int, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded order of images to correct and the held-out images (disjoint index lists).

    Raises:
        UserInputError: fewer images than ``n_corrected + n_eval``.
    """
    if n_corrected + n_eval > n_images:
        raise UserInputError(
            f"{n_images} image(s) cannot give {n_corrected} to correct and {n_eval} held out; "
            "use fewer rounds, fewer images per round or fewer evaluation images."
        )
    order = np.random.default_rng(seed).permutation(n_images).tolist()
    return order[:n_corrected], order[n_images - n_eval :]


def mapped_truth(truth: np.ndarray, label_map: dict[int, int] | None) -> np.ndarray:
    """``truth`` as int64 with ``label_map`` applied."""
    from napari_unet.core.training.targets import apply_label_map

    truth = np.asarray(truth).astype(np.int64)
    return apply_label_map(truth, label_map) if label_map else truth


def correction_effort(pred_labels: np.ndarray, truth: np.ndarray, *, task: str) -> tuple[int, int]:
    """``(pixels_corrected, objects_corrected)`` to turn a prediction into ``truth`` (module doc).

    Args:
        pred_labels: (Y, X) predicted class ids (binary/semantic) or instance ids.
        truth: (Y, X) label-mapped ground truth of the same kind.
        task: ``binary``, ``semantic`` or ``instances``.
    """
    pred = np.asarray(pred_labels).astype(np.int64)
    truth = np.asarray(truth).astype(np.int64)
    if task == "binary":
        wrong = (pred > 0) != (truth > 0)
    elif task == "semantic":
        wrong = pred != truth
    else:
        from napari_unet.core.evaluation.metrics import matching

        match = matching(pred, truth, 0.5)
        lut = np.full(int(pred.max(initial=0)) + 1, -1, dtype=np.int64)
        lut[0] = 0
        lut[match.pairs[:, 0]] = match.pairs[:, 1]
        relabelled = lut[pred]  # unmatched predicted objects: -1 (never equal to a true id)
        wrong = relabelled != truth
        return int(wrong.sum()), int(match.fp + match.fn)
    _, regions = ndimage.label(wrong, structure=np.ones((3, 3), dtype=bool))
    return int(wrong.sum()), int(regions)


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per-key mean over ``rows``, skipping NaN values (NaN where every value is NaN)."""
    keys = dict.fromkeys(k for row in rows for k in row)
    means = {}
    for key in keys:
        values = [float(r[key]) for r in rows if key in r and math.isfinite(float(r[key]))]
        means[key] = float(np.mean(values)) if values else float("nan")
    return means


def predict_labels(
    model: Any, image: np.ndarray, config: Any, postprocess: Any = None
) -> np.ndarray:
    """(Y, X) labels of a normalised (C, Y, X) float32 image made with ``postprocess`` (the
    model's own; default: ``config.postprocess_config``); distance seeds take the model's
    distance channel (:func:`~napari_unet.core.models.aux.labelling_net`)."""
    from napari_unet.core.inference.prediction import predict
    from napari_unet.core.models.aux import labelling_net
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    postprocess = postprocess or config.postprocess_config
    probabilities = predict(
        labelling_net(model, postprocess),
        image,
        "CYX",
        task=config.task,
        normalization=NormalizationConfig(mode="none"),
        config=config.predict,
    )
    return labels_from_probabilities(probabilities, task=config.task, config=postprocess)


def new_model_for(
    arch: str,
    items: Sequence[TrainingItem],
    task: str,
    *,
    label_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
    seed: int = 0,
    **model_config: Any,
) -> Any:
    """A freshly initialised (seeded) model with in/out channels from the data.

    The one place a new model is built from labels (``train``, ``simulate`` and the API).
    Output channels: 1 (binary), 3 (instances), the target's channels (restoration), or the
    largest mapped annotated class id + 1 (semantic, at most
    :data:`~napari_unet.core.training.sampler.MAX_CLASSES`).

    Args:
        arch: registry name of the architecture.
        items: the training items; images (C, Y, X), labels (Y, X) ((C', Y, X) restoration).
        task: ``binary``, ``semantic``, ``instances`` or ``restoration``.
        label_map: raw label value -> class id (semantic).
        ignore_value: a raw label value that marks pixels to skip (semantic).
        seed: seeds the initial weights.
        **model_config: further keyword arguments of ``build_model`` (depth, base_channels, ...).

    Raises:
        TrainingDataError: semantic labels whose values would need more than ``MAX_CLASSES``
            classes (e.g. a label 70000: the message lists the values and what to do), or
            labels that cannot be trained on.
    """
    import torch

    from napari_unet.core.models import build_model
    from napari_unet.core.training.sampler import semantic_class_count

    in_channels = int(items[0].image.shape[0])
    if task == "binary":
        out_channels = 1
    elif task == "instances":
        out_channels = 3
    elif task == "restoration":
        out_channels = int(np.reshape(items[0].labels, (-1, *items[0].spatial_shape)).shape[0])
    else:
        out_channels = semantic_class_count(items, ignore_value=ignore_value, label_map=label_map)
    torch.manual_seed(seed)
    return build_model(arch, in_channels=in_channels, out_channels=out_channels, **model_config)
