"""Score predicted label images against ground truth: one pair, or two folders paired by name.

Semantic and binary tasks: the foreground is every class >= 1 (after the label map, which applies
to the truth only); ``iou``, ``dice``, ``pixel_error`` (1 - F1 of the foreground) and
``pixel_error_fraction`` are foreground pixel scores; ``pixel_error_background`` is 1 - F1 of the
background (class 0), which for EM (class 0 = cell interior) is the ISBI 2012 challenge's own
pixel error (its Fiji script counts the white interior as positive); ``rand_error`` and
``variation_of_information`` follow the EM membrane protocol (:func:`em_region_scores`: the
foreground is the membrane that separates regions). Semantic tasks add ``mean_iou`` over the
classes present and ``iou_class_<k>`` per class. Truth pixels with a negative value (e.g. a label
map ``255:-1``) are not scored.

Instance tasks: ``ap50``, ``ap75``, ``ap_50_95`` (DSB2018 AP = TP / (TP + FP + FN) with one-to-one
matching), ``f1_50``, ``precision_50``, ``recall_50``, ``matched_iou`` (mean IoU of the pairs
matched at 0.5), object counts, the foreground ``iou``/``dice`` and the adapted Rand error / VI of
the instances (true background not scored).

Folders: ``<stem>_labels.tif`` (what ``predict`` writes) pairs with ``<stem>.tif|.tiff|.png``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import UserInputError
from napari_unet.core.evaluation import metrics
from napari_unet.core.generators import run_to_end
from napari_unet.core.io.images import list_images, read_image
from napari_unet.core.training.targets import apply_label_map

logger = logging.getLogger(__name__)

#: Tasks that can be scored against label images.
EVALUATE_TASKS: tuple[str, ...] = ("binary", "semantic", "instances")
#: Suffixes of prediction files: ``<stem>_labels.tif``.
PRED_SUFFIXES: tuple[str, ...] = ("_labels.tif", "_labels.tiff")
#: AP thresholds averaged into ``ap_50_95``.
AP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _as_labels(array: np.ndarray, what: str) -> np.ndarray:
    """Integer view of a label image; floats are accepted only when every value is whole."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0):
        return array.astype(np.int64)
    raise UserInputError(
        f"the {what} holds {array.dtype} values that are not whole numbers; evaluate needs label "
        "images (class or instance ids), not probabilities."
    )


def _match_shapes(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != truth.shape and np.squeeze(pred).shape == np.squeeze(truth).shape:
        pred, truth = np.squeeze(pred), np.squeeze(truth)
    if pred.shape != truth.shape:
        raise UserInputError(
            f"the prediction has shape {pred.shape} but the truth has shape {truth.shape}; "
            "compare images of the same size."
        )
    return pred, truth


def _pixel_scores(pred: np.ndarray, truth: np.ndarray, scored: np.ndarray) -> dict[str, float]:
    """Foreground pixel scores over the scored pixels (foreground = value >= 1)."""
    pred_fg, truth_fg = pred[scored] >= 1, truth[scored] >= 1
    return {
        "iou": metrics.iou(pred_fg, truth_fg),
        "dice": metrics.dice(pred_fg, truth_fg),
        "pixel_error": metrics.pixel_error(pred_fg, truth_fg),
        "pixel_error_fraction": metrics.pixel_error_fraction(pred_fg, truth_fg),
        "pixel_error_background": metrics.pixel_error(~pred_fg, ~truth_fg),
    }


def _semantic_scores(pred: np.ndarray, truth: np.ndarray, task: str) -> dict[str, float]:
    scored = truth >= 0
    if pred.min(initial=0) < 0:
        raise UserInputError("the prediction holds negative class ids; pass a label image.")
    result = _pixel_scores(pred, truth, scored)
    # unscored truth counts as membrane: it separates regions and is itself not scored
    region = metrics.em_region_scores(pred >= 1, (truth >= 1) | ~scored)
    result["rand_error"] = region["rand_error"]
    result["variation_of_information"] = region["variation_of_information"]
    if task == "semantic":
        n_classes = int(max(pred.max(initial=0), truth.max(initial=0))) + 1
        per_class = metrics.iou_per_class(pred[scored], truth[scored], n_classes)
        result["mean_iou"] = float(np.nanmean(per_class))
        result["pixel_error_fraction"] = metrics.pixel_error_fraction(pred[scored], truth[scored])
        for k, value in enumerate(per_class):
            if not math.isnan(value):
                result[f"iou_class_{k}"] = float(value)
    return result


def _instance_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    if pred.min(initial=0) < 0 or truth.min(initial=0) < 0:
        raise UserInputError("instance labels must be >= 0 (0 = background); map them first.")
    matches = metrics.matching_at(pred, truth, AP_THRESHOLDS)
    at50, at75 = matches[0.5], matches[0.75]
    result = {
        "ap50": at50.accuracy,
        "ap75": at75.accuracy,
        "ap_50_95": float(np.mean([m.accuracy for m in matches.values()])),
        "f1_50": at50.f1,
        "precision_50": at50.precision,
        "recall_50": at50.recall,
        "matched_iou": at50.mean_matched_iou,
        "n_true": float(at50.n_true),
        "n_pred": float(at50.n_pred),
    }
    result.update(_pixel_scores(pred, truth, np.ones(truth.shape, dtype=bool)))
    result["rand_error"] = metrics.rand_error(pred, truth)
    result["variation_of_information"] = metrics.variation_of_information(pred, truth)
    return result


def evaluate_pair(
    pred_labels: np.ndarray,
    truth: np.ndarray,
    *,
    task: str,
    label_map: dict[int, int] | None = None,
) -> dict[str, float]:
    """Metrics of one predicted label image against its ground truth.

    Args:
        pred_labels: (*spatial) integer labels as written by ``predict`` (class ids for
            binary/semantic, instance ids for instances).
        truth: (*spatial) integer ground truth, same shape (singleton axes are squeezed).
        task: ``"binary"``, ``"semantic"`` or ``"instances"``.
        label_map: source -> target values applied to ``truth`` only (e.g. ISBI ``{0: 1, 255: 0}``).

    Returns:
        ``{metric name: value}``; see the module docstring for the keys. Values may be NaN when a
        score is undefined (e.g. Rand error of an image without any scored region).

    Raises:
        UserInputError: unknown task, shapes differ, or an input is not a label image.
    """
    if task not in EVALUATE_TASKS:
        raise UserInputError(
            f"cannot evaluate task {task!r}; use one of {', '.join(EVALUATE_TASKS)}."
        )
    pred = _as_labels(pred_labels, "prediction")
    truth = _as_labels(truth, "ground truth")
    if label_map:
        truth = apply_label_map(truth, label_map)
    pred, truth = _match_shapes(pred, truth)
    if task == "instances":
        return _instance_scores(pred, truth)
    return _semantic_scores(pred, truth, task)


@dataclasses.dataclass(frozen=True)
class EvaluateProgress:
    """One image scored: ``done`` of ``total``, and its name."""

    done: int
    total: int
    name: str


def pair_files(
    pred_dir: str | os.PathLike, truth_dir: str | os.PathLike
) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pair ``<stem>_labels.tif`` predictions with ``<stem>.*`` truth files.

    Returns:
        ``(pairs, predictions without truth, truth without prediction)``; pairs are
        ``(stem, prediction path, truth path)`` sorted by stem.

    Raises:
        UserInputError: a folder is missing, or two truth files share a stem.
    """
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    predictions: dict[str, Path] = {}
    for path in list_images(pred_dir):
        for suffix in PRED_SUFFIXES:
            if path.name.lower().endswith(suffix):
                predictions[path.name[: -len(suffix)]] = path
    truths: dict[str, Path] = {}
    for path in list_images(truth_dir):
        if path.stem in truths:
            raise UserInputError(
                f"two ground-truth files are named {path.stem!r} ({truths[path.stem].name} and "
                f"{path.name}) in {truth_dir}; keep one of them."
            )
        truths[path.stem] = path
    pairs = [(s, predictions[s], truths[s]) for s in sorted(predictions) if s in truths]
    lonely_pred = sorted(predictions[s].name for s in predictions if s not in truths)
    lonely_truth = sorted(truths[s].name for s in truths if s not in predictions)
    return pairs, lonely_pred, lonely_truth


def _json_value(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _mean(per_image: list[dict[str, Any]]) -> dict[str, float | None]:
    keys: dict[str, None] = {}
    for row in per_image:
        keys.update(dict.fromkeys(k for k in row if k != "name"))
    mean: dict[str, float | None] = {}
    for key in keys:
        values = [row[key] for row in per_image if row.get(key) is not None]
        mean[key] = float(np.mean(values)) if values else None
    return mean


def iter_evaluate_folders(
    pred_dir: str | os.PathLike,
    truth_dir: str | os.PathLike,
    *,
    task: str,
    label_map: dict[int, int] | None = None,
) -> Generator[EvaluateProgress, None, dict[str, Any]]:
    """Score every pair of the two folders; yields progress, returns the JSON-ready result.

    Returns:
        ``{"per_image": [{"name": stem, metric: value, ...}, ...], "mean": {metric: value},
        "unpaired": {"predictions": [...], "truth": [...]}}``; undefined values are ``None``.
        ``mean`` averages each metric over the images where it is defined.

    Raises:
        UserInputError: no prediction pairs with a truth file, or an evaluate_pair error.
    """
    pairs, lonely_pred, lonely_truth = pair_files(pred_dir, truth_dir)
    if lonely_pred:
        logger.warning("no ground truth for %d prediction(s): %s", len(lonely_pred), lonely_pred)
    if lonely_truth:
        logger.warning("no prediction for %d truth file(s): %s", len(lonely_truth), lonely_truth)
    if not pairs:
        raise UserInputError(
            f"no prediction in {pred_dir} pairs with a ground-truth file in {truth_dir}; name "
            "predictions <stem>_labels.tif and the truth <stem>.tif, .tiff or .png."
        )
    per_image: list[dict[str, Any]] = []
    for done, (stem, pred_path, truth_path) in enumerate(pairs, start=1):
        try:
            scores = evaluate_pair(
                read_image(pred_path).image,
                read_image(truth_path).image,
                task=task,
                label_map=label_map,
            )
        except UserInputError as err:
            raise type(err)(f"{stem}: {err}") from err
        per_image.append({"name": stem, **{k: _json_value(v) for k, v in scores.items()}})
        yield EvaluateProgress(done=done, total=len(pairs), name=stem)
    return {
        "per_image": per_image,
        "mean": _mean(per_image),
        "unpaired": {"predictions": lonely_pred, "truth": lonely_truth},
    }


def evaluate_folders(
    pred_dir: str | os.PathLike,
    truth_dir: str | os.PathLike,
    *,
    task: str,
    label_map: dict[int, int] | None = None,
) -> dict[str, Any]:
    """:func:`iter_evaluate_folders` run to the end; returns its result."""
    return run_to_end(iter_evaluate_folders(pred_dir, truth_dir, task=task, label_map=label_map))
