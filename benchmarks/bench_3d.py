"""3-D against 2-D from the same few annotated slices, at the same CPU time.

Run: ``python benchmarks/bench_3d.py --quick --json docs/results/bench_3d_quick.json``.

1. **ISBI 2012** (30 x 512 x 512 serial-section EM, voxel 50 x 4 x 4 nm): slices 5, 15 and 25 are
   annotated (membrane = foreground); a 2-D U-Net (``unet``, trained on those 3 slices) and a
   3-D U-Net (``unet3d_aniso``, trained on the volume with only those slices annotated) get the
   same process CPU time on one torch thread, then predict the whole stack; both are scored on
   the 27 unannotated slices: membrane IoU and the ISBI Rand error of the regions between
   membranes (per slice, averaged). A 2.5-D arm (the same 2-D ``unet`` given ``--context-slices``
   neighbours above and below as channels, trained on the same 3 slices, predicting with the
   whole stack) gets the same budget; it starts as the 2-D arm's untrained weights with the
   neighbours' input weights at zero (``--init-25d 2d``) and draws the same patches; each of its
   slices is also given with itself as its own neighbours (flat copies, the default of
   ``train --context-slices``; ``--no-flat-25d`` leaves them out) and its neighbour slices are
   reversed at random (``AugmentConfig.flip_context``, the default of every 2.5-D training;
   ``--no-flip-context-25d`` for the arm without). JSON keys ``rand_error_3d``,
   ``rand_error_2d``, ``rand_error_25d``, ``membrane_iou_*``: each arm predicted as ``predict``
   does by default (``--tta none``, ``z_flip`` off: the ``none`` variant),
   regions = connected components between membranes; ``rand_error_ws_*``: the same regions grown
   through the predicted membranes; ``isbi_evals``: every arm under each prediction variant of
   ``--isbi-evals`` (``_bench_3d_evals``: none, z, flips, flips_z; TTA for one arm is run for
   all, labelled).
2. **embryo_nuclei3d** (the README's protocol): train on stack ``00`` with slices 12, 22, 33
   annotated (instances), test on the whole of stack ``01`` (and, without ``--quick``, the
   reverse): 3-D instance AP@0.5 of the 3-D model's 3-D watershed against the 2-D model's
   per-slice instances stitched in Z by overlap. Objects under ``EMBRYO_MIN_VOXELS`` voxels are
   dropped from both. ``--embryo-norm stack`` gives the 2-D model the stack normalised as a whole
   (one percentile range, as the 3-D model gets; each slice alone stretches the noise of the
   empty end slices into foreground), ``slice`` (default) each slice on its own.
   ``--embryo-protocol tuned`` trains both arms as ``train --minutes`` does: of the three
   annotated slices one is held back (``core.training.split``; the 2-D arm's slices are one tile
   each, the 3-D arm's stack fits in one tile, so each holds back one slice), the run validated
   on it and its operating point re-tuned on it (the 3-D arm's with the 3-D watershed), and each
   arm is scored at the settings its run chose (``fixed``, the default: all three slices
   trained on, default post-processing, earlier JSONs comparable).
3. **A 512 x 512 x 32 block**: seconds and peak resident memory of predicting it with each model
   (one torch thread, or the GPU with ``--device cuda``), as ``predict`` does by default.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_3d_evals import default_variant, evaluate_arm
from _bench_3d_models import _models, _net25d, _predict
from _bench_3d_parts import (
    ISBI_VOXEL,
    isbi_volume,
    slice_items,
    slice_mask,
    train_budget,
    volume_item,
)
from _bench_3d_runs import EMBRYO_MIN_VOXELS, run_block, run_embryo  # noqa: F401 (moved)
from _bench_common import machine_info

from napari_unet.core.training.context import FLAT_COPIES, context_items

logger = logging.getLogger("bench_3d")
ISBI_SLICES = (5, 15, 25)


def _isbi_arms(args, image, labels) -> dict:
    """The trained ISBI models of ``args.isbi_arms`` by key (``2d``, ``3d``, ``25d``)."""
    net2d, net3d = _models(1, ISBI_VOXEL, 4, args.seed)
    net25d = _net25d(1, 4, args, net2d)  # before the 2-D arm trains net2d
    common = dict(
        task="binary", cpu_s=60 * args.cpu_minutes, batch=2, seed=args.seed, device=args.device
    )
    mask = slice_mask(image.shape, ISBI_SLICES)
    arms = {
        "2d": lambda: train_budget(
            net2d, slice_items(image, labels, ISBI_SLICES, "isbi"), patch=(256, 256), **common
        ),
        "3d": lambda: train_budget(
            net3d,
            [volume_item(image, labels, mask, "isbi")],
            patch=tuple(args.isbi_patch_3d),
            lr=args.isbi_lr_3d,
            **common,
        ),
        "25d": lambda: train_budget(
            net25d,
            context_items(
                image[None],
                labels,
                mask,
                args.context_slices,
                name="isbi",
                flat_copies=args.flat_25d,
            ),
            patch=(256, 256),
            flip_context=args.flip_context_25d,
            **common,
        ),
    }
    return {key: arms[key]() for key in args.isbi_arms.split(",")}


def run_isbi(args) -> dict:
    image, membrane = isbi_volume()
    trained_arms = _isbi_arms(args, image, membrane.astype(np.uint8))
    test = [z for z in range(image.shape[0]) if z not in ISBI_SLICES]
    result = {
        "isbi_annotated_slices": list(ISBI_SLICES),
        "isbi_test_slices": len(test),
        "context_slices_25d": args.context_slices,
        "init_25d": args.init_25d,
        "flat_copies_25d": args.flat_25d,
        "flip_context_25d": args.flip_context_25d,
        "isbi_lr_3d": args.isbi_lr_3d,
    }

    def predict(model, volume, tta, z_flip):
        return _predict(model, volume, "binary", args.device, tta=tta, z_flip=z_flip)[0]

    result["isbi_evals"] = {}
    for key, trained in trained_arms.items():
        evals = evaluate_arm(trained.model, key, image, membrane, test, args, predict)
        scores = evals[default_variant(key)]  # what predict gives by default (--tta none)
        result["isbi_evals"][key] = evals
        result[f"rand_error_{key}"] = scores["rand_error"]
        result[f"rand_error_ws_{key}"] = scores["rand_error_ws"]
        result[f"membrane_iou_{key}"] = scores["membrane_iou"]
        result[f"isbi_default_eval_{key}"] = default_variant(key)
        result[f"isbi_steps_{key}"] = trained.steps
        result[f"isbi_train_cpu_s_{key}"] = round(trained.cpu_s, 1)
        result[f"isbi_diverged_{key}"] = list(trained.diverged)
        logger.info("ISBI %s: %s (%d steps)", key, scores, trained.steps)
    result["_models"] = {key: trained.model for key, trained in trained_arms.items()}
    return result


def _add_25d_arguments(parser: argparse.ArgumentParser) -> None:
    """The 2.5-D arm's options and the ISBI prediction variants."""
    parser.add_argument(
        "--context-slices",
        type=int,
        default=1,
        help="2.5-D arm on ISBI: neighbour slices on each side as channels (1)",
    )
    parser.add_argument(
        "--init-25d",
        choices=("2d", "zero", "random"),
        default="2d",
        help="2.5-D arm's start: the 2-D arm's weights (2d), zeroed neighbours (zero), as built",
    )
    parser.add_argument(
        "--flat-25d",
        action=argparse.BooleanOptionalAction,
        default=FLAT_COPIES,
        help="2.5-D arm: half the training slices without their neighbours (context dropout); "
        "on by default as in train --context-slices, --no-flat-25d for the arm without",
    )
    parser.add_argument(
        "--flip-context-25d",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="2.5-D arm: its neighbour slices reversed at random in training (as train does)",
    )
    parser.add_argument(
        "--isbi-evals",
        default="none,z,flips,flips_z",
        help="ISBI prediction variants scored per arm: none, z (Z reversed and averaged), "
        "flips (tta flips), flips_z; the product default is always scored",
    )


def _parser() -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1.5 + 1 CPU-minutes per model, one embryo direction"
    )
    parser.add_argument(
        "--cpu-minutes", type=float, help="ISBI budget per model (quick 1.5, else 10)"
    )
    parser.add_argument(
        "--embryo-cpu-minutes", type=float, help="embryo budget per model (quick 1, else 5)"
    )
    parser.add_argument(
        "--isbi-patch-3d",
        type=lambda t: [int(v) for v in t.split(",")],
        default=[4, 128, 128],
        help="3-D training patch D,H,W on ISBI (4,128,128)",
    )
    parser.add_argument(
        "--parts", default="isbi,embryo,block", help="what to run (isbi,embryo,block)"
    )
    parser.add_argument(
        "--isbi-lr-3d", type=float, default=1e-3, help="3-D learning rate on ISBI (1e-3)"
    )
    parser.add_argument(
        "--isbi-arms", default="2d,3d,25d", help="ISBI models to train and score (2d,3d,25d)"
    )
    _add_25d_arguments(parser)
    parser.add_argument(
        "--embryo-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="embryo models' learning rate: constant at its peak (default) or cosine to zero over "
        "the CPU budget, final weights kept (as train --minutes)",
    )
    parser.add_argument(
        "--embryo-protocol",
        choices=("fixed", "tuned"),
        default="fixed",
        help="embryo: train on all 3 slices, default post-processing (fixed), or the product's "
        "protocol: one slice held back, the operating point re-tuned on it (tuned; cosine)",
    )
    parser.add_argument(
        "--embryo-norm",
        choices=("slice", "stack"),
        default="slice",
        help="embryo 2-D arm: normalise each slice (slice) or the stack as a whole (stack)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.cpu_minutes = args.cpu_minutes or (1.5 if args.quick else 10.0)
    args.embryo_cpu_minutes = args.embryo_cpu_minutes or (1.0 if args.quick else 5.0)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    tick = time.perf_counter()
    result = {"command": "python benchmarks/bench_3d.py " + " ".join(argv or sys.argv[1:])}
    result.update(machine_info(torch.device(args.device)))
    result.update(
        cpu_minutes_per_model=args.cpu_minutes, embryo_cpu_minutes_per_model=args.embryo_cpu_minutes
    )
    parts = set(args.parts.split(","))
    result["isbi_patch_3d"] = list(args.isbi_patch_3d)
    if parts & {"isbi", "block"}:
        isbi = run_isbi(args)
        models = isbi.pop("_models")
        result.update(isbi)
    if "embryo" in parts:
        result.update(run_embryo(args))
    if "block" in parts:
        result.update(run_block(models, args))
    result["wall_s"] = round(time.perf_counter() - tick, 1)
    result["process_cpu_s"] = round(time.process_time(), 1)  # training, prediction and scoring
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
