"""Which labels layer the correction tools work on (no Qt).

A labels layer can be corrected when it is in memory (a lazy Zarr volume is view only: napari
cannot paint into it, and tracking its edits would read it whole) and is the user's own or the
plugin's prediction (role ``"labels"``); a sample's ground truth and the plugin's other layers
never are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from napari_unet._widgets import reviewed as rv

#: Roles of correctable layers: None (the user's own layer) and the plugin's predictions.
CORRECTABLE_ROLES = (None, "labels")


def correctable_labels(layers: Iterable[Any]) -> list[Any]:
    """The Labels layers of ``layers`` (a viewer's layer list) that can be corrected, in order."""
    from napari.layers import Labels

    return [
        layer
        for layer in layers
        if isinstance(layer, Labels)
        and isinstance(layer.data, np.ndarray)
        and rv.role_of(layer) in CORRECTABLE_ROLES
    ]


def default_labels(candidates: list[Any]) -> Any:
    """The newest prediction, else the newest visible user layer, else the newest one (or None)."""
    plugin = [la for la in candidates if rv.role_of(la) == "labels"]
    visible = [la for la in candidates if la.visible]
    return (plugin or visible or candidates or [None])[-1]


def labels_to_follow(layers: Iterable[Any], current: Any) -> Any:
    """After the layer list changed: keep ``current`` while it can be corrected, else default."""
    candidates = correctable_labels(layers)
    return current if current in candidates else default_labels(candidates)


__all__ = ["CORRECTABLE_ROLES", "correctable_labels", "default_labels", "labels_to_follow"]
