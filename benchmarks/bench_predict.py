"""Prediction benchmark: our tiled ``iter_predict`` against MONAI and a plain forward pass.

Usage::

    python benchmarks/bench_predict.py [--quick] [--json OUT] [--device cpu|cuda]

Default model: ``unet`` (base 32, depth 4, 1 input channel, 2 classes, random weights, eval mode)
on a 2048x2048 uint8 image (``--quick``: 1024x1024, fewer repeats, 4096x4096 for the memory
figures). Every contender runs in this one process with the same ``torch.get_num_threads()``; the
memory figures come from fresh subprocesses. Prints a Markdown table (metric, value, target, pass)
and writes a flat JSON object. ``benchmarks/README.md`` says what each figure means.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import (
    Row,
    check,
    current_rss_mb,
    format_table,
    machine_info,
    peak_rss_mb,
    reset_peak_rss,
    time_call,
)
from _bench_predict_speed import (  # noqa: F401
    contenders,
    make_monai,
    make_ours,
    make_plain,
    measure_speed,
)
from _predict_setup import AXES, MODES, Setup, _core, build, predict_config


# ------------------------------------------------------------------------------- memory child
def memory_child(task: str, side: int, mode: dict[str, Any], device_name: str) -> dict[str, Any]:
    """Label a ``side`` x ``side`` uint8 image in this (fresh) process; peak RSS above the input.

    The baseline is taken after torch, the core and the model are loaded and the input exists, so
    the figure is what prediction + post-processing add: tiles, activations, probabilities, labels.
    """
    normalize, predict, postprocess, _ = _core()
    out_channels = 3 if task == "instances" else 2
    model = build(mode, out_channels=out_channels)
    config = predict_config(mode, device_name, probability_dtype="float16")
    post = postprocess.PostprocessConfig(output=task)
    image = np.random.default_rng(0).integers(0, 256, (side, side), dtype=np.uint8)
    device = torch.device(device_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    reset_peak_rss()
    before = current_rss_mb()
    start = time.perf_counter()
    probabilities = predict.predict(
        model, image, AXES, task=task, normalization=normalize.NormalizationConfig(), config=config
    )
    labels = postprocess.labels_from_probabilities(probabilities, task=task, config=post)
    result = {
        "peak_above_input_mb": peak_rss_mb() - before,
        "baseline_mb": before,
        "seconds": time.perf_counter() - start,
        "probability_dtype": str(probabilities.dtype),
        "labels_dtype": str(labels.dtype),
        "side": side,
    }
    if device.type == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def run_memory(args: argparse.Namespace, side: int) -> dict[str, dict[str, Any]]:
    """Run :func:`memory_child` per task, each in a fresh interpreter with our thread count.

    The children run one after the other (they would disturb each other), except in smoke mode,
    where only the plumbing matters and both start at once.

    Returns:
        ``{task: the child's JSON, or {"error": message}}``.
    """
    children = {}
    for task in ("semantic", "instances"):
        command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", task]
        command += ["--memory-side", str(side), "--threads", str(torch.get_num_threads())]
        command += ["--device", args.device] + (["--smoke"] if args.smoke else [])
        pipe = subprocess.PIPE
        children[task] = subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True)
        if not args.smoke:
            children[task].wait()
    results = {}
    for task, child in children.items():
        stdout, stderr = child.communicate()
        if child.returncode != 0:
            results[task] = {"error": (stderr.strip().splitlines() or ["no output"])[-1]}
        else:
            results[task] = json.loads(stdout.strip().splitlines()[-1])
    return results


# ------------------------------------------------------------------------------- built-in model
def builtin_seconds(
    setup: Setup, repeats: int = 5, side: int = 512, tta: str = "none"
) -> tuple[list[float] | None, str | None]:
    """Median, min, max seconds to predict one ``side``^2 slice with built-in ``em-membranes``
    (``tta``: the test-time augmentation mode; ``"none"`` is the default setting)."""
    from napari_unet.core.checkpoint import format as checkpoint

    path = checkpoint.builtin_checkpoints().get("em-membranes")
    if path is None:
        return None, "seconds_512_builtin: the built-in model 'em-membranes' is not installed"
    normalize, predict, *_ = _core()
    loaded = checkpoint.load_checkpoint(path)
    model, info = loaded.model.eval(), loaded.info
    normalization = normalize.NormalizationConfig.from_dict(info.normalization or {})
    image = np.random.default_rng(1).integers(0, 256, (side, side), dtype=np.uint8)
    config = predict_config(setup.mode, str(setup.device)).replace(tta=tta)

    def run() -> Any:
        return predict.predict(
            model,
            image,
            AXES,
            task=info.task,
            normalization=normalization,
            config=config,
        )

    timing, _ = time_call(run, repeats=repeats, warmup=1, device=setup.device)
    return [timing.median, timing.best, timing.worst], None


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement; return the flat results dict (``notes`` explains any null)."""
    mode_name = "smoke" if args.smoke else ("quick" if args.quick else "full")
    mode = MODES[mode_name]
    setup = Setup.create(mode, args.device)
    results = machine_info(setup.device)
    results.update(
        quick=mode_name != "full",
        mode=mode_name,
        image_side=mode["side"],
        model=f"unet depth {mode['depth']} base {mode['base']}, 1->2 channels, random weights",
        tile_shape=list(setup.config.tile_shape),
        overlap=setup.overlap,
        batch_size=setup.config.batch_size,
        precision_setting=setup.config.precision,
        precision_used=setup.precision,
        channels_last=setup.config.channels_last,
        plain_pass="whole image, no overlap, our precision and memory format",
    )
    notes: list[str] = []
    measure_speed(setup, results, notes)

    results["memory_side"] = mode["memory_side"]
    skipped = {"error": "skipped (--skip-memory)"}
    memory = {} if args.skip_memory else run_memory(args, mode["memory_side"])
    for task, key in (
        ("semantic", "peak_rss_mb_8192"),
        ("instances", "peak_rss_mb_8192_instances"),
    ):
        child = memory.get(task, skipped)
        results[key] = child.get("peak_above_input_mb")
        for extra in ("seconds", "probability_dtype", "gpu_peak_mb"):
            if extra in child:
                results[f"{key}_{extra}"] = child[extra]
        if "error" in child:
            notes.append(f"memory ({task}): {child['error']}")

    seconds, note = (None, "skipped in smoke mode") if args.smoke else builtin_seconds(setup)
    results["seconds_512_builtin"] = seconds[0] if seconds else None
    results["seconds_512_builtin_min_max"] = seconds[1:] if seconds else None
    if note:
        notes.append(note)
    for tta in ("flips", "dihedral"):  # the same slice, run right after: cost as a ratio
        more = None if args.smoke or not seconds else builtin_seconds(setup, tta=tta)[0]
        results[f"seconds_512_builtin_tta_{tta}"] = more[0] if more else None
        results[f"tta_{tta}_cost_ratio"] = more[0] / seconds[0] if more and seconds else None
    results["notes"] = notes
    return results


def table(results: dict[str, Any]) -> str:
    """The Markdown table of the headline figures with their targets."""
    get = results.get
    side = get("memory_side")
    return format_table(
        [
            Row("throughput (Mpx/s), ours default", get("mpix_per_s")),
            Row("throughput (Mpx/s), ours fp32", get("mpix_per_s_fp32")),
            Row("ratio vs MONAI (as a user calls it)", get("ratio_vs_monai"), ">= 1.2",
                check(get("ratio_vs_monai"), at_least=1.2)),
            Row("ratio vs MONAI (our precision/format)", get("ratio_vs_monai_same_precision")),
            Row(f"ratio vs plain full-image pass (overlap {get('overlap')} px)",
                get("ratio_vs_plain"), ">= 0.8", check(get("ratio_vs_plain"), at_least=0.8)),
            Row("fp32 GFLOP/s (tiles processed)", get("gflops_tiles")),
            Row("fp32 GFLOP/s (image pixels only)", get("gflops_useful")),
            Row("fp32 matmul peak GFLOP/s", get("matmul_peak_gflops")),
            Row("fraction of fp32 peak", get("fraction_of_peak"), ">= 0.5",
                check(get("fraction_of_peak"), at_least=0.5)),
            Row("bf16 speed-up vs fp32", get("bf16_speedup")),
            Row("bf16 max abs diff of probabilities", get("bf16_max_abs_diff")),
            Row(f"peak RSS above input, semantic, {side}^2 (MB)", get("peak_rss_mb_8192"),
                "<= 1500", check(get("peak_rss_mb_8192"), at_most=1500)),
            Row(f"peak RSS above input, instances, {side}^2 (MB)",
                get("peak_rss_mb_8192_instances"), "<= 3000",
                check(get("peak_rss_mb_8192_instances"), at_most=3000)),
            Row("seconds per 512x512, built-in em-membranes", get("seconds_512_builtin"),
                "<= 0.5", check(get("seconds_512_builtin"), at_most=0.5)),
            Row("  same with --tta flips", get("seconds_512_builtin_tta_flips")),
            Row("  same with --tta dihedral", get("seconds_512_builtin_tta_dihedral")),
        ]
    )  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1024^2 image, fewer repeats")
    parser.add_argument("--json", type=Path, help="write the flat JSON results to this file")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", choices=("semantic", "instances"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-side", type=int, default=8192, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        mode = MODES["smoke" if args.smoke else "full"]
        result = memory_child(args.memory_child, args.memory_side, mode, args.device)
        print(json.dumps(result))
        return 0
    start = time.perf_counter()
    results = benchmark(args)
    results["benchmark_seconds"] = time.perf_counter() - start
    print(table(results))
    print(f"\n{results['machine']}; {results['date']}; mode {results['mode']}")
    for note in results["notes"]:
        print(f"note: {note}")
    if args.json:
        flat = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in results.items()
        }
        args.json.write_text(json.dumps(flat, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
