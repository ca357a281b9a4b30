"""A start model with more classes: keep every learnt weight, give it a new head.

Fine-tuning a built-in binary or K-class model on labels with more classes needs a head with more
output channels. :func:`widen_classes` rebuilds the same architecture with the new class count and
copies every tensor whose shape does not depend on it (the encoder, the decoder; for UNet++ every
layer but its heads); the head starts from its fresh initialisation. The result is a new
checkpoint file: the start model's own file is never changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def widen_classes(
    path: str | Path, n_classes: int, out: str | Path, class_names: tuple[str, ...] = ()
) -> Path:
    """Write to ``out`` a semantic copy of checkpoint ``path`` with ``n_classes`` output classes.

    Args:
        path: the start checkpoint (binary or semantic, fewer than ``n_classes`` classes).
        n_classes: classes of the new head, background included (>= 2).
        out: where the widened checkpoint goes (written atomically).
        class_names: names of the ``n_classes`` classes; default: the start model's names
            followed by generic ones.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: ``n_classes`` < 2 or not more than the model's output channels.
    """
    from napari_unet.core.checkpoint.format import (
        default_class_names,
        load_checkpoint,
        save_checkpoint,
    )
    from napari_unet.core.models import build_model

    loaded = load_checkpoint(path)
    model, info = loaded.model, loaded.info
    if n_classes < 2 or n_classes <= int(model.out_channels):
        raise ValueError(f"cannot widen {model.out_channels} output channels to {n_classes}")
    wider = build_model(model.arch, **{**model.config, "out_channels": int(n_classes)})
    kept = _copy_matching(model.state_dict(), wider)
    names = tuple(class_names) or _names(info, n_classes, default_class_names)
    logger.info(
        "new %d-class head on %s (%d of %d tensors kept)",
        n_classes,
        Path(path).name,
        kept,
        len(wider.state_dict()),
    )
    return Path(
        save_checkpoint(
            out,
            wider,
            task="semantic",
            class_names=names,
            normalization=info.normalization_config(),
            tile_shape=info.tile_shape,
            overlap=info.overlap,
            provenance={
                "widened_from": str(path),
                "start_classes": int(model.out_channels),
                # a 2.5-D model stays one: its input is still each slice with its neighbours
                **({"context_slices": info.context_slices} if info.context_slices else {}),
            },
            name=f"{info.name or Path(path).stem} ({n_classes} classes)",
        )
    )


def _copy_matching(state: dict[str, Any], wider: Any) -> int:
    """Copy into ``wider`` every tensor of ``state`` with the same name and shape; how many."""
    target = wider.state_dict()
    same = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
    wider.load_state_dict(same, strict=False)
    return len(same)


def _names(info: Any, n_classes: int, default_class_names: Any) -> tuple[str, ...]:
    """The start model's class names (a binary model's foreground kept), then generic ones."""
    old = tuple(info.class_names or ())
    if info.task == "binary":
        old = ("background", *old[-1:])
    generic = tuple(default_class_names("semantic", n_classes))
    return tuple(old[:n_classes]) + generic[len(old) :]
