"""How far the ISBI 2012 ground truth is from itself moved by one pixel, in the issue's pixel error.

The built-in ``em-membranes`` target is a pixel error (1 − F1 of membrane pixels) ≤ 0.08 on
slices 25–29. Membranes are thin (about 20 % of the pixels, a few pixels wide), so this metric is
dominated by boundary placement. This script measures, on the same five validation slices:

- the pixel error between the ground truth and the ground truth **dilated, eroded or shifted by
  one pixel** (what an annotator drawing the same membranes one pixel off would score);
- for the shipped model: 1 − F1 of membrane (the target's metric), 1 − F1 of the *interior*
  class, the fraction of misclassified pixels, and the best membrane F1 over probability
  thresholds (pooled over the slices; an upper bound the fixed operating point cannot beat).

Usage::

    python scripts/isbi_pixel_error_floor.py [--data ../shared/data] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_unet.core.checkpoint.format import BUILTIN_DIR, load_checkpoint
from napari_unet.core.evaluation.metrics import best_threshold, pixel_error, pixel_error_fraction
from napari_unet.core.inference.prediction import PredictConfig, predict
from napari_unet.core.io.images import read_image

logger = logging.getLogger("isbi_pixel_error_floor")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("NAPARI_UNET_DATA_DIR", REPO.parent / "shared" / "data"))
VALIDATION = range(25, 30)


def moved_by_one_pixel(truth: np.ndarray) -> dict[str, np.ndarray]:
    """(H, W) bool membrane mask -> the same mask dilated, eroded, and shifted by 1 px (4 ways)."""
    moved = {
        "dilated": ndimage.binary_dilation(truth),
        "eroded": ndimage.binary_erosion(truth, border_value=1),
    }
    for name, (dy, dx) in {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}.items():
        moved[f"shifted_{name}"] = np.roll(truth, (dy, dx), axis=(0, 1))
    return moved


def measure(data_dir: Path) -> dict:
    """The scores described in the module docstring, averaged over the validation slices."""
    folder = data_dir / "isbi2012"
    model = load_checkpoint(BUILTIN_DIR / "em-membranes.pt").model
    floor: dict[str, list[float]] = {}
    shipped: dict[str, list[float]] = {
        "pixel_error": [],
        "interior_pixel_error": [],
        "misclassified": [],
    }
    probabilities, truths = [], []
    for index in VALIDATION:
        image = read_image(folder / "images" / f"{index:02d}.png").image
        truth = read_image(folder / "labels" / f"{index:02d}.png").image == 0  # membrane
        for name, moved in moved_by_one_pixel(truth).items():
            floor.setdefault(name, []).append(pixel_error(moved, truth))
        membrane = predict(model, image, "YX", task="semantic", config=PredictConfig(device="cpu"))[
            1
        ]
        pred = membrane >= 0.5  # the semantic output: the argmax of the 2 classes
        shipped["pixel_error"].append(pixel_error(pred, truth))
        shipped["interior_pixel_error"].append(pixel_error(~pred, ~truth))
        shipped["misclassified"].append(pixel_error_fraction(pred, truth))
        probabilities.append(membrane)
        truths.append(truth)
    threshold, best = best_threshold(probabilities, truths, metric="pixel_error")
    result = {
        "slices": [f"{i:02d}.png" for i in VALIDATION],
        "truth_moved_by_one_pixel_pixel_error": _means(floor),
        "shipped_model": _means(shipped),
        "shipped_model_best_threshold": {
            "threshold": round(float(threshold), 2),
            "pooled_pixel_error": round(float(best), 4),
        },
    }
    result["truth_moved_by_one_pixel_mean"] = round(
        float(np.mean(list(result["truth_moved_by_one_pixel_pixel_error"].values()))), 4
    )
    return result


def _means(scores: dict[str, list[float]]) -> dict[str, float]:
    return {key: round(float(np.mean(values)), 4) for key, values in scores.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the data sets")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.data / "isbi2012" / "labels").is_dir():
        logger.error("no ISBI 2012 labels under %s; pass --data DIR", args.data)
        return 2
    result = measure(args.data)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    logger.info("%s", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
