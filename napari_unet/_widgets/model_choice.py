"""Which built-in model fits an image: the one a sample names, else a cheap look at the pixels.

Used by the predict panel to propose a model for the chosen image until the user picks one by
hand. Qt-free: takes a napari layer (or anything with ``data``, ``metadata`` and ``rgb``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_unet._widgets import layers as L

logger = logging.getLogger(__name__)

NUCLEI, EM = "fluo-nuclei", "em-membranes"
#: What each built-in's samples show, for the status line.
SAMPLE_KINDS = {NUCLEI: "fluorescent-nuclei", EM: "EM membrane"}
#: Pixels looked at (a strided thumbnail of one slice), so the guess stays instant.
THUMBNAIL_SIDE = 256
#: Where the median sits between the 1st and 99.8th percentiles: below this, a dark background.
DARK_BACKGROUND = 0.25


@dataclass(frozen=True)
class ModelChoice:
    """A built-in model name and the reason, for the status line."""

    name: str
    reason: str


def suggest_builtin(layer: Any, installed: set[str] | frozenset[str]) -> ModelChoice | None:
    """The installed built-in model that fits ``layer``'s image, or None when it cannot tell.

    The sample data name their model in the image tag (``metadata["napari_unet"]["model"]``);
    otherwise one slice is looked at: a dark background with bright objects is fluorescence
    (``fluo-nuclei``), a bright background with dark lines is EM (``em-membranes``).
    """
    tag = layer.metadata.get(L.TAG) if isinstance(layer.metadata, dict) else None
    named = tag.get("model") if isinstance(tag, dict) else None
    if isinstance(named, str) and named in installed:
        return ModelChoice(named, f"a {SAMPLE_KINDS.get(named, named)} sample")
    plane = _thumbnail(layer)
    if plane is None:
        return None
    low, median, high = np.percentile(plane, (1.0, 50.0, 99.8))
    if high <= low:
        return None
    if (median - low) / (high - low) < DARK_BACKGROUND:
        choice = ModelChoice(NUCLEI, "dark background with bright objects, like fluorescence")
    else:
        choice = ModelChoice(EM, "bright background with dark lines, like EM")
    return choice if choice.name in installed else None


def propose_for(picker: Any, layer: Any, *, by_hand: bool) -> tuple[ModelChoice | None, bool]:
    """Select in ``picker`` (the model list) the built-in that fits ``layer``.

    Returns:
        the choice (None: nothing proposed, as once the user picked a model by hand, or while a
        session version or a checkpoint file is chosen) and whether the selection changed.
    """
    from napari_unet._widgets.model_picker import builtin_models

    builtins = {name: str(path) for name, path in builtin_models().items()}
    current = picker.checkpoint()
    if by_hand or picker.version_id() or current not in (None, *builtins.values()):
        return None, False
    choice = suggest_builtin(layer, frozenset(builtins))
    if choice is None:
        return None, False
    changed = builtins[choice.name] != current
    if changed:
        picker.populate(select=builtins[choice.name])
    return choice, changed


def _thumbnail(layer: Any) -> np.ndarray | None:
    """A strided (≤ 256-pixel side) float view of the middle slice, first channel; None if lazy."""
    data = getattr(layer, "data", None)
    if not isinstance(data, np.ndarray) or data.ndim < 2 or getattr(layer, "rgb", False):
        return None  # lazy images are never read here; RGB is not what the built-ins take
    try:
        axes = L.layer_axes(layer)
    except ValueError:
        return None
    index = tuple(0 if a == "C" else n // 2 for a, n in zip(axes, data.shape) if a not in "YX")
    kept = [a for a in axes if a in "YX"]
    plane = data[_plane_key(axes, index)]
    if kept != ["Y", "X"]:
        plane = plane.T
    step = max(1, max(plane.shape) // THUMBNAIL_SIDE)
    return np.asarray(plane[::step, ::step], dtype=np.float32)


def _plane_key(axes: str, index: tuple[int, ...]) -> tuple:
    values = iter(index)
    return tuple(slice(None) if a in "YX" else next(values) for a in axes)
