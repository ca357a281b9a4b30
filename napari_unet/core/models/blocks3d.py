"""3-D U-Net building blocks (Çiçek et al. 2016), on ``(B, C, D, H, W)`` tensors.

``DoubleConv3d`` -> ``Down3d`` (max-pool + DoubleConv3d) -> ``Up3d`` (upsample, concatenate the
skip map, DoubleConv3d) -> ``OutConv3d`` (1x1x1). Pooling factors and kernels are per axis, so an
anisotropic net can pool ``(1, 2, 2)`` and convolve ``(1, 3, 3)`` while Z is coarse. With
``padded=True`` every convolution keeps the size; with ``padded=False`` each kernel-3 axis loses
2 voxels per convolution and ``Up3d`` center-crops the skip map ("copy and crop").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLING_3D = ("transposed", "trilinear")

Triple = tuple[int, int, int]


def center_crop_nd(features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop the trailing ``len(size)`` axes of ``features`` to their central ``size``."""
    index = [slice(None)] * (features.ndim - len(size))
    for have, want in zip(features.shape[-len(size) :], size):
        start = (have - want) // 2
        index.append(slice(start, start + want))
    return features[tuple(index)]


def pad_to_nd(features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad the trailing axes of ``features`` symmetrically (extra voxel last) to ``size``."""
    pads: list[int] = []
    for have, want in reversed(list(zip(features.shape[-len(size) :], size))):
        extra = max(int(want) - int(have), 0)
        pads += [extra // 2, extra - extra // 2]
    return F.pad(features, pads) if any(pads) else features


class DoubleConv3d(nn.Sequential):
    """(conv -> [BatchNorm] -> ReLU) x 2: (B, in, D, H, W) -> (B, out, D', H', W').

    Args:
        in_channels: Input channels.
        mid_channels: Channels after the first conv (Çiçek et al.: half of ``out_channels`` in the
            contracting path).
        out_channels: Output channels.
        kernel: Kernel size per axis (3, or 1 on a coarse axis).
        padded: Keep the size (padding ``k // 2``) or lose ``k - 1`` voxels per conv (valid).
        batch_norm: BatchNorm after each conv (the convs then have no bias).
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        *,
        kernel: Triple = (3, 3, 3),
        padded: bool = True,
        batch_norm: bool = True,
    ) -> None:
        padding = tuple(k // 2 for k in kernel) if padded else 0
        layers: list[nn.Module] = []
        for cin, cout in ((in_channels, mid_channels), (mid_channels, out_channels)):
            layers.append(nn.Conv3d(cin, cout, kernel, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm3d(cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down3d(nn.Sequential):
    """Max-pool by ``pool`` (e.g. 2x2x2 or 1x2x2), then :class:`DoubleConv3d`."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        *,
        pool: Triple = (2, 2, 2),
        kernel: Triple = (3, 3, 3),
        padded: bool = True,
        batch_norm: bool = True,
    ) -> None:
        super().__init__(
            nn.MaxPool3d(pool, stride=pool),
            DoubleConv3d(
                in_channels,
                mid_channels,
                out_channels,
                kernel=kernel,
                padded=padded,
                batch_norm=batch_norm,
            ),
        )


class Up3d(nn.Module):
    """Upsample the deeper map by ``pool``, concatenate [skip, upsampled], then DoubleConv3d.

    As in Çiçek et al. the up-convolution keeps the channel count (512 -> 512 at the bottom of the
    paper's net); trilinear upsampling keeps it too. Valid nets center-crop the skip map to the
    upsampled one; padded nets zero-pad the upsampled map to the skip map (odd sides).

    Args:
        low_channels: Channels of the deeper map.
        skip_channels: Channels of the skip map.
        out_channels: Channels of both convolutions.
        pool: Factor per axis (the pooling of the matching ``Down3d``).
        upsampling: ``"transposed"`` (kernel = stride = ``pool``) or ``"trilinear"``.
        kernel, padded, batch_norm: As for :class:`DoubleConv3d`.
    """

    def __init__(
        self,
        low_channels: int,
        skip_channels: int,
        out_channels: int,
        *,
        pool: Triple = (2, 2, 2),
        upsampling: str = "transposed",
        kernel: Triple = (3, 3, 3),
        padded: bool = True,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if upsampling not in UPSAMPLING_3D:
            raise ValueError(f"bad Up3d block: upsampling={upsampling!r}")
        self.padded = padded
        if upsampling == "transposed":
            self.up: nn.Module = nn.ConvTranspose3d(low_channels, low_channels, pool, stride=pool)
        else:
            self.up = nn.Upsample(
                scale_factor=tuple(float(p) for p in pool), mode="trilinear", align_corners=False
            )
        self.conv = DoubleConv3d(
            low_channels + skip_channels,
            out_channels,
            out_channels,
            kernel=kernel,
            padded=padded,
            batch_norm=batch_norm,
        )

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """(B, low, d, h, w), (B, skip, D, H, W) -> (B, out, D', H', W')."""
        upsampled = self.up(low)
        if self.padded:
            upsampled = pad_to_nd(upsampled, skip.shape[-3:])
        else:
            skip = center_crop_nd(skip, upsampled.shape[-3:])
        return self.conv(torch.cat([skip, upsampled], dim=1))


class OutConv3d(nn.Conv3d):
    """1x1x1 convolution to the output channels (logits)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)
