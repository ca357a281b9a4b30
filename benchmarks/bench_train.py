"""Training benchmark: our ``iter_train`` against a plain seed-style loop, in the same run.

Usage::

    python benchmarks/bench_train.py [--quick] [--json OUT] [--device cpu|cuda] [--variants]
    python benchmarks/bench_train.py --ddp [--quick] [--json OUT]   # 1 vs 2 DDP processes

Both loops train the same model (``unet``, base 32, depth 4, 1 input channel, 2 classes, the same
seeded initial weights) with Adam (lr 1e-3) on 256x256 patches, batch 4, from one synthetic
1024x1024 nuclei image (foreground/background classes):

- ours: :func:`napari_unet.core.training.loop.iter_train` with its defaults (class-balanced sampling
  of annotated pixels, weight maps, the full augmentation, channels_last, gradient clipping, fp32 on
  CPU unless ``bf16_cpu``), timed between its step events after the warm-up steps;
- plain: random crops and flips computed inline in numpy, fp32, default memory format, plain
  ``F.cross_entropy``, ``loss.backward(); optimizer.step()``, torch's default threads.

Also: ``augment_ms_per_batch`` (our augmentation alone on 4 x 256^2 with targets and weights),
``sample_ms_per_batch`` (our patch sampler), ``weight_map_s_1024_300`` (``border_weight_map`` of
300 instances at 1024x1024) and, with ``--variants`` (on by default outside ``--quick``), our loop
with bf16 autocast, without channels_last and without augmentation, to show where time goes.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import Row, check, format_table, machine_info, supports_bf16
from _bench_train_parts import (  # noqa: F401
    BATCH,
    MODES,
    N_INSTANCES,
    build_model,
    make_data,
    time_augment,
    time_ours,
    time_plain,
    time_sampler,
    time_weight_map,
)


def run(mode_name: str, device: torch.device, variants: bool) -> dict[str, Any]:
    """Every measurement of one mode; a flat dict."""
    mode = MODES[mode_name]
    image, labels = make_data(mode["side"])
    classes = (labels > 0).astype(np.uint8)
    model = build_model(mode)
    plain = time_plain(copy.deepcopy(model), image, classes, mode, device)
    ours = time_ours(copy.deepcopy(model), image, classes, mode, device)
    results: dict[str, Any] = {
        "patches_per_s": ours["patches_per_s"],
        "plain_patches_per_s": plain["patches_per_s"],
        "ratio_vs_plain_loop": ours["patches_per_s"] / plain["patches_per_s"],
        "seconds_per_step": ours["seconds_per_step"],
        "plain_seconds_per_step": plain["seconds_per_step"],
        "setup_and_finish_s": ours["setup_and_finish_s"],
        "augment_ms_per_batch": time_augment(mode, device),
        "sample_ms_per_batch": time_sampler(model, image, classes, mode),
    }
    results["weight_map_s_1024_300"], results["weight_map_instances"] = time_weight_map(mode)
    results["augment_fraction_of_step"] = (
        results["augment_ms_per_batch"] / 1000.0 / ours["seconds_per_step"]
    )
    if variants:
        tries = {"no_channels_last": {"channels_last": False}, "no_augment": {}}
        if device.type == "cpu" and supports_bf16(device):
            tries["fp32"] = {"bf16_cpu": False}  # our default is bf16 on this CPU
        for name, overrides in tries.items():
            if name == "no_augment":
                from napari_unet.core.training.augment import AugmentConfig

                overrides = {"augment": AugmentConfig(strength=0.0)}
            timing = time_ours(copy.deepcopy(model), image, classes, mode, device, **overrides)
            results[f"patches_per_s_{name}"] = timing["patches_per_s"]
            results[f"ratio_vs_plain_loop_{name}"] = (
                timing["patches_per_s"] / plain["patches_per_s"]
            )
    results.update(
        {
            "batch_size": BATCH,
            "patch": mode["patch"],
            "model": f"unet depth {mode['depth']} base {mode['base']}",
            "timed_steps": mode["steps"],
            "warmup_steps": mode["warmup"],
            "quick": mode_name != "full",
            "mode": mode_name,
            **machine_info(device),
        }
    )
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a few minutes)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write the flat JSON object here")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--variants", action=argparse.BooleanOptionalAction, default=None,
                        help="also time bf16 / no channels_last / no augmentation")  # fmt: skip
    parser.add_argument("--ddp", action="store_true",
                        help="only time 1 process against 2 DDP processes (steps/s)")  # fmt: skip
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else ("quick" if args.quick else "full")
    if args.ddp:
        return _main_ddp(mode, args.json)
    variants = args.variants if args.variants is not None else mode == "full"
    results = run(mode, torch.device(args.device), variants)
    rows = [
        Row("patches_per_s", results["patches_per_s"]),
        Row("plain_patches_per_s", results["plain_patches_per_s"]),
        Row(
            "ratio_vs_plain_loop",
            results["ratio_vs_plain_loop"],
            ">= 1.5",
            check(results["ratio_vs_plain_loop"], at_least=1.5),
        ),
        Row("augment_ms_per_batch", results["augment_ms_per_batch"]),
        Row(
            "augment_fraction_of_step",
            results["augment_fraction_of_step"],
            "< 0.25",
            check(results["augment_fraction_of_step"], at_most=0.25),
        ),
        Row("sample_ms_per_batch", results["sample_ms_per_batch"]),
        Row(
            "weight_map_s_1024_300",
            results["weight_map_s_1024_300"],
            "< 1",
            check(results["weight_map_s_1024_300"], at_most=1.0),
        ),
    ]
    rows += [Row(k, v) for k, v in results.items() if k.startswith("ratio_vs_plain_loop_")]
    print(format_table(rows))
    print(results["machine"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _main_ddp(mode: str, json_path: Path | None) -> int:
    """``--ddp``: steps/s and patches/s of 1 process against 2 DDP processes."""
    from _bench_ddp import run_ddp

    results = run_ddp(mode)
    keys = ("steps_per_s_1proc", "steps_per_s_1proc_1thread", "steps_per_s_2proc",
            "steps_ratio_2_vs_1", "steps_ratio_2_vs_1_1thread",
            "patches_per_s_1proc", "patches_per_s_2proc", "patches_ratio_2_vs_1")  # fmt: skip
    print(format_table([Row(key, results[key]) for key in keys]))
    print(results["machine"])
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
