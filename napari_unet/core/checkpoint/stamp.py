"""Copy a checkpoint with entries added to its provenance (e.g. the dataset fingerprint)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["copy_with_provenance"]


def copy_with_provenance(
    source: str | os.PathLike, target: str | os.PathLike, extra: dict[str, Any]
) -> Path:
    """Write ``source``'s model to ``target`` (atomically) with ``extra`` in its provenance.

    Raises:
        CheckpointError: ``source`` is not a valid checkpoint. OSError: ``target`` cannot be
            written (an existing file is left as it was).
    """
    from napari_unet.core.checkpoint.format import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(source)
    info = loaded.info
    return save_checkpoint(
        target,
        loaded.model,
        task=info.task,
        class_names=info.class_names,
        normalization=info.normalization,
        tile_shape=info.tile_shape,
        overlap=info.overlap,
        provenance={**info.provenance, **extra},
        name=info.name,
        description=info.description,
    )
