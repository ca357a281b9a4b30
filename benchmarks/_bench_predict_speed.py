"""The speed part of ``bench_predict.py``: the contenders (ours, MONAI, a plain pass), timed
round-robin, and the FLOP figures against the matmul peak."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _bench_common import (
    FlopCounter,
    flops_per_pixel,
    matmul_peak_gflops,
    supports_bf16,
    time_call,
)
from _predict_setup import AXES, TASK, Setup, _core, autocast


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

    _flop_figures(setup, results, notes, counter, best, peaks)


def _flop_figures(setup: Setup, results: dict, notes: list[str], counter, best, peaks) -> None:
    """GFLOP/s (useful and of the tiles processed) and the fraction of the matmul peak."""
    device, pixels = setup.device, setup.image.size
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
