"""3-D U-Nets: Çiçek et al. 2016 (``unet3d``) and an anisotropic padded variant (``unet3d_aniso``).

Both map ``(B, in_channels, D, H, W)`` volumes to logits ``(B, out_channels, D', H', W')``.

``unet3d`` is the paper's network ("3D U-Net: Learning Dense Volumetric Segmentation from Sparse
Annotation", MICCAI 2016): each level has two 3x3x3 convolutions, each followed by BatchNorm and
ReLU, the first giving ``base * 2**level`` channels and the second doubling them *before* the 2x2x2
max-pool (32, 64 / 64, 128 / 128, 256 / 256, 512 at base 32, depth 3); the synthesis path
up-samples by 2x2x2 (transposed convolution keeping the channels, or trilinear), concatenates the
skip map and applies two 3x3x3 convolutions with ``base * 2**(level + 1)`` channels; a 1x1x1
convolution gives the logits. ``padding="valid"`` (the paper's) loses voxels: a 132x132x116 input
gives 44x44x28 logits at depth 3 (``margin`` 44); skip maps are center-cropped.
``padding="same"`` keeps the size; sides must then be multiples of ``2**depth``.

Parameter counts (in_channels=3, out_channels=3, base 32, depth 3, BatchNorm, transposed):
19,073,187 here (convolutions without bias, each followed by an affine BatchNorm); the paper's
19,069,955 counts the same weights with a bias per convolution, no BatchNorm scale/shift and no
up-convolution bias (19,073,187 - 4,672 BatchNorm + 2,336 conv biases - 896 up-conv biases). One
input and two output channels (the default): 19,071,394.

``unet3d_aniso`` is the same network, padded, with a per-level pooling schedule chosen from the
voxel size as nnU-Net does (:mod:`napari_unet.core.models.pooling`): for serial-section EM (50 x 4
x 4 nm) it pools 1x2x2 and convolves 1x3x3 while Z is much coarser than Y/X.

Weights are drawn from a Gaussian with std ``sqrt(2 / N)``, N the incoming nodes of one neuron
(``k_z * k_y * k_x * in_channels`` for a convolution, ``in_channels`` for the up-convolution whose
kernel equals its stride), as for the 2-D original U-Net.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator

import torch
from torch import nn

from napari_unet.core.config import Config
from napari_unet.core.models.base import SegmentationNet, check_bool, check_choice, check_int
from napari_unet.core.models.blocks3d import (
    UPSAMPLING_3D,
    DoubleConv3d,
    Down3d,
    OutConv3d,
    Triple,
    Up3d,
)
from napari_unet.core.models.registry import register_model
from napari_unet.core.models.unet_original import smallest_valid_size, traced_output_size

logger = logging.getLogger(__name__)

PADDINGS = ("valid", "same")


def he_init_nd(module: nn.Module) -> None:
    """Gaussian init, std sqrt(2/N) (N = incoming nodes of one neuron), zero biases (2-D/3-D)."""
    if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
        taps = math.prod(max(k // s, 1) for k, s in zip(module.kernel_size, module.stride))
        fan_in = module.in_channels * taps
    elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
        fan_in = module.in_channels * math.prod(module.kernel_size)
    else:
        return
    nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class _UNet3DBase(SegmentationNet):
    """Shared layers of the 3-D U-Nets: ``inc`` -> ``downs`` -> ``ups`` -> ``outc``."""

    spatial_dims = 3

    def _build(
        self,
        *,
        depth: int,
        base_channels: int,
        pools: list[Triple],
        kernels: list[Triple],
        padded: bool,
        upsampling: str,
        batch_norm: bool,
    ) -> None:
        """Build the layers; ``pools`` has ``depth`` entries, ``kernels`` ``depth + 1``."""
        base = base_channels
        bn = batch_norm
        self.inc = DoubleConv3d(
            self.in_channels, base, 2 * base, kernel=kernels[0], padded=padded, batch_norm=bn
        )
        self.downs = nn.ModuleList(
            Down3d(
                base * 2**level,
                base * 2**level,
                base * 2 ** (level + 1),
                pool=pools[level - 1],
                kernel=kernels[level],
                padded=padded,
                batch_norm=bn,
            )
            for level in range(1, depth + 1)
        )
        self.ups = nn.ModuleList(
            Up3d(
                base * 2 ** (level + 2),
                base * 2 ** (level + 1),
                base * 2 ** (level + 1),
                pool=pools[level],
                upsampling=upsampling,
                kernel=kernels[level],
                padded=padded,
                batch_norm=bn,
            )
            for level in reversed(range(depth))
        )
        self.outc = OutConv3d(2 * base, self.out_channels)
        self.apply(he_init_nd)

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the first block and the ``Down3d`` blocks (the analysis path)."""
        yield from self.inc.parameters()
        yield from self.downs.parameters()

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, D, H, W) -> logits (B, out_channels, D - 2m, H - 2m, W - 2m)."""
        self.check_input(volume)
        features = [self.inc(volume)]
        for down in self.downs:
            features.append(down(features[-1]))
        decoded = features.pop()
        for up in self.ups:
            decoded = up(decoded, features.pop())
        return self.outc(decoded)


@dataclasses.dataclass(frozen=True)
class UNet3DConfig(Config):
    """Settings of the 3-D U-Net of Çiçek et al.

    Attributes:
        in_channels: Image channels.
        out_channels: Logit channels.
        depth: Number of 2x2x2 max-pools, 1-5 (the paper: 3).
        base_channels: Channels of the first convolution (the paper: 32; the second gives 64).
        padding: ``"valid"`` (the paper: unpadded convolutions, cropped skips) or ``"same"``.
        upsampling: ``"transposed"`` (2x2x2 stride-2 up-convolution) or ``"trilinear"``.
        batch_norm: BatchNorm after each convolution (the paper: yes).
    """

    in_channels: int = 1
    out_channels: int = 2
    depth: int = 3
    base_channels: int = 32
    padding: str = "valid"
    upsampling: str = "transposed"
    batch_norm: bool = True

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("out_channels", self.out_channels, 1)
        check_int("depth", self.depth, 1, 5)
        check_int("base_channels", self.base_channels, 2)
        check_choice("padding", self.padding, PADDINGS)
        check_choice("upsampling", self.upsampling, UPSAMPLING_3D)
        check_bool("batch_norm", self.batch_norm)


@register_model("unet3d")
class UNet3D(_UNet3DBase):
    """3-D U-Net (Çiçek et al. 2016): (B, C, D, H, W) -> logits (B, K, D-2m, H-2m, W-2m).

    ``padding="valid"``: every side must be a valid size (:meth:`valid_input_shape`; at depth 3
    these are ``8 * k + 92``, k >= 0: 92, 100, ..., 116, ..., 132) and ``margin`` is 44 at depth
    3 (132x132x116 -> 44x44x28). ``padding="same"``: ``margin`` 0, sides divisible by
    ``size_multiple = 2**depth``. 19.07M parameters at the paper's settings (base 32, depth 3).

    Args:
        settings: A :class:`UNet3DConfig` (defaults when omitted).
    """

    config_class = UNet3DConfig

    def __init__(self, settings: UNet3DConfig | None = None) -> None:
        settings = settings or UNet3DConfig()
        super().__init__(
            settings, in_channels=settings.in_channels, out_channels=settings.out_channels
        )
        self.depth = settings.depth
        self.padded = settings.padding == "same"
        self._build(
            depth=settings.depth,
            base_channels=settings.base_channels,
            pools=[(2, 2, 2)] * settings.depth,
            kernels=[(3, 3, 3)] * (settings.depth + 1),
            padded=self.padded,
            upsampling=settings.upsampling,
            batch_norm=settings.batch_norm,
        )
        if self.padded:
            self.size_multiple = 2**settings.depth
            self._margin = 0
        else:
            smallest = smallest_valid_size(1, settings.depth)
            traced = traced_output_size(smallest, settings.depth)
            self._margin = (smallest - traced) // 2  # type: ignore[operator]

    @property
    def margin(self) -> int:
        """Voxels lost on each side of every axis (44 at depth 3, valid; 0 padded)."""
        return self._margin

    def valid_input_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The smallest accepted ``(D', H', W') >= shape`` (valid: max-pools see even sizes)."""
        if self.padded:
            return super().valid_input_shape(shape)
        self._check_shape_length(shape)
        return tuple(smallest_valid_size(int(s), self.depth) for s in shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Logit shape ``input - 2*margin`` for a valid input ``(D, H, W)``.

        Raises:
            ValueError: A side the net cannot take; the message names the nearest valid sizes.
        """
        if self.padded:
            return super().output_shape(input_shape)
        self._check_shape_length(input_shape)
        out = []
        for size in input_shape:
            traced = traced_output_size(int(size), self.depth)
            if traced is None:
                upper = smallest_valid_size(int(size), self.depth)
                lower = next(
                    (s for s in range(int(size), 0, -1) if traced_output_size(s, self.depth)),
                    None,
                )
                nearest = f"{lower} or {upper}" if lower else f"{upper}"
                raise ValueError(
                    f"unet3d (valid, depth {self.depth}) cannot take an input side of {size}: "
                    f"every max-pool must see an even size; nearest valid sizes: {nearest}"
                )
            out.append(traced)
        return tuple(out)
