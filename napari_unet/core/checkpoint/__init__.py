"""The self-describing model file, and bioimage.io packages (export, docs, import).

Names from modules that import torch are loaded on first use, so that importing this
package (or one of its torch-free modules) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_unet.core.checkpoint.bioimageio_import import (
    DESCRIPTION_FILES,
    is_package,
    package_payload,
)
from napari_unet.core.checkpoint.format import (
    BUILTIN_DIR,
    FORMAT,
    FORMAT_VERSION,
    CheckpointInfo,
    LoadedModel,
    builtin_checkpoints,
    default_class_names,
    load_checkpoint,
    read_checkpoint_info,
    resolve_checkpoint,
    save_checkpoint,
)
from napari_unet.core.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from napari_unet.core.checkpoint.bioimageio_export import (
        BioimageioExportConfig,
        export_bioimageio,
        model_name,
        sample_slice,
        scale_range,
    )

_LAZY = {
    "BioimageioExportConfig": "napari_unet.core.checkpoint.bioimageio_export",
    "export_bioimageio": "napari_unet.core.checkpoint.bioimageio_export",
    "model_name": "napari_unet.core.checkpoint.bioimageio_export",
    "sample_slice": "napari_unet.core.checkpoint.bioimageio_export",
    "scale_range": "napari_unet.core.checkpoint.bioimageio_export",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


__all__ = [
    "BUILTIN_DIR",
    "DESCRIPTION_FILES",
    "FORMAT",
    "FORMAT_VERSION",
    "BioimageioExportConfig",
    "CheckpointInfo",
    "LoadedModel",
    "builtin_checkpoints",
    "default_class_names",
    "export_bioimageio",
    "is_package",
    "load_checkpoint",
    "model_name",
    "package_payload",
    "read_checkpoint_info",
    "resolve_checkpoint",
    "sample_slice",
    "save_checkpoint",
    "scale_range",
]
