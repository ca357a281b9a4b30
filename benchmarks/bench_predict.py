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
import functools
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import (
    FlopCounter,
    Row,
    check,
    current_rss_mb,
    flops_per_pixel,
    format_table,
    machine_info,
    matmul_peak_gflops,
    peak_rss_mb,
    reset_peak_rss,
    supports_bf16,
    time_call,
)
from _predict_setup import AXES, MODES, TASK, Setup, _core, autocast, build, predict_config


def make_ours(setup: Setup, precision: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """Our ``predict`` with the default config (or only ``precision`` changed)."""
    normalize, predict, *_ = _core()
    config = setup.config if precision is None else setup.config.replace(precision=precision)
    normalization = normalize.NormalizationConfig()

    def run(image: np.ndarray) -> np.ndarray:
        return predict.predict(
            setup.model, image, AXES, task=TASK, normalization=normalization, config=config
        )

    return run


def make_monai(setup: Setup, *, same_precision: bool) -> Callable[[np.ndarray], np.ndarray]:
    """MONAI ``sliding_window_inference`` on the same weights, tile, overlap and batch (Gaussian).

    Timed like ours: normalisation, inference and the softmax to probabilities on the CPU.
    """
    from monai.inferers import sliding_window_inference  # lazy: the 'bench' extra

    tile = tuple(setup.config.tile_shape)
    fraction = setup.overlap / tile[0]
    model = setup.ours_format if same_precision else setup.reference
    precision = setup.precision if same_precision else "fp32"
    channels_last = same_precision and setup.config.channels_last

    def run(image: np.ndarray) -> np.ndarray:
        inputs = setup.normalized_tensor(image)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(precision, setup.device):
            logits = sliding_window_inference(
                inputs,
                roi_size=tile,
                sw_batch_size=setup.config.batch_size,
                predictor=model,
                overlap=fraction,
                mode="gaussian",
            )
            return torch.softmax(logits.float(), dim=1)[0].cpu().numpy()

    return run


def make_plain(setup: Setup) -> Callable[[np.ndarray], np.ndarray]:
    """One forward pass of the whole image, in our precision and memory format (no tiling)."""
    model = setup.ours_format
    memory_format = torch.channels_last if setup.config.channels_last else torch.contiguous_format

    def run(image: np.ndarray) -> np.ndarray:
        inputs = setup.normalized_tensor(image)
        height, width = image.shape
        padded = model.valid_input_shape((height, width))
        if padded != (height, width):
            pad = (0, padded[1] - width, 0, padded[0] - height)
            inputs = F.pad(inputs, pad, mode="reflect")
        inputs = inputs.contiguous(memory_format=memory_format)
        with torch.inference_mode(), autocast(setup.precision, setup.device):
            logits = model(inputs)
            return torch.softmax(logits.float(), dim=1)[0, :, :height, :width].cpu().numpy()

    return run


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


# ------------------------------------------------------------------------------- the run
def contenders(setup: Setup, notes: list[str]) -> dict[str, Callable[[np.ndarray], Any]]:
    """The timed contenders by name (MONAI left out, with a note, when it is not installed)."""
    named: dict[str, Callable[[np.ndarray], Any]] = {"fp32": make_ours(setup, "fp32")}
    if setup.precision != "fp32":
        named["ours"] = make_ours(setup, None)
    if supports_bf16(setup.device) and setup.precision != "bf16":
        named["bf16"] = make_ours(setup, "bf16")
    elif not supports_bf16(setup.device):
        notes.append("bf16: this device has no native bf16, not measured")
    try:
        named["monai"] = make_monai(setup, same_precision=False)
        named["monai_same_precision"] = make_monai(setup, same_precision=True)
    except ImportError as err:
        notes.append(f"MONAI is missing ({err}); install the 'bench' extra")
    named["plain"] = make_plain(setup)
    return named


def measure_speed(setup: Setup, results: dict[str, Any], notes: list[str]) -> None:
    """Throughput of ours (default, fp32, bf16), MONAI (two ways), a plain pass; FLOPs vs peak.

    The contenders are timed round-robin (one call each per round, best of the rounds), so load
    from other processes on a shared machine hits all of them alike; the matmul peak is measured
    in every round too and its best is kept.
    """
    device, image, pixels = setup.device, setup.image, setup.image.size
    named = contenders(setup, notes)
    # an untimed full run of ours in fp32 with hooks counts the FLOPs of the tiles processed
    with FlopCounter(setup.model) as counter:
        named["fp32"](image)
    for name, fn in list(named.items()):  # warm-up: plain at its own size, the rest on a crop
        try:
            fn(image) if name == "plain" else setup.warm_up(fn)
        except (RuntimeError, MemoryError) as err:  # out of memory on a small GPU
            notes.append(f"{name} failed: {str(err).splitlines()[0]}")
            del named[name]
    seconds: dict[str, list[float]] = {name: [] for name in named}
    outputs: dict[str, Any] = {}
    peaks = []
    for _ in range(setup.mode["repeats"]):
        for name, fn in named.items():
            call = functools.partial(fn, image)
            timing, outputs[name] = time_call(call, repeats=1, warmup=0, device=device)
            seconds[name].append(timing.best)
        peaks.append(matmul_peak_gflops(size=setup.mode["matmul"], repeats=5, device=device))
    best = {name: min(values) for name, values in seconds.items()}
    best.setdefault("ours", best["fp32"])
    seconds.setdefault("ours", seconds["fp32"])
    for name, value in best.items():
        results[f"seconds_{name}"] = value
    results["seconds_ours_max"] = max(seconds["ours"])
    results["mpix_per_s"] = pixels / best["ours"] / 1e6
    results["mpix_per_s_fp32"] = pixels / best["fp32"] / 1e6
    for name in ("monai", "monai_same_precision", "plain"):
        results[f"ratio_vs_{name}"] = best[name] / best["ours"] if name in best else None

    results["bf16_speedup"] = results["bf16_max_abs_diff"] = None
    # our default is bf16 itself on CPUs with native bf16 (precision "auto")
    bf16 = "bf16" if "bf16" in best else ("ours" if setup.precision == "bf16" else None)
    if bf16 is not None:
        probs_fp32, probs_bf16 = outputs["fp32"], outputs[bf16]
        diff = np.abs(np.asarray(probs_bf16, np.float32) - np.asarray(probs_fp32, np.float32))
        results["bf16_speedup"] = best["fp32"] / best[bf16]
        results["bf16_max_abs_diff"] = float(diff.max())
        results["bf16_mean_abs_diff"] = float(diff.mean())

    per_pixel = flops_per_pixel(setup.ours_format, setup.config.tile_shape[0], 1, device)
    peak = max(peaks)
    results["gflop_per_mpix"] = per_pixel / 1e3
    results["matmul_peak_gflops"] = peak
    results["matmul_peak_gflops_min"] = min(peaks)
    results["gflops_useful"] = per_pixel * pixels / best["fp32"] / 1e9
    results["gflops_tiles"] = results["tile_work_factor"] = results["fraction_of_peak"] = None
    if counter.calls:
        results["gflops_tiles"] = counter.flops / best["fp32"] / 1e9
        results["tile_work_factor"] = counter.flops / (per_pixel * pixels)
        results["fraction_of_peak"] = results["gflops_tiles"] / peak
    else:
        notes.append("fraction_of_peak: the FLOP hooks saw no conv call inside iter_predict")


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
