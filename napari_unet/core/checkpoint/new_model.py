"""A new, untrained model as a checkpoint file: architecture, task, named classes, input channels,
from scratch or from a built-in model's weights (TernausNet: VGG encoder weights from a local file).

The GUI's "New model" section and scripts call :func:`new_checkpoint`; the file it writes is a
start model like any other (the Fine-tune dock trains it on the session's reviewed slices).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from napari_unet.core.config import Config, setting
from napari_unet.core.errors import CheckpointError, UserInputError

logger = logging.getLogger(__name__)

#: Architectures offered for a new model: registry name -> what a user reads.
NEW_ARCHITECTURES: tuple[tuple[str, str], ...] = (
    ("unet", "U-Net (padded)"),
    ("unet11", "TernausNet (VGG11 encoder)"),
    ("unetpp", "UNet++ (deep supervision)"),
    ("unet_original", "U-Net, original (valid convolutions)"),
    ("unet3d_aniso", "3-D U-Net, anisotropic (Z-stacks)"),
)
#: Outputs per task (semantic: one per class).
TASK_OUTPUTS = {"binary": 1, "instances": 3, "restoration": 1}


@dataclasses.dataclass(frozen=True)
class NewModelConfig(Config):
    """What a new model is.

    Attributes:
        arch: a :data:`NEW_ARCHITECTURES` name.
        task: ``binary``, ``semantic``, ``instances`` or ``restoration``.
        class_names: semantic: one name per class, background first (>= 2); others: ignored
            beyond naming (binary: background, foreground).
        in_channels: channels of the images it will see (>= 1).
        start: ``""`` (from scratch) or a built-in model's name whose weights are copied where the
            shapes agree (its architecture and size are used).
        encoder_weights: TernausNet only: a local torchvision VGG11 ``.pth`` file, or ``""``.
        voxel_size: 3-D architectures: the images' ``(z, y, x)`` voxel size (it chooses where
            the anisotropic net pools in Y/X only).
    """

    arch: str = setting("unet", "Architecture", choices=NEW_ARCHITECTURES)
    task: str = setting(
        "semantic",
        "Task",
        choices=tuple((t, t) for t in ("binary", "semantic", "instances", "restoration")),
    )
    class_names: tuple[str, ...] = ("background", "foreground")
    in_channels: int = setting(1, "Input channels", min=1, max=64)
    start: str = ""
    encoder_weights: str = ""
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def out_channels(self) -> int:
        """Output channels the task and classes need."""
        return TASK_OUTPUTS.get(self.task, len(self.class_names))

    def check(self) -> None:
        """Raise :class:`UserInputError` with what to change when the choice cannot be built."""
        if self.task == "semantic" and len(self.class_names) < 2:
            raise UserInputError(
                "A semantic model needs at least two class names (background first), separated "
                "by commas."
            )
        if any(not name.strip() for name in self.class_names) or len(set(self.class_names)) < len(
            self.class_names
        ):
            raise UserInputError("Class names must be non-empty and different; fix the list.")
        if self.encoder_weights and self.arch != "unet11":
            raise UserInputError(
                "VGG encoder weights are for TernausNet only; pick it or clear the file."
            )


def new_checkpoint(config: NewModelConfig, path: str | Path) -> Path:
    """Build the model ``config`` describes and save it at ``path`` (atomically).

    Raises:
        UserInputError: an impossible choice, a built-in of another architecture, an unreadable
            VGG file (the sentence says what to do).
    """
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    config.check()
    settings, source = _start_settings(config)
    settings.update(in_channels=int(config.in_channels), out_channels=config.out_channels())
    if config.arch == "unetpp":
        settings.setdefault("deep_supervision", True)
    if config.arch == "unet3d_aniso":
        settings.update(voxel_size=tuple(float(v) for v in config.voxel_size))
    if config.encoder_weights:
        settings["encoder_weights"] = str(Path(config.encoder_weights).expanduser())
    try:
        model = build_model(config.arch, **settings)
    except (OSError, RuntimeError, KeyError) as err:
        raise UserInputError(
            f"Could not use {config.encoder_weights!r} as VGG11 weights ({err}); pick a "
            "torchvision vgg11 .pth file."
        ) from None
    kept = _copy_from(source, model)
    names = config.class_names if config.task == "semantic" else ()
    provenance = {"new_model": config.to_dict(), "tensors_from_start": kept}
    logger.info(
        "new %s %s model (%d tensors from %r)", config.arch, config.task, kept, config.start
    )
    label = f"new {dict(NEW_ARCHITECTURES)[config.arch]} ({config.task})"
    return Path(
        save_checkpoint(
            path, model, task=config.task, class_names=names, provenance=provenance, name=label
        )
    )


def _start_settings(config: NewModelConfig) -> tuple[dict[str, Any], Any]:
    """``(architecture settings, start model or None)`` for ``config.start``."""
    if not config.start:
        return {}, None
    from napari_unet.core.checkpoint.format import builtin_checkpoints, load_checkpoint

    builtins = builtin_checkpoints()
    if config.start not in builtins:
        raise CheckpointError(
            f"{config.start!r} is not a built-in model ({', '.join(builtins) or 'none'}); pick "
            "one of those or start from scratch."
        )
    start = load_checkpoint(builtins[config.start]).model
    if start.arch != config.arch:
        raise UserInputError(
            f"The built-in {config.start} is a {start.arch} network, not {config.arch}; pick "
            f"{start.arch} as the architecture or start from scratch."
        )
    return dict(start.config), start


def _copy_from(start: Any, model: Any) -> int:
    """Copy ``start``'s tensors whose name and shape match into ``model``; how many."""
    if start is None:
        return 0
    target = model.state_dict()
    same = {
        k: v for k, v in start.state_dict().items() if k in target and target[k].shape == v.shape
    }
    model.load_state_dict(same, strict=False)
    return len(same)
