"""The width of a new model for the time budget: a net too wide for the CPU learns too few steps.

The recipe's new model is a base-32 U-Net (``UNetConfig.base_channels``). At the issue's budget
(10 CPU-minutes) it beats the plain loop's base-16 net even where it makes a third of the steps
(fluorescence, K = 3, seed 0, Intel Xeon: AP@0.5 / AP@0.75 0.816 / 0.716 in 190 steps against
0.804 / 0.566 in 636; docs/learning_ablation.md). With 2 CPU-minutes on the same CPU it makes
37-41 steps and loses by far: 0.476 ± 0.364 against base 16's 0.828 ± 0.008 (134 steps, seeds
0-1). So before a time-budgeted run of a new 2-D model :func:`choose_width` times one training
pass of the net at the run's batch and patch, and when the budget buys fewer than
:data:`MIN_STEPS` steps, the model is built :data:`NARROW_BASE` wide instead (session 17 measured
where the two cross: between 71 and 95 steps of base 32).

Example:
    >>> choice = choose_width(model, (256, 256), batch=4, budget_s=120)  # doctest: +SKIP
    >>> choice.base_channels, choice.line()  # doctest: +SKIP
    (16, 'net base 16: base 32 would make about 39 steps in 2 min on this CPU (fewer than 85)')
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from typing import Any

import torch

from napari_unet.core.training.precision import bf16_by_default
from napari_unet.core.training.scaled_pool import at_pool_scale, pool_scale
from napari_unet.core.training.step import channels_last_format

logger = logging.getLogger(__name__)

#: Fewer expected steps than this for the default net: the narrow net is built instead. Measured
#: (fluorescence and stained nuclei, K = 3, Intel Xeon, seeds 0-2): base 32 lost at 37-41 steps
#: (2 CPU-min) and at 67-71 (3.5 min, AP@0.5 0.771 against 0.794), won or tied at 95-118 (5 min:
#: fluorescence 0.832 against 0.785, stained 0.464 against 0.469 with the better IoU).
MIN_STEPS = 85
#: Timed passes after the warm-up (the quickest counts).
TIMED_PASSES = 2
#: The narrow net's base width (the plain loop's, and the built-in models').
NARROW_BASE = 16
#: A step costs this much more than its forward and backward pass (sampling, augmentation, loss,
#: optimiser): 3.2 s per step measured against 2.7 s for the pass of a base-32 net at batch 4.
OVERHEAD = 1.15


@dataclasses.dataclass(frozen=True)
class WidthChoice:
    """The base width to build and why.

    Attributes:
        base_channels: the width to build (the default's or :data:`NARROW_BASE`).
        default_base: the default net's width.
        expected_steps: steps the budget buys with the default net.
        budget_s: the time budget in seconds.
    """

    base_channels: int
    default_base: int
    expected_steps: int
    budget_s: float

    @property
    def narrowed(self) -> bool:
        """Whether the narrow net replaces the default."""
        return self.base_channels != self.default_base

    def line(self) -> str:
        """One line for the user, e.g. ``net base 16: base 32 would make about 39 steps in 2 min
        on this CPU (fewer than 85)``."""
        budget = f"{self.budget_s / 60:g} min"
        if self.narrowed:
            return (
                f"net base {self.base_channels}: base {self.default_base} would make about "
                f"{self.expected_steps} steps in {budget} on this CPU (fewer than {MIN_STEPS})"
            )
        return f"net base {self.base_channels}: about {self.expected_steps} steps in {budget}"


def seconds_per_step(model: torch.nn.Module, input_shape: tuple[int, ...], batch: int) -> float:
    """Seconds one training step of ``model`` takes on the CPU (the quickest of
    :data:`TIMED_PASSES` timed passes x :data:`OVERHEAD`).

    A copy of the model is timed in eval mode (batch norm on running statistics, same
    arithmetic), so the model, its statistics and the random streams are left as they were.
    ``input_shape`` is at full resolution: a model that sees the images ``k`` times smaller is
    timed as it trains, on patches ``k`` times smaller. It is timed as the run trains by default
    (``TrainConfig``: channels-last batches, bf16 autocast where
    :func:`~napari_unet.core.training.precision.bf16_by_default` says so): on a CPU whose bf16
    pass takes half the fp32 one, an fp32 timing promised half the steps the run then made.
    """
    probe = copy.deepcopy(model).to("cpu").eval()
    channels = int(getattr(model, "in_channels", 1))
    generator = torch.Generator().manual_seed(0)
    k = pool_scale(model)  # it trains on patches k times smaller (core.training.scaled_pool)
    shape = tuple(int(s) // k for s in input_shape)
    layout = channels_last_format(model)
    probe.to(memory_format=layout)  # the run's weights are channels-last too (run_parts)
    image = torch.randn((batch, channels, *shape), generator=generator)
    image = image.contiguous(memory_format=layout)
    bf16 = bf16_by_default(probe, shape, layout)  # the run's own answer (cached)
    passes = []
    for _ in range(1 + TIMED_PASSES):  # a warm-up pass, then the timed ones
        start = time.perf_counter()
        with at_pool_scale(probe), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = probe(image)
        out = out[0] if isinstance(out, (list, tuple)) else out
        out.float().square().mean().backward()
        probe.zero_grad(set_to_none=True)
        passes.append(time.perf_counter() - start)
    return min(passes[1:]) * OVERHEAD  # the quickest: a pass slowed by another program is not


def choose_width(
    model: torch.nn.Module, input_shape: tuple[int, ...], *, batch: int, budget_s: float
) -> WidthChoice:
    """The base width a new model of the default's kind should have for ``budget_s`` seconds.

    Args:
        model: the default new model (not changed).
        input_shape: spatial shape of one training input ``(h, w)``.
        batch: patches per step.
        budget_s: the run's time budget.
    """
    base = int(width_settings(model).get("base_channels") or 0)
    step = seconds_per_step(model, input_shape, batch)
    expected = int(budget_s / max(step, 1e-6))
    narrow = base > NARROW_BASE and expected < MIN_STEPS
    choice = WidthChoice(NARROW_BASE if narrow else base, base, expected, float(budget_s))
    logger.debug("training step of the new model: %.2f s; %s", step, choice.line())
    return choice


def width_settings(model: Any) -> dict[str, Any]:
    """The ``build_model`` settings of ``model`` (``net.config``; ``{}`` when it has none)."""
    config = getattr(model, "config", None)
    return dict(config) if isinstance(config, dict) else {}
