"""The model zoo: U-Net variants built by name (``build_model("unet", depth=3)``)."""

from napari_unet.core.models import ternaus, unet, unet_original, unetpp  # noqa: F401  (registration)
from napari_unet.core.models.base import SegmentationNet
from napari_unet.core.models.registry import (
    build_model,
    default_config,
    list_architectures,
    register_model,
)

__all__ = [
    "SegmentationNet",
    "build_model",
    "default_config",
    "list_architectures",
    "register_model",
]
