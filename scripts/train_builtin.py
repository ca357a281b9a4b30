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
import time
from pathlib import Path

import numpy as np
import torch
from builtin_cards import build_card, machine, resumed_phases, write_cards_markdown
from builtin_recipes import AUGMENT, MODEL_CONFIG, RECIPES

from napari_unet.cli import main as cli_main
from napari_unet.core.checkpoint.format import BUILTIN_DIR, load_checkpoint, save_checkpoint
from napari_unet.core.inference.normalization import NormalizationConfig, normalize
from napari_unet.core.io.images import read_image
from napari_unet.core.models import build_model
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import TrainConfig

logger = logging.getLogger("train_builtin")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("NAPARI_UNET_DATA_DIR", REPO.parent / "shared" / "data"))


def split_files(name: str, data_dir: Path) -> tuple[list[str], list[str]]:
    """(training file names, validation file names) of model ``name``, sorted."""
    recipe = RECIPES[name]
    files = sorted(p.name for p in (data_dir / recipe["folder"] / "images").glob("*.png"))
    if not files:
        sys.exit(f"no images in {data_dir / recipe['folder'] / 'images'}; pass --data DIR")
    val = [f for f in files if recipe["is_validation"](int(Path(f).stem))]
    return [f for f in files if f not in val], val


def load_items(name: str, data_dir: Path, files: list[str]) -> list[TrainingItem]:
    """Normalised training items (C=1) with raw labels (the recipe's label map is applied later)."""
    folder = data_dir / RECIPES[name]["folder"]
    items = []
    for file in files:
        image = read_image(folder / "images" / file).image
        labels = read_image(folder / "labels" / file).image
        image = normalize(image[None].astype(np.float32), NormalizationConfig())
        items.append(TrainingItem(image=image, labels=np.asarray(labels), name=file))
    return items


def train_config(name: str, args: argparse.Namespace, checkpoint_dir: str) -> TrainConfig:
    """The fixed recipe of model ``name`` with the budget from ``args``."""
    recipe = RECIPES[name]
    return TrainConfig(
        task=recipe["task"],
        steps=args.steps,
        minutes=args.minutes,
        batch_size=4,
        patch_shape=(256, 256),
        optimizer="adam",
        lr=1e-3,
        schedule="cosine",
        warmup_steps=100,
        grad_clip=1.0,
        bf16_cpu=args.bf16,
        val_fraction=0.0,  # no held-back tiles: no validation-based selection at all
        val_every=100,
        seed=0,
        loss=recipe["loss"],
        augment=AUGMENT,
        targets=recipe["targets"],
        normalization=NormalizationConfig(),
        class_names=recipe["class_names"],
        device="cpu",
        num_threads=args.threads,
        checkpoint_dir=checkpoint_dir,
    )


#: Test-time augmentation modes scored on the validation split besides the default (none).
TTA_SCORED = ("flips", "dihedral")


def evaluate_checkpoint(
    name: str,
    checkpoint: Path,
    data_dir: Path,
    val: list[str],
    postprocess: dict,
    tta: str = "none",
) -> dict:
    """Predict the validation files with the CLI and score them with ``evaluate``; the result.

    ``tta``: ``predict --tta`` mode; ``"none"`` (the default setting) writes
    ``docs/results/builtin_<name>.json``, another mode ``builtin_<name>_tta_<mode>.json``.
    """
    recipe = RECIPES[name]
    folder = data_dir / recipe["folder"]
    with tempfile.TemporaryDirectory(prefix=f"builtin-{name}-") as tmp:
        pred = Path(tmp) / "pred"
        images = [str(folder / "images" / f) for f in val]
        argv = ["predict", *images, "--model", str(checkpoint), "--out", str(pred)]
        argv += ["--device", "cpu", "--axes", "YX", "--tta", tta]
        for key in ("threshold", "min_size"):  # the checkpoint's stored defaults, as CLI flags
            if key in postprocess:
                argv += [f"--{key.replace('_', '-')}", str(postprocess[key])]
        if cli_main(argv) != 0:
            sys.exit("prediction of the validation split failed")
        truth = Path(tmp) / "truth"
        truth.mkdir()
        for f in val:  # only the validation files, so evaluate pairs nothing else
            (truth / f).symlink_to(folder / "labels" / f)
        suffix = "" if tta == "none" else f"_tta_{tta}"
        out = REPO / "docs" / "results" / f"builtin_{name}{suffix}.json"
        argv = ["evaluate", "--pred", str(pred), "--truth", str(truth), "--task", recipe["task"]]
        if recipe["label_map"]:
            argv += ["--label-map", ",".join(f"{k}:{v}" for k, v in recipe["label_map"].items())]
        if cli_main([*argv, "--json", str(out)]) != 0:
            sys.exit("evaluation failed")
    return json.loads(out.read_text())


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


def save_builtin(path: Path, model, name: str, provenance: dict) -> Path:
    """Write the shipped checkpoint (float16 weights, postprocess defaults, card)."""
    recipe = RECIPES[name]
    return save_checkpoint(
        path,
        model,
        task=recipe["task"],
        class_names=recipe["class_names"],
        normalization=NormalizationConfig(),
        provenance=provenance,
        weights_dtype="float16",
        name=name,
        description=recipe["description"],
    )


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    name, out = args.name, args.out or BUILTIN_DIR / f"{args.name}.pt"
    if args.steps is None and args.minutes is None:
        args.minutes = 40.0
    train_files, val = split_files(name, args.data)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.calibrate_with and not args.tune:
        sys.exit("--calibrate-with chooses an operating point: add --tune")
    if args.holdout:
        return train_fold(name, args, train_files)
    if args.card_only:
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
    postprocess = dict(RECIPES[name]["postprocess"])
    for key in ("threshold", "interior_threshold", "min_size", "seed_erosion"):
        if key in (provenance.get("calibration") or {}):
            postprocess[key] = provenance["calibration"][key]
    PostprocessConfig(**postprocess)  # the stored defaults must be valid
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


def train_recipe(
    name: str, args: argparse.Namespace, files: list[str], checkpoint_dir: str
) -> tuple[torch.nn.Module, TrainConfig, int, float]:
    """Train model ``name``'s recipe on ``files`` (resuming ``args.resume`` if given).

    Returns:
        (the trained network, its TrainConfig, steps of this run, seconds of this run).
    """
    items = load_items(name, args.data, files)
    config = train_config(name, args, checkpoint_dir)
    torch.manual_seed(config.seed)
    model = build_model("unet", out_channels=RECIPES[name]["out_channels"], **MODEL_CONFIG)
    start = time.perf_counter()
    result = _log_events(name, model, items, config, args.resume)
    seconds = time.perf_counter() - start
    return load_checkpoint(result.best_path).model, config, result.steps, seconds


def train_fold(name: str, args: argparse.Namespace, train_files: list[str]) -> int:
    """Train a calibration fold: the recipe on all but the last ``--holdout`` training files.

    The fold's predictions on the files it left out are out-of-sample, unlike the shipped model's
    on its own training files; ``--calibrate-with`` chooses the operating point with them. The
    validation split is neither trained on nor scored.
    """
    if args.out is None or args.out.resolve().parent == BUILTIN_DIR.resolve():
        sys.exit("--holdout trains a calibration fold: give --out outside the package")
    if not 0 < args.holdout < len(train_files):
        sys.exit(f"--holdout must be between 1 and {len(train_files) - 1}")
    kept, held = train_files[: -args.holdout], train_files[-args.holdout :]
    checkpoint_dir = tempfile.mkdtemp(prefix=f"fold-{name}-")
    model, config, steps, seconds = train_recipe(name, args, kept, checkpoint_dir)
    fold = {
        "command": "python scripts/train_builtin.py " + " ".join(sys.argv[1:]),
        "trained_on": kept,
        "steps": steps,
        "seconds": round(seconds, 1),
        "machine": machine(),
    }
    provenance = {"holdout_files": held, "fold": fold, "train_config": config.to_dict()}
    save_builtin(args.out, model, name, provenance)
    logger.info("calibration fold %s: trained on %d files, left out %s", args.out, len(kept), held)
    return 0


def _log_events(name, model, items, config, resume=None):
    from napari_unet.core.generators import run_to_end
    from napari_unet.core.training.config import StepEvent
    from napari_unet.core.training.loop import iter_train

    def log(event: object) -> None:
        if isinstance(event, StepEvent) and (event.step % 25 == 0 or event.step <= 3):
            logger.info(
                "%s step %d loss %.4f lr %.2e %.1f patches/s %.0f s",
                name,
                event.step,
                event.loss,
                event.lr,
                event.patches_per_s,
                event.elapsed_s,
            )

    return run_to_end(iter_train(model, items, config, resume_from=resume), log)


if __name__ == "__main__":
    sys.exit(main())
