"""The membrane operating point of ``train_builtin.py --tune`` (and where a point was chosen)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from builtin_recipes import RECIPES

from napari_unet.core.io.images import read_image

logger = logging.getLogger("train_builtin")


def membrane_bias_shift(model, class_index: int, threshold: float) -> None:
    """Fold a probability threshold for class ``class_index`` (2-class softmax) into the net.

    Subtracting ``logit(threshold)`` from that class's output bias makes the argmax (what the
    semantic output uses) equal ``p >= threshold`` of the trained model.
    """
    with torch.no_grad():
        model.outc.bias[class_index] -= float(np.log(threshold / (1.0 - threshold)))


def chosen_on(kind: str, files: list[str], held_out: bool) -> str:
    """Where an operating point was chosen, for the card: ``kind`` is "slices" or "images"."""
    if not held_out:
        return "the training split"
    return (
        f"training {kind} {', '.join(files)} predicted by a calibration fold trained without them"
    )


def tune_membrane_threshold(
    name: str, model, data_dir: Path, files: list[str], *, held_out: bool = False
) -> dict:
    """Pick the membrane probability threshold on training-split ``files`` (pixel + Rand error).

    ``held_out``: ``files`` were left out of ``model``'s training (a calibration fold, see
    ``--holdout``); otherwise ``model`` was trained on them and the choice is biased towards
    thin membranes (an over-fitted network is sure of its training membranes).
    """
    from napari_unet.core.evaluation.metrics import em_region_scores, pixel_error
    from napari_unet.core.inference.prediction import PredictConfig, predict

    folder = data_dir / RECIPES[name]["folder"]
    candidates = [round(t, 2) for t in np.arange(0.2, 0.91, 0.05)]
    scores = {t: [] for t in candidates}
    for file in files:
        image = read_image(folder / "images" / file).image
        truth = read_image(folder / "labels" / file).image == 0  # membrane
        membrane = predict(model, image, "YX", task="semantic", config=PredictConfig(device="cpu"))[
            1
        ]
        for t in candidates:
            pred = membrane >= t
            rand = em_region_scores(pred, truth)["rand_error"]
            scores[t].append((pixel_error(pred, truth), rand))
    table = {t: np.mean(v, axis=0).tolist() for t, v in scores.items()}
    best = min(candidates, key=lambda t: sum(table[t]))
    logger.info("membrane threshold on the training split: %s (%s)", best, table[best])
    where = chosen_on("slices", files, held_out)
    return {
        "membrane_threshold": best,
        "how": f"chosen on {where} (min of pixel error + Rand error), folded into the "
        "output bias so that the argmax equals p_membrane >= threshold",
        "held_out": held_out,
        "training_split_scores": {
            str(t): dict(zip(("pixel_error", "rand_error"), table[t], strict=True))
            for t in candidates
        },
    }
