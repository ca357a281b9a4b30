"""The interface every segmentation network in the zoo shares.

A :class:`SegmentationNet` maps ``(B, in_channels, H, W)`` float tensors to raw ``logits`` ``(B,
out_channels, H - 2*margin, W - 2*margin)`` (no activation). Padded nets have ``margin == 0`` and
need sides divisible by ``size_multiple``; valid-convolution nets (the original U-Net) lose
``margin`` pixels on each side and accept only sizes for which every max-pool sees an even size.

A net declares ``spatial_dims``: 2 (the default: ``(B, C, H, W)``, shapes ``(H, W)``) or 3
(``(B, C, D, H, W)``, shapes ``(D, H, W)``). The geometry methods take tuples of that length;
``size_multiples`` gives the divisor per axis (an anisotropic 3-D net pools Z less often than Y/X),
while ``size_multiple`` stays one int (the largest of them) for code that tiles 2-D.

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
from napari_unet.core.errors import ChannelMismatchError, UserInputError

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
    #: 2 for ``(B, C, H, W)`` nets, 3 for volumetric ``(B, C, D, H, W)`` nets.
    spatial_dims: ClassVar[int] = 2

    def __init__(self, settings: Config, *, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.settings = settings
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = 1
        self.axis_multiples: tuple[int, ...] | None = None

    @property
    def size_multiples(self) -> tuple[int, ...]:
        """Per-axis divisor of the input sides (``spatial_dims`` ints); padded nets only."""
        if self.axis_multiples is not None:
            return tuple(self.axis_multiples)
        return (int(self.size_multiple),) * self.spatial_dims

    def _check_shape_length(self, shape: tuple[int, ...]) -> None:
        if len(shape) != self.spatial_dims:
            names = "(D, H, W)" if self.spatial_dims == 3 else "(H, W)"
            other = "a 3-D model (unet3d, unet3d_aniso)" if len(shape) == 3 else "a 2-D model"
            raise UserInputError(
                f"{self.arch} is a {self.spatial_dims}-D model: it takes {names} shapes, got "
                f"{tuple(shape)}; use {other} for this data."
            )

    @property
    def config(self) -> dict[str, Any]:
        """The constructor settings as a plain JSON-able dict."""
        return self.settings.to_dict()

    @property
    def margin(self) -> int:
        """Pixels lost on each side of the input (0 for padded nets)."""
        return 0

    def valid_input_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The smallest accepted input shape >= ``shape`` per side (padded nets: round up).

        Args:
            shape: Desired input ``(H, W)`` (``(D, H, W)`` for a 3-D net).

        Returns:
            A shape of the same length, each side >= the asked one, that :meth:`output_shape`
            accepts.
        """
        self._check_shape_length(shape)
        return tuple(_round_up(int(s), m) for s, m in zip(shape, self.size_multiples))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial shape of the logits for ``input_shape`` (``(H, W)``, or ``(D, H, W)`` in 3-D).

        Raises:
            ValueError: The net cannot take this size; the message names the nearest valid ones.
        """
        self._check_shape_length(input_shape)
        multiples = self.size_multiples
        uniform = len(set(multiples)) == 1
        for axis, (size, multiple) in enumerate(zip(input_shape, multiples)):
            if size < 1 or size % multiple:
                lower = (size // multiple) * multiple
                upper = _round_up(size, multiple)
                nearest = f"{lower} or {upper}" if lower >= multiple else f"{upper}"
                axis_name = "DHW"[-len(multiples) :][axis]
                which = "input sides" if uniform else f"the {axis_name} side"
                raise ValueError(
                    f"{self.arch} needs {which} divisible by {multiple}; "
                    f"{size} is not (nearest valid sizes: {nearest})"
                )
        return tuple(int(s) - 2 * self.margin for s in input_shape)

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the contracting path (what "freeze encoder" freezes)."""
        raise NotImplementedError

    def check_input(self, image: torch.Tensor) -> None:
        """Raise a clear error unless ``image`` is ``(B, in_channels, H, W)`` (3-D: ``D, H, W``)."""
        if image.ndim != 2 + self.spatial_dims:
            names = "depth, height, width" if self.spatial_dims == 3 else "height, width"
            if image.ndim in (4, 5):  # a 2-D batch given to a 3-D net or the reverse
                given = "a volume" if image.ndim == 5 else "a 2-D image"
                raise UserInputError(
                    f"{self.arch} is a {self.spatial_dims}-D model: it takes (batch, channels, "
                    f"{names}) tensors but got {given} batch of shape {tuple(image.shape)}; use "
                    f"a {image.ndim - 2}-D model for this data."
                )
            raise ValueError(
                f"{self.arch} expects a (batch, channels, {names}) tensor, "
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


def require_spatial_dims(model: Any, spatial_dims: int, *, what: str) -> None:
    """Refuse ``model`` in one sentence unless it works on ``spatial_dims``-D data.

    Plain modules without ``spatial_dims`` count as 2-D.

    Args:
        model: A network (or anything with ``spatial_dims`` and ``arch``).
        spatial_dims: 2 or 3, what the caller handles.
        what: The caller, e.g. ``"slice-by-slice prediction"``, named in the message.

    Raises:
        UserInputError: ``"unet3d is a 3-D model: ..."`` when the dimensions differ.
    """
    dims = int(getattr(model, "spatial_dims", 2))
    if dims == spatial_dims:
        return
    name = getattr(model, "arch", "") or type(model).__name__
    if dims == 3:
        raise UserInputError(
            f"{name} is a 3-D model: {what} runs 2-D models only; use a 2-D model (e.g. unet) here."
        )
    raise UserInputError(
        f"{name} is a 2-D model: {what} runs 3-D models only; use a 3-D model (unet3d or "
        "unet3d_aniso) here, or predict the volume slice by slice with this one."
    )


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

    #: True on a view made by :func:`~napari_unet.core.models.aux.with_distance` (never on the
    #: model itself): ``forward`` appends the auxiliary channel to the logits; off, the output
    #: is the classes only (export, GUI).
    emit_aux: bool = False

    def _decode(self, image: torch.Tensor) -> torch.Tensor:
        self.check_input(image)
        features = [self.inc(image)]
        for down in self.downs:
            features.append(down(features[-1]))
        decoded = features.pop()
        for up in self.ups:
            decoded = up(decoded, features.pop())
        return decoded

    @property
    def downscale(self) -> int:
        """``k``: the net sees the image ``k`` times smaller (``k`` x ``k`` blocks averaged) and
        its outputs are resized back (bilinear), so objects ``k`` times larger than what its
        receptive field takes whole are seen whole; 1 for most nets (:class:`UNetConfig`)."""
        return int(getattr(self.settings, "downscale", 1) or 1)

    #: False while training on images already ``downscale`` times smaller
    #: (:func:`~napari_unet.core.training.scaled_pool.at_pool_scale`): no pooling in, no resize out.
    resize_io: bool = True

    def _shrunk(self, image: torch.Tensor) -> torch.Tensor:
        self.check_input(image)
        k = self.downscale if self.resize_io else 1
        return image if k == 1 else nn.functional.avg_pool2d(image, k)

    def _resized(self, output: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if self.downscale == 1 or not self.resize_io:
            return output
        size = tuple(image.shape[-2:])
        return nn.functional.interpolate(output, size=size, mode="bilinear", align_corners=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> logits (B, out_channels, H - 2*margin, W - 2*margin)."""
        decoded = self._decode(self._shrunk(image))
        logits = self.outc(decoded)
        head = self._modules.get("aux_head")  # ``aux="distance"``: a 1x1 head, one channel
        if self.emit_aux and head is not None:
            logits = torch.cat([logits, head(decoded).to(logits.dtype)], dim=1)
        return self._resized(logits, image)

    def forward_with_aux(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, aux)``: the class logits and the auxiliary head's raw (B, 1, h, w) output
        (None without an auxiliary head)."""
        decoded = self._decode(self._shrunk(image))
        head = self._modules.get("aux_head")
        aux = self._resized(head(decoded), image) if head is not None else None
        return self._resized(self.outc(decoded), image), aux
