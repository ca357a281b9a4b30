"""Reproduce a built-in model: train it on its data set, evaluate it, write it with its card.

Usage::

    python scripts/train_builtin.py em-membranes --minutes 40
    python scripts/train_builtin.py fluo-nuclei --minutes 40 --threads 1
    python scripts/train_builtin.py NAME --card-only   # re-evaluate an existing checkpoint

Each model has a fixed seed, split and recipe (:data:`RECIPES`). Training uses the training split
only, with a fixed budget and no validation-based selection (the final weights are kept). The
validation split is then predicted and scored with the same code as ``napari-unet-loop predict``
and ``napari-unet-loop evaluate`` (the CLI entry point is called), the scores go to
``docs/results/builtin_<name>.json`` and, with the data source, licence, split, recipe, machine and
training time, into the checkpoint's ``provenance["card"]``. Weights are stored as float16.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from builtin_cards import build_card, machine, resumed_phases, write_cards_markdown
from builtin_pool import build_pool
from builtin_recipes import AUGMENT, MODEL_CONFIG, RECIPES  # noqa: F401
from builtin_training import (  # noqa: F401
    REPO,
    TTA_SCORED,
    _log_events,
    evaluate_checkpoint,
    load_items,
    save_builtin,
    split_files,
    train_config,
    train_fold,
    train_recipe,
)
from builtin_tuning import chosen_on, membrane_bias_shift, tune_membrane_threshold

from napari_unet.core.checkpoint.format import BUILTIN_DIR, load_checkpoint
from napari_unet.core.io.images import read_image
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.training.loop import TrainConfig

logger = logging.getLogger("train_builtin")

DEFAULT_DATA = Path(os.environ.get("NAPARI_UNET_DATA_DIR", REPO.parent / "shared" / "data"))


#: The operating points ``tune_instances`` tries (all chosen on the training split).
INSTANCE_GRID = {
    "threshold": (0.4, 0.5, 0.6, 0.7, 0.8),  # foreground: 1 - p_background >= threshold
    "interior_threshold": (0.4, 0.5, 0.6, 0.7, 0.8),  # seeds: p_interior >= this
    "min_size": (0, 25, 50, 100),
    "seed_erosion": (0, 1, 2),
}


def tune_instances(
    name: str, model, data_dir: Path, train_files: list[str], *, held_out: bool = False
) -> dict:
    """Pick the instance post-processing on training-split files (mean AP@0.5, as evaluate).

    Every combination of :data:`INSTANCE_GRID` is scored; ties go to the smaller ``min_size``
    and ``seed_erosion``, then to thresholds nearer 0.5. ``held_out``: ``train_files`` were left
    out of ``model``'s training (a calibration fold, see ``--holdout``); otherwise ``model`` was
    trained on them and the choice may favour what it memorised.
    """
    from napari_unet.core.evaluation.score import evaluate_pair
    from napari_unet.core.inference.prediction import PredictConfig, predict
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    folder = data_dir / RECIPES[name]["folder"]
    keys = tuple(INSTANCE_GRID)
    grid = list(itertools.product(*INSTANCE_GRID.values()))
    scores: dict[tuple, list[float]] = {point: [] for point in grid}
    base = RECIPES[name]["postprocess"]
    for file in train_files:
        image = read_image(folder / "images" / file).image
        truth = read_image(folder / "labels" / file).image
        probabilities = predict(
            model, image, "YX", task="instances", config=PredictConfig(device="cpu")
        )
        for point in grid:
            config = PostprocessConfig(**{**base, "output": "instances", **dict(zip(keys, point))})
            labels = labels_from_probabilities(probabilities, task="instances", config=config)
            scores[point].append(evaluate_pair(labels, truth, task="instances")["ap50"])
    table = {point: float(np.mean(v)) for point, v in scores.items()}

    def preference(point: tuple) -> tuple:
        chosen = dict(zip(keys, point))
        nearness = abs(chosen["threshold"] - 0.5) + abs(chosen["interior_threshold"] - 0.5)
        return (table[point], -chosen["min_size"], -chosen["seed_erosion"], -nearness)

    best = dict(zip(keys, max(grid, key=preference)))
    logger.info("instances on the training split: %s ap50 %.4f", best, table[tuple(best.values())])
    top = sorted(grid, key=preference, reverse=True)[:10]
    where = chosen_on("images", train_files, held_out)
    return {
        **best,
        "how": f"chosen on {where} (max mean AP@0.5 over a grid); stored in provenance postprocess",
        "held_out": held_out,
        "grid": {key: list(values) for key, values in INSTANCE_GRID.items()},
        "training_split_ap50_top10": [
            {**dict(zip(keys, point)), "ap50": table[point]} for point in top
        ],
    }


def _parser() -> argparse.ArgumentParser:
    """The command line of ``train_builtin.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--minutes", type=float, default=None, help="time budget")
    parser.add_argument("--steps", type=int, default=None, help="step budget")
    parser.add_argument("--out", type=Path, default=None, help="default builtin_models/NAME.pt")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the data sets")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on the CPU")
    parser.add_argument(
        "--tune", action="store_true", help="tune the operating point (train split)"
    )
    parser.add_argument(
        "--resume", type=Path, help="latest.pt of an earlier run: continue it up to the budget"
    )
    parser.add_argument("--card-only", action="store_true", help="re-evaluate --out, no training")
    parser.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="train a calibration fold: leave the last K training files out; needs --out, "
        "writes no card and scores nothing",
    )
    parser.add_argument(
        "--calibrate-with",
        type=Path,
        help="with --tune: choose the operating point (em-membranes: membrane threshold; "
        "fluo-nuclei: instance post-processing) with this calibration fold (a --holdout "
        "checkpoint) on the files it left out, not with the model on its own training files",
    )
    return parser


def _from_card(out: Path) -> tuple:
    """``--card-only``: ``(model, config, steps, seconds, machine, provenance)`` of the shipped
    checkpoint ``out``, as its card recorded them."""
    loaded = load_checkpoint(out)
    provenance = dict(loaded.info.provenance)
    old = provenance.get("card") or {}
    config = TrainConfig.from_dict(old["recipe"]["train_config"])
    seconds, steps, host = (
        old["training"]["seconds"],
        old["training"]["steps"],
        old["training"]["machine"],
    )
    model = loaded.model
    if not provenance.get("phases"):  # one phase: keep the command that trained it
        provenance["phases"] = [{"command": old["recipe"]["command"], **old["training"]}]
    return model, config, steps, seconds, host, provenance


def _postprocess(name: str, calibration: dict | None) -> dict:
    """The recipe's post-processing defaults with the calibrated operating point, validated."""
    postprocess = dict(RECIPES[name]["postprocess"])
    for key in ("threshold", "interior_threshold", "min_size", "seed_erosion"):
        if key in (calibration or {}):
            postprocess[key] = calibration[key]
    PostprocessConfig(**postprocess)  # the stored defaults must be valid
    return postprocess


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line: 40 minutes without a budget; a pooled recipe's data root."""
    args = _parser().parse_args(argv)
    if args.steps is None and args.minutes is None:
        args.minutes = 40.0
    if RECIPES[args.name].get("pooled"):  # several sets as one folder, written once
        args.data = build_pool(args.data, Path(tempfile.gettempdir()) / "napari-unet-pool")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = _arguments(argv)
    name, out = args.name, args.out or BUILTIN_DIR / f"{args.name}.pt"
    train_files, val = split_files(name, args.data)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.calibrate_with and not args.tune:
        sys.exit("--calibrate-with chooses an operating point: add --tune")
    if args.holdout:
        return train_fold(name, args, train_files)
    if args.card_only:
        model, config, steps, seconds, host, provenance = _from_card(out)
    else:
        checkpoint_dir = str(args.resume.parent) if args.resume else None
        checkpoint_dir = checkpoint_dir or tempfile.mkdtemp(prefix=f"builtin-{name}-")
        model, config, steps, seconds = train_recipe(name, args, train_files, checkpoint_dir)
        host = machine()
        provenance = {"steps": steps, "seed": config.seed, "train_config": config.to_dict()}
        if args.resume:  # the phases before: what the shipped checkpoint's card says about them
            before = load_checkpoint(out).info.provenance["card"]
            seconds += before["training"]["seconds"]
            provenance["phases"] = resumed_phases(before, args.resume)
    if args.tune:
        provenance["calibration"] = calibrate(name, model, args, train_files, provenance)
    postprocess = _postprocess(name, provenance.get("calibration"))
    provenance["postprocess"] = postprocess
    provenance.pop("card", None)
    save_builtin(out, model, name, provenance)  # evaluate exactly the shipped (float16) weights
    result = evaluate_checkpoint(name, out, args.data, val, postprocess)
    with_tta = {
        tta: evaluate_checkpoint(name, out, args.data, val, postprocess, tta)["mean"]
        for tta in TTA_SCORED
    }
    provenance["card"] = build_card(
        name,
        train_files,
        val,
        config,
        seconds,
        steps,
        result,
        host,
        provenance.get("calibration"),
        postprocess,
        provenance.get("phases"),
        with_tta,
    )
    save_builtin(out, load_checkpoint(out).model, name, provenance)
    logger.info(
        "%s: %s (%.1f MB)",
        out,
        json.dumps(provenance["card"]["validation"]["mean"]),
        out.stat().st_size / 1e6,
    )
    write_cards_markdown()
    return 0


def calibrate(
    name: str, model, args: argparse.Namespace, train_files: list[str], provenance: dict
) -> dict:
    """Choose ``name``'s operating point; with ``--calibrate-with``, on a fold's held-out files.

    em-membranes: the membrane threshold, folded into ``model``'s output bias (an earlier one is
    undone first, so the trained network itself is tuned). Instance models: the post-processing.
    """
    semantic = RECIPES[name]["task"] == "semantic"
    tune = tune_membrane_threshold if semantic else tune_instances
    old = provenance.get("calibration")
    if semantic and old:
        membrane_bias_shift(model, 1, 1.0 - old["membrane_threshold"])
    fold, held = load_fold(args.calibrate_with, name, train_files)
    if fold is not None:
        calibration = tune(name, fold.model.float().eval(), args.data, held, held_out=True)
        calibration["fold"] = fold.info.provenance["fold"]
    else:
        calibration = tune(name, model, args.data, train_files)
    if semantic:
        membrane_bias_shift(model, 1, calibration["membrane_threshold"])
    return calibration


def load_fold(path: Path | None, name: str, train_files: list[str]) -> tuple:
    """``(fold checkpoint, the training files it left out)`` for ``--calibrate-with``, or Nones.

    Exits with a message when ``path`` is not a ``--holdout`` checkpoint of model ``name``.
    """
    if path is None:
        return None, None
    fold = load_checkpoint(path)
    held = fold.info.provenance.get("holdout_files")
    if not held or set(held) - set(train_files) or fold.info.task != RECIPES[name]["task"]:
        sys.exit(f"{path} is not a calibration fold of {name} (--holdout)")
    return fold, held


if __name__ == "__main__":
    sys.exit(main())
