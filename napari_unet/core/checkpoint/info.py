"""What a checkpoint says about its model: the format name and version, :class:`CheckpointInfo`
(architecture, task, classes, normalisation, tiling, provenance) and :class:`LoadedModel`.

Torch-free; :mod:`napari_unet.core.checkpoint.format` writes and reads the files.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import TYPE_CHECKING, Any

from napari_unet.core.config import Config, check_task
from napari_unet.core.errors import CheckpointError

if TYPE_CHECKING:
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.models import SegmentationNet
    from napari_unet.core.postprocess.config import PostprocessConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointInfo",
    "LoadedModel",
    "default_class_names",
    "plain_data",
]

FORMAT = "napari-unet-loop checkpoint"
FORMAT_VERSION = 1


def default_class_names(task: str, out_channels: int) -> tuple[str, ...]:
    """Class names used when none are given: one per class the labels can hold."""
    if task == "binary":
        return ("background", "foreground")
    if task == "instances":
        return ("background", "interior", "boundary")
    if task == "semantic":
        return ("background", *(f"class {k}" for k in range(1, out_channels)))
    return ()


@dataclasses.dataclass(frozen=True)
class CheckpointInfo(Config):
    """Everything a checkpoint says about its model, as plain data.

    Attributes:
        arch: registry name (``build_model(arch, **model_config)`` rebuilds the network).
        model_config: the network's constructor settings.
        task: ``binary`` (1 channel), ``semantic`` (K >= 2), ``instances`` (3) or ``restoration``.
        in_channels, out_channels: the network's input and logit channels.
        class_names: one name per class of the labels (binary: background and foreground).
        normalization: ``NormalizationConfig.to_dict()``; empty means the default.
        tile_shape: preferred tile (Y, X) for prediction, or None for the predictor's default.
        overlap: preferred tile overlap in pixels, or None.
        provenance: where it came from: created, parent, data, steps, metrics, software, card...
        name, description: shown in model lists.
        format_version: the file format version it was read from or will be written with.
    """

    arch: str
    model_config: dict
    task: str
    in_channels: int
    out_channels: int
    class_names: tuple[str, ...] = ()
    normalization: dict = dataclasses.field(default_factory=dict)
    tile_shape: tuple[int, int] | None = None
    overlap: int | None = None
    provenance: dict = dataclasses.field(default_factory=dict)
    name: str = ""
    description: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        try:
            check_task(self.task)
        except ValueError as err:
            raise CheckpointError(f"{err}.") from None
        for field in ("in_channels", "out_channels"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(f"{field} must be a positive integer, got {value!r}.")
        needed = {"binary": "1", "instances": "3"}.get(self.task)
        if (needed and self.out_channels != int(needed)) or (
            self.task == "semantic" and self.out_channels < 2
        ):
            needed = needed or "at least 2"
            raise CheckpointError(
                f"a {self.task} model needs {needed} output channel(s) but this one has "
                f"{self.out_channels}; build the model with out_channels={needed} or pick the "
                "task that matches its output."
            )
        names = tuple(str(n) for n in (self.class_names or ()))
        names = names or default_class_names(self.task, self.out_channels)
        expected = len(default_class_names(self.task, self.out_channels))
        if self.task != "restoration" and len(names) != expected:
            raise CheckpointError(
                f"a {self.task} model with {self.out_channels} output channel(s) needs {expected} "
                f"class names, got {len(names)} ({', '.join(names)})."
            )
        object.__setattr__(self, "class_names", names)
        if self.tile_shape is not None:
            object.__setattr__(self, "tile_shape", tuple(int(s) for s in self.tile_shape))
        if not isinstance(self.model_config, dict) or not isinstance(self.provenance, dict):
            raise CheckpointError("model_config and provenance must be dicts.")

    @property
    def spatial_dims(self) -> int:
        """2 for an image model, 3 for a volume model (from the architecture; 2 if unknown)."""
        from napari_unet.core.models import architecture_spatial_dims

        try:
            return architecture_spatial_dims(self.arch)
        except ValueError:
            return 2

    @property
    def context_slices(self) -> int:
        """2.5-D: neighbour slices on each side given as channels (in ``provenance``; 0: none)."""
        return int(self.provenance.get("context_slices") or 0)

    @property
    def untrained(self) -> bool:
        """A new model never trained, with no weights from a built-in (``new-model``, the dock's
        New model section): its first training starts from scratch."""
        made = self.provenance.get("new_model")
        return isinstance(made, dict) and not made.get("start")

    @property
    def trained_zoom(self) -> tuple[float, float] | None:
        """The augmentation's zoom range the model was last trained with, if recorded."""
        config = self.provenance.get("train_config")
        augment = config.get("augment") if isinstance(config, dict) else None
        zoom = augment.get("affine_scale") if isinstance(augment, dict) else None
        return (float(zoom[0]), float(zoom[1])) if zoom is not None and len(zoom) == 2 else None

    def normalization_config(self) -> NormalizationConfig:
        """The stored normalisation as a
        :class:`napari_unet.core.inference.normalization.NormalizationConfig`."""
        from napari_unet.core.inference.normalization import NormalizationConfig

        return NormalizationConfig.from_dict(dict(self.normalization))

    def postprocess_config(self, **overrides: object) -> PostprocessConfig:
        """The model's post-processing defaults (``provenance["postprocess"]``) with overrides.

        Built-in models store tuned values there (e.g. ``foreground_class`` for EM neurite
        regions, a threshold and minimum size for nuclei); ``None`` overrides are ignored, so a
        CLI flag or GUI field the user left alone keeps the model's value. ``output`` defaults to
        instances for an instance model.
        """
        from napari_unet.core.postprocess.labels import postprocess_with_defaults

        defaults = dict(self.provenance.get("postprocess") or {})
        defaults.setdefault("output", "instances" if self.task == "instances" else "semantic")
        if (getattr(self, "model_config", None) or {}).get("aux") == "distance":  # its seeds
            defaults.setdefault("seeds", "distance")
        return postprocess_with_defaults(defaults, **overrides)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """A loaded checkpoint: ``model`` (eval mode, float32), its ``info`` and ``training_state``."""

    model: SegmentationNet
    info: CheckpointInfo
    training_state: Any = None


def plain_data(value: Any, where: str) -> Any:
    """Check/convert ``value`` to what ``torch.load(weights_only=True)`` rebuilds (no objects)."""
    import numpy as np
    import torch

    if value is None or isinstance(value, torch.Tensor):
        return value
    for kind in (bool, int, float, str):  # subclasses (TorchVersion, IntEnum) are objects to pickle
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (os.PathLike, datetime.datetime)):
        return str(value)
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: plain_data(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_data(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(
        f"{where} holds a {type(value).__name__}; a checkpoint stores only tensors and plain data "
        "(dict, list, str, numbers)"
    )
