"""Small U-Net building blocks (after milesial/Pytorch-UNet ``unet_parts.py``).

``DoubleConv`` -> ``Down`` (max-pool + DoubleConv) -> ``Up`` (upsample, fuse with the skip map,
DoubleConv) -> ``OutConv`` (1x1). With ``padding=1`` the blocks keep sizes ("padded" U-Net); with
``padding=0`` every 3x3 convolution loses 2 pixels and ``Up`` center-crops the skip map (the paper's
valid U-Net). All blocks work on NCHW and channels_last tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLING = ("transposed", "bilinear")
SKIPS = ("concat", "add")


def center_crop(features: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Crop ``features`` (B, C, H, W) to its central ``size`` (h, w) with h <= H, w <= W."""
    height, width = features.shape[-2:]
    top = (height - size[0]) // 2
    left = (width - size[1]) // 2
    return features[..., top : top + size[0], left : left + size[1]]


def pad_to(features: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Zero-pad ``features`` (B, C, h, w) symmetrically (extra pixel bottom/right) to ``size``."""
    dy = size[0] - features.shape[-2]
    dx = size[1] - features.shape[-1]
    if dy == 0 and dx == 0:
        return features
    return F.pad(features, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])


class DoubleConv(nn.Sequential):
    """(3x3 conv -> [BatchNorm] -> ReLU) x 2: (B, in, H, W) -> (B, out, H - 4 + 4*padding, ...).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        mid_channels: Channels after the first conv (default ``out_channels``).
        batch_norm: Insert BatchNorm after each conv (the convs then have no bias).
        padding: 1 keeps the size, 0 gives valid convolutions (-2 pixels per conv).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        *,
        batch_norm: bool = True,
        padding: int = 1,
    ) -> None:
        mid_channels = mid_channels or out_channels
        layers: list[nn.Module] = []
        for cin, cout in ((in_channels, mid_channels), (mid_channels, out_channels)):
            layers.append(nn.Conv2d(cin, cout, 3, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max-pool (stride 2), then :class:`DoubleConv`: (B, in, H, W) -> (B, out, ~H/2, ~W/2)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, batch_norm: bool = True, padding: int = 1
    ) -> None:
        super().__init__(
            nn.MaxPool2d(2),
            DoubleConv(in_channels, out_channels, batch_norm=batch_norm, padding=padding),
        )


class Up(nn.Module):
    """Upsample the deeper map x2, fuse it with the skip map, then :class:`DoubleConv`.

    Transposed upsampling halves the channels (``low_channels // 2``); bilinear keeps them. Fusion
    ``"concat"`` concatenates [skip, upsampled] (U-Net); ``"add"`` sums them (FCN), projecting the
    upsampled map with a 1x1 conv when its channel count differs from the skip map's. With
    ``padding=1`` an upsampled map smaller than the skip map (odd sides) is zero-padded to it; with
    ``padding=0`` the skip map is center-cropped to the upsampled map ("copy and crop").

    Args:
        low_channels: Channels of the deeper map.
        skip_channels: Channels of the skip map.
        out_channels: Output channels.
        mid_channels: Channels between the two convs of the DoubleConv (default ``out_channels``).
        upsampling: ``"transposed"`` (2x2 stride-2 transposed conv) or ``"bilinear"``.
        skip: ``"concat"`` or ``"add"``.
        batch_norm: BatchNorm in the DoubleConv.
        padding: 1 (padded) or 0 (valid convolutions).
    """

    def __init__(
        self,
        low_channels: int,
        skip_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        *,
        upsampling: str = "transposed",
        skip: str = "concat",
        batch_norm: bool = True,
        padding: int = 1,
    ) -> None:
        super().__init__()
        if upsampling not in UPSAMPLING or skip not in SKIPS:
            raise ValueError(f"bad Up block: upsampling={upsampling!r}, skip={skip!r}")
        self.skip = skip
        self.padding = padding
        if upsampling == "transposed":
            up_channels = low_channels // 2
            self.up: nn.Module = nn.ConvTranspose2d(low_channels, up_channels, 2, stride=2)
        else:
            up_channels = low_channels
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        if skip == "concat":
            self.project: nn.Module = nn.Identity()
            fused_channels = skip_channels + up_channels
        else:
            self.project = (
                nn.Conv2d(up_channels, skip_channels, 1)
                if up_channels != skip_channels
                else nn.Identity()
            )
            fused_channels = skip_channels
        self.conv = DoubleConv(
            fused_channels, out_channels, mid_channels, batch_norm=batch_norm, padding=padding
        )

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """(B, low, h, w), (B, skip, H, W) -> (B, out, H', W')."""
        upsampled = self.up(low)
        if self.padding == 0:
            skip = center_crop(skip, upsampled.shape[-2:])
        else:
            upsampled = pad_to(upsampled, skip.shape[-2:])
        if self.skip == "concat":
            fused = torch.cat([skip, upsampled], dim=1)
        else:
            fused = skip + self.project(upsampled)
        return self.conv(fused)


class OutConv(nn.Conv2d):
    """1x1 convolution to the output channels (logits): (B, in, H, W) -> (B, out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)
