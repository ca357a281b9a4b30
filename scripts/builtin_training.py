"""The training side of ``train_builtin.py``: the recipe's data, config and run, the shipped
checkpoint, the calibration fold (``--holdout``) and the evaluation of the validation split."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from builtin_cards import machine
from builtin_recipes import AUGMENT, MODEL_CONFIG, RECIPES

from napari_unet.cli import main as cli_main
from napari_unet.core.checkpoint.format import BUILTIN_DIR, load_checkpoint, save_checkpoint
from napari_unet.core.inference.normalization import NormalizationConfig, normalize
from napari_unet.core.io.images import read_image
from napari_unet.core.models import build_model
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.loop import TrainConfig

logger = logging.getLogger("train_builtin")

REPO = Path(__file__).resolve().parents[1]


def split_files(name: str, data_dir: Path) -> tuple[list[str], list[str]]:
    """(training file names, validation file names) of model ``name``, sorted."""
    recipe = RECIPES[name]
    files = sorted(p.name for p in (data_dir / recipe["folder"] / "images").glob("*.png"))
    if not files:
        sys.exit(f"no images in {data_dir / recipe['folder'] / 'images'}; pass --data DIR")
    val = [f for f in files if recipe["is_validation"](Path(f).stem)]
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
