"""The model zoo: U-Net variants built by name (``build_model("unet", depth=3)``), 2-D and 3-D."""

from napari_unet.core.models import (  # noqa: F401  (registration)
    ternaus,
    unet,
    unet3d,
    unet3d_aniso,
    unet_original,
    unetpp,
)
from napari_unet.core.models.base import SegmentationNet, require_spatial_dims
from napari_unet.core.models.registry import (
    architecture_spatial_dims,
    build_model,
    default_config,
    list_architectures,
    register_model,
)

__all__ = [
    "SegmentationNet",
    "architecture_spatial_dims",
    "build_model",
    "default_config",
    "list_architectures",
    "register_model",
    "require_spatial_dims",
]
