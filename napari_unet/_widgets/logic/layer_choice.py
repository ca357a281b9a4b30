"""Which labels layer the correction tools work on, and which one a session links (no Qt).

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


def labels_to_link(layers: Any, active: Any, corrected: Any) -> Any:
    """The labels layer *Create session* / *Add image* links: the one being corrected, else the
    active Labels layer, else the newest prediction, else the newest Labels layer (or None)."""
    from napari.layers import Labels

    if corrected is not None and corrected in layers:
        return corrected
    if isinstance(active, Labels):
        return active
    labels = [la for la in layers if isinstance(la, Labels)]
    plugin = [la for la in labels if rv.role_of(la) == "labels"]
    return (plugin or labels or [None])[-1]


def image_of(layers: Any, labels: Any) -> Any:
    """The image layer ``labels`` belongs to: the one its tag names, else the first user image of
    its shape; None when there is none."""
    from napari.layers import Image

    name = (rv.plugin_meta(labels) or {}).get("image_layer")
    if name in layers and isinstance(layers[name], Image):
        return layers[name]
    for layer in layers:
        if isinstance(layer, Image) and rv.role_of(layer) is None:
            shape = tuple(layer.data.shape)[: -1 if layer.rgb else None]
            if shape == tuple(labels.data.shape):
                return layer
    return None


__all__ = [
    "CORRECTABLE_ROLES",
    "correctable_labels",
    "default_labels",
    "image_of",
    "labels_to_follow",
    "labels_to_link",
]
