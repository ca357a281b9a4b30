"""UNet++ (Zhou et al. 2018): nested, dense skip pathways, deep supervision and pruning.

Node ``X^{i,j}`` (level ``i``, column ``j``) is a DoubleConv of the concatenation of all earlier
nodes of its level ``X^{i,0..j-1}`` and the upsampled node below ``X^{i+1,j-1}``; column 0 is the
encoder. The heads (1x1 convs) sit on the top nodes ``X^{0,j}``: with ``deep_supervision`` one per
column ``j = 1..depth`` (UNet++ embeds U-Nets of depths 1..depth), else only on ``X^{0,depth}``.
Pruning: the head of column ``L`` depends only on nodes with ``i + j <= L``, so ``inference_depth =
L`` computes just those, and returns exactly what the full network's head ``L`` returns.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from napari_unet.core.config import Config
from napari_unet.core.models.base import SegmentationNet, check_bool, check_int
from napari_unet.core.models.blocks import DoubleConv, OutConv
from napari_unet.core.models.registry import register_model

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class UNetPlusPlusConfig(Config):
    """Settings of UNet++.

    Attributes:
        in_channels: Image channels.
        out_channels: Logit channels.
        depth: Number of max-pools, 1-5.
        base_channels: Width of level 0; level ``i`` has ``base_channels * 2**i``.
        batch_norm: BatchNorm after every 3x3 conv.
        deep_supervision: A head on every top node ``X^{0,j}`` (train all with
            :meth:`UNetPlusPlus.forward_heads`), which makes pruning possible.
        inference_depth: Column whose head :meth:`UNetPlusPlus.forward` returns (None = ``depth``);
            below ``depth`` it needs ``deep_supervision``.
    """

    in_channels: int = 1
    out_channels: int = 2
    depth: int = 4
    base_channels: int = 32
    batch_norm: bool = True
    deep_supervision: bool = False
    inference_depth: int | None = None

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("out_channels", self.out_channels, 1)
        check_int("depth", self.depth, 1, 5)
        check_int("base_channels", self.base_channels, 2)
        check_bool("batch_norm", self.batch_norm)
        check_bool("deep_supervision", self.deep_supervision)
        if self.inference_depth is not None:
            check_int("inference_depth", self.inference_depth, 1, self.depth)
            if not self.deep_supervision and self.inference_depth != self.depth:
                raise ValueError(
                    f"inference_depth {self.inference_depth} < depth {self.depth} needs "
                    "deep_supervision=True (only then are the shallower heads trained)"
                )


@register_model("unetpp")
class UNetPlusPlus(SegmentationNet):
    """UNet++: (B, in_channels, H, W) -> logits (B, out_channels, H, W) (margin 0).

    Sides should be divisible by ``size_multiple = 2**depth``. :meth:`forward` returns the logits of
    head ``inference_depth``; :meth:`forward_heads` returns every head, shallow to deep.

    Args:
        settings: A :class:`UNetPlusPlusConfig` (defaults when omitted).
    """

    config_class = UNetPlusPlusConfig

    def __init__(self, settings: UNetPlusPlusConfig | None = None) -> None:
        settings = settings or UNetPlusPlusConfig()
        super().__init__(
            settings, in_channels=settings.in_channels, out_channels=settings.out_channels
        )
        depth, bn = settings.depth, settings.batch_norm
        self.depth = depth
        self.size_multiple = 2**depth
        widths = [settings.base_channels * 2**level for level in range(depth + 1)]
        self.nodes = nn.ModuleDict()
        for level in range(depth + 1):
            cin = settings.in_channels if level == 0 else widths[level - 1]
            self.nodes[f"x{level}_0"] = DoubleConv(cin, widths[level], batch_norm=bn)
        for column in range(1, depth + 1):
            for level in range(depth - column + 1):
                cin = widths[level] * column + widths[level + 1]
                self.nodes[f"x{level}_{column}"] = DoubleConv(cin, widths[level], batch_norm=bn)
        self.head_columns = list(range(1, depth + 1)) if settings.deep_supervision else [depth]
        self.heads = nn.ModuleDict(
            {
                f"head{column}": OutConv(widths[0], settings.out_channels)
                for column in self.head_columns
            }
        )

    @property
    def inference_depth(self) -> int:
        """Column whose head :meth:`forward` returns; setting it validates and updates config."""
        return self.settings.inference_depth or self.depth

    @inference_depth.setter
    def inference_depth(self, value: int) -> None:
        self.settings = self.settings.replace(inference_depth=value)

    def _top_nodes(self, image: torch.Tensor, columns: int) -> dict[int, torch.Tensor]:
        """Compute the nodes with ``level + column <= columns``; return ``{j: X^{0,j}}``."""
        x: dict[tuple[int, int], torch.Tensor] = {}
        for level in range(columns + 1):
            source = image if level == 0 else F.max_pool2d(x[level - 1, 0], 2)
            x[level, 0] = self.nodes[f"x{level}_0"](source)
        for column in range(1, columns + 1):
            for level in range(columns - column + 1):
                same_level = [x[level, k] for k in range(column)]
                below = F.interpolate(
                    x[level + 1, column - 1],
                    size=same_level[0].shape[-2:],
                    mode="bilinear",
                    align_corners=True,
                )
                x[level, column] = self.nodes[f"x{level}_{column}"](
                    torch.cat([*same_level, below], dim=1)
                )
        return {column: x[0, column] for column in range(1, columns + 1)}

    def forward_heads(self, image: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_channels, H, W) -> one logits tensor (B, out_channels, H, W) per head.

        Heads are ordered shallow to deep (columns 1..depth with deep supervision, else one).
        """
        self.check_input(image)
        top = self._top_nodes(image, self.depth)
        return [self.heads[f"head{column}"](top[column]) for column in self.head_columns]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> logits (B, out_channels, H, W) of head ``inference_depth``.

        Only the nodes that head needs are computed (pruning).
        """
        self.check_input(image)
        columns = self.inference_depth
        top = self._top_nodes(image, columns)
        return self.heads[f"head{columns}"](top[columns])

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the column-0 nodes ``X^{i,0}``."""
        for level in range(self.depth + 1):
            yield from self.nodes[f"x{level}_0"].parameters()
