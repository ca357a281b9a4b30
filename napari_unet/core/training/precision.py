"""Training precision on the CPU: bf16 autocast only where it is measured to be faster.

A CPU with native bf16 units (AVX512-BF16 or AMX,
:func:`~napari_unet.core.device.cpu_supports_bf16`) was taken to train faster in bf16. On the
Intel Xeon of session 15 it did not: a training step of the recipe's net (depth 4, base 32,
batch 4 x 256 x 256, one thread) took 3.9 s in bf16 against 3.3 s in fp32, and
``bench_learn.py --quick --ablations fp32`` ran 40 steps instead of 30 in the same 2 CPU-minutes.
:func:`bf16_trains_faster` therefore times one forward and backward pass of a copy of the model in
each precision on a random one-sample batch of the training input's shape (after one warm-up pass
each; about 5 s on that CPU, once per run) and keeps bf16 only when it is at least 5 % faster
(:data:`MARGIN`). The answer is kept per net, input shape and thread count for the process.
:func:`bf16_by_default` is the whole decision for a run that leaves the precision open; the
training step and the width rule (``core.training.net_width``, which times the pass the run
will make) both ask it.
"""

from __future__ import annotations

import copy
import json
import logging
import time

import torch

from napari_unet.core import device

logger = logging.getLogger(__name__)

__all__ = ["MARGIN", "bf16_by_default", "bf16_trains_faster"]

#: bf16 is kept only when its pass takes less than this share of the fp32 pass (close calls go to
#: fp32: same speed, better numerics).
MARGIN = 0.95
#: (net, input shape, threads) -> bf16 is faster; measured once per process.
_MEASURED: dict[tuple, bool] = {}


def bf16_by_default(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    memory_format: torch.memory_format = torch.contiguous_format,
) -> bool:
    """Whether a CPU run that leaves the precision open (``TrainConfig.bf16_cpu = None``) trains
    ``model`` under bf16 autocast: a 2-D net, a CPU with native bf16 and a timed pass
    (:func:`bf16_trains_faster`, at the pool's scale) faster in it. 3-D nets train in fp32: a
    bf16 3-D run diverged (NaN at step 262 of bench_3d's ISBI run) where fp32 did not.

    Args:
        model: the net (untouched). input_shape: one training input at the pool's scale.
        memory_format: the training batches' layout.
    """
    from napari_unet.core.training.scaled_pool import at_pool_scale

    if getattr(model, "spatial_dims", 2) == 3 or not device.cpu_supports_bf16():
        return False
    with at_pool_scale(model):  # timed on the pool's patches
        return bf16_trains_faster(model, input_shape, memory_format)


def bf16_trains_faster(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    memory_format: torch.memory_format = torch.contiguous_format,
) -> bool:
    """Whether a training pass of ``model`` (on the CPU) is faster under bf16 autocast.

    Args:
        model: the net to train (untouched: a copy is timed, so weights, batch-norm statistics
            and the random streams of the run stay as they were).
        input_shape: spatial shape of one training input, ``(h, w)`` or ``(d, h, w)``.
        memory_format: the training batches' (``channels_last`` where the run uses it).
    """
    config = json.dumps(getattr(model, "config", {}), sort_keys=True, default=str)
    shape, threads = tuple(int(s) for s in input_shape), torch.get_num_threads()
    key = (type(model).__name__, config, shape, threads, str(memory_format))
    if key not in _MEASURED:
        _MEASURED[key] = _measure(model, shape, threads, memory_format)
    return _MEASURED[key]


def _measure(
    model: torch.nn.Module, shape: tuple[int, ...], threads: int, memory_format: torch.memory_format
) -> bool:
    # eval mode: batch norm on its running statistics, so a one-patch batch whose deepest
    # features are 1 x 1 (a 16-px patch) is timed too; the arithmetic is the same
    probe = copy.deepcopy(model).to("cpu").eval()
    generator = torch.Generator().manual_seed(0)
    channels = int(getattr(model, "in_channels", 1))
    image = torch.randn((1, channels, *shape), generator=generator)
    image = image.contiguous(memory_format=memory_format)
    seconds = {}
    for bf16 in (False, True, False, True):  # a warm-up pass each, then the timed ones
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = probe(image)
        out = out[0] if isinstance(out, (list, tuple)) else out
        out.float().square().mean().backward()
        probe.zero_grad(set_to_none=True)
        seconds[bf16] = time.perf_counter() - start
    faster = seconds[True] < MARGIN * seconds[False]
    logger.info(
        "training pass on this CPU: bf16 %.2f s, fp32 %.2f s (%d thread(s)): %s",
        seconds[True],
        seconds[False],
        threads,
        "bf16 autocast" if faster else "fp32",
    )
    return faster
