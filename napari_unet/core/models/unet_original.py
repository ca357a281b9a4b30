"""The paper's U-Net (Ronneberger et al. 2015) with valid (unpadded) convolutions.

Each 3x3 convolution loses 2 pixels, every 2x2 max-pool must see an even size, the 2x2
up-convolutions double the size and the skip maps are center-cropped before concatenation. The
geometry is computed, not tabulated: at depth 4 a 572x572 tile gives 388x388 logits (``margin`` 92).
Weights are drawn from a Gaussian with std ``sqrt(2 / N)``, N the incoming nodes of one neuron: ``k
* k * in_channels`` for a convolution (3 * 3 * 64 = 576), ``in_channels`` for the 2x2 stride-2
up-convolution (each output pixel sees one tap per input channel).
"""

from __future__ import annotations

import dataclasses
import logging
import math

from torch import nn

from napari_unet.core.config import Config
from napari_unet.core.models.base import UShapedNet, check_bool, check_int
from napari_unet.core.models.blocks import DoubleConv, Down, OutConv, Up
from napari_unet.core.models.registry import register_model

logger = logging.getLogger(__name__)


def traced_output_size(size: int, depth: int) -> int | None:
    """Output side of a valid U-Net of ``depth`` pools for input side ``size``; None if invalid.

    Invalid means a max-pool would see an odd size or a feature map would vanish.
    """
    for _ in range(depth):
        size -= 4
        if size < 2 or size % 2:
            return None
        size //= 2
    size -= 4
    if size < 1:
        return None
    for _ in range(depth):
        size = 2 * size - 4
        if size < 1:
            return None
    return size


def smallest_valid_size(size: int, depth: int) -> int:
    """The smallest input side >= ``size`` that a valid U-Net of ``depth`` pools accepts."""
    size = max(int(size), 1)
    while traced_output_size(size, depth) is None:
        size += 1
    return size


@dataclasses.dataclass(frozen=True)
class UNetOriginalConfig(Config):
    """Settings of the valid-convolution U-Net.

    Attributes:
        in_channels: Image channels.
        out_channels: Logit channels.
        depth: Number of max-pools, 1-5 (the paper: 4).
        base_channels: Width of the first level (the paper: 64); doubles at each pool.
        batch_norm: BatchNorm after each conv (not in the paper).
    """

    in_channels: int = 1
    out_channels: int = 2
    depth: int = 4
    base_channels: int = 64
    batch_norm: bool = False

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("out_channels", self.out_channels, 1)
        check_int("depth", self.depth, 1, 5)
        check_int("base_channels", self.base_channels, 2)
        check_bool("batch_norm", self.batch_norm)


def he_init(module: nn.Module) -> None:
    """Gaussian init with std sqrt(2/N) (N = incoming nodes of one neuron), zero biases."""
    if isinstance(module, nn.ConvTranspose2d):
        taps = math.prod(k // s for k, s in zip(module.kernel_size, module.stride)) or 1
        fan_in = module.in_channels * taps
    elif isinstance(module, nn.Conv2d):
        fan_in = module.in_channels * math.prod(module.kernel_size)
    else:
        return
    nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
    if module.bias is not None:
        nn.init.zeros_(module.bias)


@register_model("unet_original")
class UNetOriginal(UShapedNet):
    """Valid U-Net: (B, in_channels, H, W) -> logits (B, out_channels, H - 2*margin, W - 2*margin).

    ``H`` and ``W`` must be valid sizes (:meth:`valid_input_shape`); at depth 4 these are
    ``16 * k + 124`` for k >= 4 (188, 204, ..., 572, ...) and ``margin`` is 92.

    Args:
        settings: A :class:`UNetOriginalConfig` (defaults when omitted).
    """

    config_class = UNetOriginalConfig

    def __init__(self, settings: UNetOriginalConfig | None = None) -> None:
        settings = settings or UNetOriginalConfig()
        super().__init__(
            settings, in_channels=settings.in_channels, out_channels=settings.out_channels
        )
        depth, bn = settings.depth, settings.batch_norm
        self.depth = depth
        widths = [settings.base_channels * 2**level for level in range(depth + 1)]
        self.inc = DoubleConv(settings.in_channels, widths[0], batch_norm=bn, padding=0)
        self.downs = nn.ModuleList(
            Down(widths[level - 1], widths[level], batch_norm=bn, padding=0)
            for level in range(1, depth + 1)
        )
        self.ups = nn.ModuleList(
            Up(widths[level + 1], widths[level], widths[level], batch_norm=bn, padding=0)
            for level in reversed(range(depth))
        )
        self.outc = OutConv(widths[0], settings.out_channels)
        self.apply(he_init)
        smallest = smallest_valid_size(1, depth)
        self._margin = (smallest - traced_output_size(smallest, depth)) // 2  # type: ignore[operator]

    @property
    def margin(self) -> int:
        """Pixels lost on each side (92 at depth 4)."""
        return self._margin

    def valid_input_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The smallest valid input ``(H', W') >= shape`` (every max-pool sees an even size)."""
        return tuple(smallest_valid_size(s, self.depth) for s in shape)  # type: ignore[return-value]

    def output_shape(self, input_shape: tuple[int, int]) -> tuple[int, int]:
        """Logit shape ``input - 2*margin`` for a valid input.

        Raises:
            ValueError: An input side is not valid; the message names the nearest valid sizes.
        """
        out = []
        for size in input_shape:
            traced = traced_output_size(int(size), self.depth)
            if traced is None:
                upper = smallest_valid_size(size, self.depth)
                lower = next(
                    (s for s in range(int(size), 0, -1) if traced_output_size(s, self.depth)),
                    None,
                )
                nearest = f"{lower} or {upper}" if lower else f"{upper}"
                raise ValueError(
                    f"unet_original (depth {self.depth}) cannot take an input side of {size}: "
                    f"every max-pool must see an even size; nearest valid sizes: {nearest}"
                )
            out.append(traced)
        return tuple(out)  # type: ignore[return-value]
