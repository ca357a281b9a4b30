"""What the guidance panel measures uncertainty with, and what it can reuse (no Qt).

- :func:`models_to_measure`: the entropy uses the active session version, else the model that
  made the image's labels (a checkpoint file), else the newest version; the disagreement uses
  the last two versions (newest first).
- :func:`reusable_probability`: a slice whose prediction left a probability layer is measured
  from it, without predicting again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._widgets import layers as L
from napari_unet.core.errors import UserInputError


def models_to_measure(
    viewer: Any, session: Any, active_version: str | None, measure: str, image_name: str
) -> tuple[str, ...]:
    """Checkpoint paths for ``measure`` (``"entropy"`` or ``"disagreement"``) on ``image_name``
    (``viewer``: a napari viewer or ``ViewerModel``).

    Raises:
        UserInputError: no model to measure with, or fewer than two versions to compare.
    """
    versions = session.versions() if session is not None else []
    if measure == "disagreement":
        if len(versions) < 2:
            raise UserInputError(
                "Disagreement needs two model versions: fine-tune until a second version "
                "exists, or choose the entropy."
            )
        return tuple(str(session.version_path(v.id)) for v in versions[-2:][::-1])
    if session is not None and active_version:
        return (str(session.version_path(active_version)),)
    labels = L.find_plugin_layer(viewer, role="labels", image_layer=image_name)
    model = (L.plugin_tag(labels) or {}).get("model") if labels is not None else None
    if model and Path(str(model)).is_file():
        return (str(model),)
    if versions:
        return (str(session.version_path(versions[-1].id)),)
    raise UserInputError("No model to measure with: predict the image in the Segment widget.")


def reusable_probability(viewer: Any, image_name: str, layout: Any, s: int) -> np.ndarray | None:
    """(Y, X) float32 foreground probability of slice ``s`` from the image's probability layer,
    or None (no such layer, another shape, or the slice was not predicted)."""
    probs = L.find_plugin_layer(viewer, role="probabilities", image_layer=image_name)
    labels = L.find_plugin_layer(viewer, role="labels", image_layer=image_name)
    if probs is None or tuple(probs.data.shape) != tuple(layout.spatial_shape):
        return None
    predicted = (L.plugin_tag(labels) or {}).get("predicted", []) if labels else []
    if labels is not None and s not in predicted:
        return None
    return np.asarray(probs.data[L.slice_index(layout, s)], dtype=np.float32)


__all__ = ["models_to_measure", "reusable_probability"]
