"""Benchmark helpers: timing, FLOP counting, matmul peak, memory, machine info, tables.

Nothing here knows about napari; it is plain torch + numpy so the benchmark can be run anywhere
the core can.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU) so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the repeats of one measurement (warm-up excluded)."""

    seconds: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def worst(self) -> float:
        return max(self.seconds)


def time_call(
    fn: Callable[[], Any], *, repeats: int, warmup: int, device: torch.device
) -> tuple[Timing, Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns:
        The timings and the value returned by the last call.
    """
    result = None
    for _ in range(warmup):
        result = fn()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return Timing(tuple(seconds)), result


# --------------------------------------------------------------------------------------- FLOPs
class FlopCounter:
    """Counts multiply-accumulates of every Conv2d / ConvTranspose2d call, via a global hook.

    FLOPs are ``2 * MACs`` (bias, activations, norms, pooling and blending are not counted: they are
    a few percent of a U-Net's work). Use as a context manager around the calls to count. The hook
    is global (``register_module_forward_hook``) because prediction runs an inference copy of the
    model (BatchNorm folded), not the module passed in; ``model`` is kept for reference only.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.macs = 0
        self.calls = 0
        self._handles: list[Any] = []

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
        kh, kw = module.kernel_size
        if isinstance(module, nn.ConvTranspose2d):
            # every input pixel scatters into out_channels/groups * kh * kw outputs
            per = (module.out_channels // module.groups) * kh * kw
            self.macs += inputs[0].numel() * per
        else:
            per = (module.in_channels // module.groups) * kh * kw
            self.macs += output.numel() * per
        self.calls += 1

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def __enter__(self) -> FlopCounter:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                self._hook(module, inputs, output)

        self._handles.append(torch.nn.modules.module.register_module_forward_hook(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def flops_per_pixel(model: nn.Module, side: int, in_channels: int, device: torch.device) -> float:
    """Conv FLOPs per input pixel of one forward pass of ``model`` on a ``side``^2 input."""
    tile = torch.zeros(1, in_channels, side, side, device=device)
    with torch.inference_mode(), FlopCounter(model) as counter:
        model(tile)
    return counter.flops / float(side * side)


# --------------------------------------------------------------------------------------- peak
def matmul_peak_gflops(
    *, size: int, repeats: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> float:
    """Best achieved GFLOP/s of ``torch.mm`` on two ``size`` x ``size`` matrices (same threads)."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    timing, _ = time_call(lambda: torch.mm(a, b, out=out), repeats=repeats, warmup=1, device=device)
    return 2.0 * size**3 / timing.best / 1e9


# --------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (Linux), or None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    """Resident memory now, in MiB (falls back to ru_maxrss where /proc is missing)."""
    kib = _status_kib("VmRSS")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0


def peak_rss_mb() -> float:
    """High-water mark of resident memory of this process, in MiB."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, writing 5 to clear_refs); True on success."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty set where unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info(device: torch.device) -> dict[str, Any]:
    """Flat description of where the benchmark ran."""
    info: dict[str, Any] = {
        "machine": (
            f"{cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads, python {platform.python_version()}"
        ),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_has_avx512_bf16": "avx512_bf16" in cpu_flags() or "amx_bf16" in cpu_flags(),
        "device": str(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu_model"] = torch.cuda.get_device_name(device)
    return info


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)``, restoring the old value afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class Row:
    """One line of the printed table: a metric, its value, the target and whether it passed."""

    metric: str
    value: Any
    target: str = ""
    passed: bool | None = None


def fmt(value: Any) -> str:
    """Human formatting for table cells (None -> 'n/a')."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_table(rows: list[Row]) -> str:
    """A Markdown table ``| metric | value | target | pass |`` for the terminal and the README."""
    lines = ["| metric | value | target | pass |", "|---|---|---|---|"]
    for row in rows:
        verdict = "" if row.passed is None else ("yes" if row.passed else "NO")
        lines.append(f"| {row.metric} | {fmt(row.value)} | {row.target} | {verdict} |")
    return "\n".join(lines)


def check(value: float | None, *, at_least: float | None = None, at_most: float | None = None):
    """Pass/fail of ``value`` against a bound; None when the value is missing."""
    if value is None or not math.isfinite(value):
        return None
    if at_least is not None:
        return value >= at_least
    if at_most is not None:
        return value <= at_most
    return None


def supports_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (AVX512-BF16/AMX on CPU, Ampere+ on CUDA)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags
