"""The padded U-Net (the common PyTorch re-implementation, after milesial/Pytorch-UNet).

3x3 convolutions with padding 1 (+ BatchNorm) + ReLU, so the output has the input's size. Widths
double at each of the ``depth`` max-pools: ``base_channels * 2**level``. With bilinear upsampling
the bottom block (and every decoder block but the last) has half the channels, as in milesial's
code.

Parameter counts (``in_channels=3, out_channels=2``, depth 4, transposed, BatchNorm; the seeds'
figures): base 64 -> 31,037,698 (milesial's ``UNet(3, 2, bilinear=False)``); base 32 -> 7,763,074;
base 16 -> 1,942,594. With ``in_channels=1`` each is smaller by ``9 * 2 * base_channels`` (1,152 at
base 64), still within 0.01% of the figures.
"""

from __future__ import annotations

import dataclasses
import logging

from torch import nn

from napari_unet.core.config import Config
from napari_unet.core.models.aux import AUX_CHOICES
from napari_unet.core.models.base import UShapedNet, check_bool, check_choice, check_int
from napari_unet.core.models.blocks import SKIPS, UPSAMPLING, DoubleConv, Down, OutConv, Up
from napari_unet.core.models.registry import register_model

logger = logging.getLogger(__name__)

#: The largest ``downscale`` (the net sees the image at most 8x smaller).
MAX_DOWNSCALE = 8


@dataclasses.dataclass(frozen=True)
class UNetConfig(Config):
    """Settings of the padded U-Net.

    Attributes:
        in_channels: Image channels.
        out_channels: Logit channels (1 binary, K semantic, 3 instances, C restoration).
        depth: Number of max-pools, 1-5.
        base_channels: Width of the first level; level ``i`` has ``base_channels * 2**i``.
        upsampling: ``"transposed"`` (2x2 stride-2 transposed conv) or ``"bilinear"``.
        skip: Skip fusion, ``"concat"`` (U-Net) or ``"add"`` (FCN).
        batch_norm: BatchNorm after every 3x3 conv.
        aux: ``"none"`` or ``"distance"``: an extra 1x1 head predicting each object's normalised
            distance to its boundary (instances; :mod:`napari_unet.core.models.aux`).
        downscale: ``k`` in 1-8: the net sees the image ``k`` times smaller (``k`` x ``k`` blocks
            averaged) and its logits are resized back to the input's size, so input sides are
            multiples of ``k * 2**depth`` and the receptive field is ``k`` times wider in image
            pixels. Chosen from the corrected objects' size (``core.training.downscale``).
    """

    in_channels: int = 1
    out_channels: int = 2
    depth: int = 4
    base_channels: int = 32
    upsampling: str = "transposed"
    skip: str = "concat"
    batch_norm: bool = True
    aux: str = "none"
    downscale: int = 1

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("out_channels", self.out_channels, 1)
        check_int("depth", self.depth, 1, 5)
        check_int("base_channels", self.base_channels, 2)
        check_choice("upsampling", self.upsampling, UPSAMPLING)
        check_choice("skip", self.skip, SKIPS)
        check_bool("batch_norm", self.batch_norm)
        check_choice("aux", self.aux, AUX_CHOICES)
        check_int("downscale", self.downscale, 1, MAX_DOWNSCALE)


@register_model("unet")
class UNet(UShapedNet):
    """Padded U-Net: (B, in_channels, H, W) float -> logits (B, out_channels, H, W) float.

    ``margin`` is 0. Sides should be divisible by ``size_multiple = 2**depth * downscale``
    (:meth:`valid_input_shape` rounds up); other sizes still run, the upsampled maps being
    zero-padded to the skip maps' size, but :meth:`output_shape` refuses them so tiling stays exact.

    Args:
        settings: A :class:`UNetConfig` (defaults when omitted).
    """

    config_class = UNetConfig

    def __init__(self, settings: UNetConfig | None = None) -> None:
        settings = settings or UNetConfig()
        super().__init__(
            settings, in_channels=settings.in_channels, out_channels=settings.out_channels
        )
        depth, bn = settings.depth, settings.batch_norm
        self.size_multiple = 2**depth * settings.downscale
        widths = [settings.base_channels * 2**level for level in range(depth + 1)]
        factor = 2 if settings.upsampling == "bilinear" else 1
        self.inc = DoubleConv(settings.in_channels, widths[0], batch_norm=bn)
        self.downs = nn.ModuleList(
            Down(
                widths[level - 1], widths[level] // (factor if level == depth else 1), batch_norm=bn
            )
            for level in range(1, depth + 1)
        )
        self.ups = nn.ModuleList()
        low = widths[depth] // factor
        for level in reversed(range(depth)):
            out = widths[level] // factor if level > 0 else widths[0]
            self.ups.append(
                Up(
                    low,
                    widths[level],
                    out,
                    widths[level],
                    upsampling=settings.upsampling,
                    skip=settings.skip,
                    batch_norm=bn,
                )
            )
            low = out
        self.outc = OutConv(widths[0], settings.out_channels)
        if settings.aux == "distance":
            self.aux_head = OutConv(widths[0], 1)

    @property
    def config(self) -> dict:
        """The constructor settings; ``aux`` only when a head is there and ``downscale`` only
        when not 1, so a checkpoint without them stays readable by releases that predate them."""
        settings = super().config
        if settings.get("aux") == "none":
            del settings["aux"]
        if settings.get("downscale") == 1:
            del settings["downscale"]
        return settings
