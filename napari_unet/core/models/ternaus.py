"""TernausNet (Iglovikov & Shvets 2018): U-Net with a VGG11 or VGG16 encoder (unet11, unet16).

The encoder is VGG's convolutional part, written here (no torchvision) with torchvision's layer
indices, so an ImageNet VGG state_dict in torchvision format (keys ``features.N.weight``/``bias``)
loads with :func:`load_vgg_weights` from a local file the user has; nothing is ever downloaded.
Decoder blocks follow the paper: 3x3 conv + ReLU then a stride-2 transposed conv (k=3, p=1,
output_padding=1 in UNet11; k=4, p=1, the "V2" block, in UNet16) + ReLU, or bilinear upsampling +
two conv + ReLU.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_unet.core.config import Config
from napari_unet.core.errors import CheckpointError
from napari_unet.core.models.base import SegmentationNet, check_choice, check_int
from napari_unet.core.models.registry import register_model

logger = logging.getLogger(__name__)

#: torchvision's VGG layouts: channels of each 3x3 conv, "M" for a 2x2 max-pool.
VGG_LAYOUTS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ),
}


def conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (padding 1) + ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True))


class VGGEncoder(nn.Module):
    """VGG ``features`` with torchvision's indices; returns the five pre-pool maps and the bottom.

    Args:
        layout: A key of :data:`VGG_LAYOUTS`.
        in_channels: Image channels (VGG itself has 3).
    """

    def __init__(self, layout: str, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG_LAYOUTS[layout]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(B, C, H, W) -> ([5 skip maps, shallow to deep], bottom (B, 512, H/32, W/32))."""
        skips = []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                skips.append(image)
            image = layer(image)
        return skips, image


class DecoderBlock(nn.Sequential):
    """Doubles the size: (B, in, h, w) -> (B, out, 2h, 2w).

    ``"transposed"``: conv+ReLU to ``mid`` then ConvTranspose2d(k=``kernel_size``, s=2, p=1) + ReLU
    (output_padding 1 for k=3). ``"bilinear"``: upsample x2, conv+ReLU to ``mid``, conv+ReLU to
    ``out``.
    """

    def __init__(
        self, in_channels: int, mid: int, out: int, *, upsampling: str, kernel_size: int
    ) -> None:
        if upsampling == "transposed":
            super().__init__(
                conv_relu(in_channels, mid),
                nn.ConvTranspose2d(
                    mid, out, kernel_size, stride=2, padding=1, output_padding=kernel_size % 2
                ),
                nn.ReLU(inplace=True),
            )
        else:
            super().__init__(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                conv_relu(in_channels, mid),
                conv_relu(mid, out),
            )


@dataclasses.dataclass(frozen=True)
class TernausConfig(Config):
    """Settings of UNet11 / UNet16.

    Attributes:
        in_channels: Image channels (VGG weights are RGB; other counts adapt the first conv).
        out_channels: Logit channels (the paper: 1, binary).
        num_filters: Decoder width unit (the paper: 32).
        upsampling: ``"transposed"`` (the paper's decoder blocks) or ``"bilinear"``.
        encoder_weights: Path of a local torchvision-format VGG state_dict (.pth) to initialise the
            encoder with, or None. Never downloaded.
    """

    in_channels: int = 3
    out_channels: int = 1
    num_filters: int = 32
    upsampling: str = "transposed"
    encoder_weights: str | None = None

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("out_channels", self.out_channels, 1)
        check_int("num_filters", self.num_filters, 1)
        check_choice("upsampling", self.upsampling, ("transposed", "bilinear"))
        if self.encoder_weights is not None and not isinstance(self.encoder_weights, str):
            raise ValueError(
                f"encoder_weights must be a file path or None, not {self.encoder_weights!r}"
            )


class _TernausNet(SegmentationNet):
    """(B, in_channels, H, W) -> logits (B, out_channels, H, W); H, W divisible by 32 (margin 0)."""

    config_class = TernausConfig
    layout = "vgg11"
    kernel_size = 3
    dec4_factor = 4  # dec4 outputs num_filters * 4 in UNet11, * 8 in UNet16

    def __init__(self, settings: TernausConfig | None = None) -> None:
        settings = settings or TernausConfig()
        super().__init__(
            settings, in_channels=settings.in_channels, out_channels=settings.out_channels
        )
        self.size_multiple = 32
        nf = settings.num_filters

        def block(in_channels: int, mid: int, out: int) -> DecoderBlock:
            return DecoderBlock(
                in_channels, mid, out, upsampling=settings.upsampling, kernel_size=self.kernel_size
            )

        self.encoder = VGGEncoder(self.layout, settings.in_channels)
        self.center = block(512, nf * 16, nf * 8)
        self.dec5 = block(512 + nf * 8, nf * 16, nf * 8)
        self.dec4 = block(512 + nf * 8, nf * 16, nf * self.dec4_factor)
        self.dec3 = block(256 + nf * self.dec4_factor, nf * 8, nf * 2)
        self.dec2 = block(128 + nf * 2, nf * 4, nf)
        self.dec1 = conv_relu(64 + nf, nf)
        self.final = nn.Conv2d(nf, settings.out_channels, 1)
        if settings.encoder_weights:
            load_vgg_weights(self, settings.encoder_weights)

    @property
    def config(self) -> dict[str, Any]:
        """Settings; ``encoder_weights`` is None since loaded weights live in the state_dict."""
        return {**self.settings.to_dict(), "encoder_weights": None}

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """The VGG encoder's parameters."""
        return self.encoder.parameters()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> logits (B, out_channels, H, W), H and W multiples of 32."""
        self.check_input(image)
        skips, bottom = self.encoder(image)
        decoded = self.center(bottom)
        for decoder, skip in zip(
            (self.dec5, self.dec4, self.dec3, self.dec2, self.dec1), skips[::-1]
        ):
            decoded = decoder(torch.cat([decoded, skip], dim=1))
        return self.final(decoded)


@register_model("unet11")
class UNet11(_TernausNet):
    """TernausNet with a VGG11 encoder (decoder: transposed conv k=3, output_padding 1)."""

    layout = "vgg11"
    kernel_size = 3
    dec4_factor = 4


@register_model("unet16")
class UNet16(_TernausNet):
    """TernausNet with a VGG16 encoder (decoder: "V2" transposed conv k=4)."""

    layout = "vgg16"
    kernel_size = 4
    dec4_factor = 8


def _read_state_dict(path: Path, layout: str) -> dict[str, torch.Tensor]:
    hint = f"give the path of a torchvision {layout.upper()} state_dict (.pth) or leave it empty"
    if not path.is_file():
        raise CheckpointError(f"The VGG weights file {path} does not exist; {hint}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign or unsafe files
        raise CheckpointError(
            f"{path} cannot be read as plain PyTorch weights ({type(err).__name__}); {hint}."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state_dict; {hint}.")
    features = {
        key.removeprefix("module.").removeprefix("features."): value
        for key, value in state.items()
        if isinstance(key, str) and key.removeprefix("module.").startswith("features.")
    }
    if not features or not all(isinstance(v, torch.Tensor) for v in features.values()):
        raise CheckpointError(f"{path} has no VGG 'features.N.weight' tensors; {hint}.")
    return features


def load_vgg_weights(model: _TernausNet, path: str | Path) -> None:
    """Load a torchvision-format VGG state_dict file into ``model``'s encoder, in place.

    A first conv with ``in_channels != 3`` gets the RGB kernels averaged and scaled by
    ``3 / in_channels`` (for one channel: their sum), so a gray image replicated to RGB and the same
    gray image given once produce the same first-layer response.

    Args:
        model: A ``unet11`` (VGG11 file) or ``unet16`` (VGG16 file) model.
        path: Local ``.pth`` file holding ``features.N.weight``/``bias`` tensors (``classifier.*``
            keys are ignored). Loaded with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: Missing, unreadable or foreign file, or a VGG of another depth.
    """
    path = Path(path)
    features = _read_state_dict(path, model.layout)
    target = model.encoder.features.state_dict()
    missing = sorted(set(target) - set(features), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise CheckpointError(
            f"{path} lacks VGG encoder tensors features.{', features.'.join(missing[:4])}; is it a "
            f"{model.layout.upper()} state_dict in torchvision format?"
        )
    first = next(iter(target))  # "0.weight"
    loaded = {}
    for key, expected in target.items():
        value = features[key].to(expected.dtype)
        if key == first and value.ndim == 4 and value.shape[1] != expected.shape[1]:
            value = value.mean(dim=1, keepdim=True).expand(-1, expected.shape[1], -1, -1)
            value = value * (value.new_tensor(3.0) / expected.shape[1])
        if value.shape != expected.shape:
            raise CheckpointError(
                f"{path}: features.{key} has shape {tuple(value.shape)} but {model.arch} needs "
                f"{tuple(expected.shape)}; use a torchvision {model.layout.upper()} state_dict."
            )
        loaded[key] = value.contiguous()
    model.encoder.features.load_state_dict(loaded, strict=True)
    logger.info("loaded %s encoder weights from %s", model.layout, path)
