"""One device policy for prediction and training.

``get_device("auto")`` picks CUDA, then Apple MPS, then the CPU; an explicit name that this machine
cannot serve raises a :class:`~napari_unet.core.errors.DeviceError` listing what it has.

Precision (``"auto" | "fp32" | "bf16" | "fp16"``) becomes an autocast dtype with
:func:`autocast_dtype`: on CUDA ``auto`` is fp16 mixed precision; on a CPU with native bf16 units
(:func:`cpu_supports_bf16`: AVX512-BF16 or AMX) ``auto`` is bf16 autocast, elsewhere fp32.
``benchmarks/bench_predict.py`` measures both the bf16 speed-up and its agreement with fp32
(``bf16_speedup``, ``bf16_max_abs_diff``); ``precision="fp32"`` turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator

import torch

from napari_unet.core.config import PRECISIONS
from napari_unet.core.errors import DeviceError

logger = logging.getLogger(__name__)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Names of the devices usable here: ``"cpu"`` always, then ``"cuda:N"`` and ``"mps"``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def get_device(name: str | torch.device = "auto") -> torch.device:
    """Resolve a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) to a device.

    Args:
        name: ``"auto"`` picks CUDA, then MPS, then CPU. A ``torch.device`` is checked too.

    Returns:
        The device.

    Raises:
        DeviceError: Unknown name or a device this machine does not have; the message lists the
            available ones.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = available_devices()
    listing = ", ".join(["auto", *available])
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {name!r}; use one of: {listing}.") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        index = 0 if device.index is None else device.index
        if f"cuda:{index}" not in available:
            raise DeviceError(
                f"device {name!r} is not available on this machine (no such CUDA GPU); "
                f"use one of: {listing}."
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if "mps" not in available:
            raise DeviceError(
                f"device {name!r} is not available on this machine (no Apple GPU); "
                f"use one of: {listing}."
            )
        return torch.device("mps")
    raise DeviceError(f"device {name!r} is not supported; use one of: {listing}.")


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16).

    AVX512 alone is not enough: oneDNN then emulates bf16 and is slower than fp32. On Linux the
    CPU flags are read from ``/proc/cpuinfo``; elsewhere the answer is ``False`` (fp32).
    """
    return _cpu_flags_have_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_flags_have_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`, else raise ``ValueError``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means plain fp32.

    Args:
        device: Target device.
        precision: ``"auto"`` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32),
            ``"fp32"``, ``"bf16"``, ``"fp16"``.

    Raises:
        ValueError: Unknown precision.
        DeviceError: bf16 requested on a CUDA GPU that lacks it.
    """
    check_precision(precision)
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError(
                "this GPU does not support bf16; use precision 'fp16' or 'fp32' instead."
            )
        return torch.bfloat16
    return torch.float16


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str = "auto") -> Iterator[None]:
    """Context manager: ``torch.autocast`` for :func:`autocast_dtype`, or nothing for fp32."""
    device = torch.device(device)
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
