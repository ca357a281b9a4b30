"""The interface every segmentation network in the zoo shares.

A :class:`SegmentationNet` maps ``(B, in_channels, H, W)`` float tensors to raw ``logits`` ``(B,
out_channels, H - 2*margin, W - 2*margin)`` (no activation). Padded nets have ``margin == 0`` and
need sides divisible by ``size_multiple``; valid-convolution nets (the original U-Net) lose
``margin`` pixels on each side and accept only sizes for which every max-pool sees an even size.

Each concrete net is built from a frozen :class:`~napari_unet.core.config.Config` (its
``config_class``); ``net.config`` is that config as a plain JSON-able dict, so
``build_model(net.arch, **net.config)`` rebuilds the same architecture.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from napari_unet.core.config import Config
from napari_unet.core.errors import ChannelMismatchError

logger = logging.getLogger(__name__)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def _round_up(size: int, multiple: int) -> int:
    return max(multiple, -(-size // multiple) * multiple)


class SegmentationNet(nn.Module):
    """Base class: a network returning logits, with its input/output geometry.

    Subclasses set ``config_class`` (a frozen Config dataclass), call ``super().__init__(config)``
    and build their layers; :func:`~napari_unet.core.models.registry.register_model` sets ``arch``.

    Attributes:
        arch: Registry name of the architecture (e.g. ``"unet"``).
        config: JSON-able dict of the constructor settings (``build_model(arch, **config)``).
        settings: The same settings as the typed, frozen config object.
        in_channels: Channels the input tensor must have.
        out_channels: Channels of the returned logits.
        size_multiple: Input sides must be divisible by this (padded nets).
    """

    arch: ClassVar[str] = ""
    config_class: ClassVar[type[Config]] = Config

    def __init__(self, settings: Config, *, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.settings = settings
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = 1

    @property
    def config(self) -> dict[str, Any]:
        """The constructor settings as a plain JSON-able dict."""
        return self.settings.to_dict()

    @property
    def margin(self) -> int:
        """Pixels lost on each side of the input (0 for padded nets)."""
        return 0

    def valid_input_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The smallest accepted input shape >= ``shape`` per side (padded nets: round up).

        Args:
            shape: Desired input ``(H, W)``.

        Returns:
            ``(H', W')`` with ``H' >= H``, ``W' >= W`` that :meth:`output_shape` accepts.
        """
        return tuple(_round_up(int(s), self.size_multiple) for s in shape)  # type: ignore[return-value]

    def output_shape(self, input_shape: tuple[int, int]) -> tuple[int, int]:
        """Spatial shape of the logits for an input of ``input_shape`` ``(H, W)``.

        Raises:
            ValueError: The net cannot take this size; the message names the nearest valid ones.
        """
        for size in input_shape:
            if size < 1 or size % self.size_multiple:
                lower = (size // self.size_multiple) * self.size_multiple
                upper = _round_up(size, self.size_multiple)
                nearest = f"{lower} or {upper}" if lower >= self.size_multiple else f"{upper}"
                raise ValueError(
                    f"{self.arch} needs input sides divisible by {self.size_multiple}; "
                    f"{size} is not (nearest valid sizes: {nearest})"
                )
        return tuple(int(s) - 2 * self.margin for s in input_shape)  # type: ignore[return-value]

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the contracting path (what "freeze encoder" freezes)."""
        raise NotImplementedError

    def check_input(self, image: torch.Tensor) -> None:
        """Raise a clear error unless ``image`` is ``(B, in_channels, H, W)``."""
        if image.ndim != 4:
            raise ValueError(
                f"{self.arch} expects a (batch, channels, height, width) tensor, "
                f"got shape {tuple(image.shape)}"
            )
        if image.shape[1] != self.in_channels:
            raise ChannelMismatchError(
                f"The model expects {self.in_channels} input channel(s) but the image has "
                f"{image.shape[1]}; pick the matching channel axis or a model trained for "
                f"{image.shape[1]} channel(s)."
            )

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, config={self.config}"


class UShapedNet(SegmentationNet):
    """A U-Net made of ``inc`` -> ``downs`` (contracting path) -> ``ups`` -> ``outc``.

    Subclasses build those four modules (from :mod:`napari_unet.core.models.blocks`); the skip of
    each ``Up`` is the matching contracting-path feature map. Shape contract:
    (B, in_channels, H, W) -> logits (B, out_channels, H - 2*margin, W - 2*margin).
    """

    inc: nn.Module
    downs: nn.ModuleList
    ups: nn.ModuleList
    outc: nn.Module

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the first block and the ``Down`` blocks (the contracting path)."""
        yield from self.inc.parameters()
        yield from self.downs.parameters()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> logits (B, out_channels, H - 2*margin, W - 2*margin)."""
        self.check_input(image)
        features = [self.inc(image)]
        for down in self.downs:
            features.append(down(features[-1]))
        decoded = features.pop()
        for up in self.ups:
            decoded = up(decoded, features.pop())
        return self.outc(decoded)
