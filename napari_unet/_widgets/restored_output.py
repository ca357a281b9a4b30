"""Writing a restoration model's output into the viewer: one float Image layer per output channel
of an image, tagged ``role="restored"``, created once and updated in place afterwards (the slices
and region of each run). Main thread only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_unet._widgets import layers as L

if TYPE_CHECKING:
    import napari

    from napari_unet.core.io.axes import StackLayout

logger = logging.getLogger(__name__)

#: The tag role of restored-image layers.
ROLE = "restored"


def restored_name(image_name: str, channel: int, n_channels: int) -> str:
    """``"cells restored"``, or ``"cells restored ch1"`` when the model outputs several channels."""
    return f"{image_name} restored" + (f" ch{channel}" if n_channels > 1 else "")


def find_restored_layer(viewer: napari.Viewer, image_name: str, channel: int) -> Any:
    """The restored layer of ``image_name`` for output ``channel``, or None."""
    for layer in viewer.layers:
        tag = L.plugin_tag(layer)
        if (
            tag
            and tag.get("role") == ROLE
            and tag.get("image_layer") == image_name
            and int(tag.get("channel", 0)) == channel
        ):
            return layer
    return None


def write_restored(
    viewer: napari.Viewer,
    image: Any,
    layout: StackLayout,
    restored: np.ndarray,
    slices: list[int],
    region: tuple[slice, slice] | None,
) -> list[Any]:
    """Put ``restored`` (C_out, n, h, w) float32 into the restored layers of ``image``.

    A layer whose shape no longer fits the image is left alone and a new one is added.

    Returns:
        The restored layers, one per output channel.
    """
    out = []
    n_channels = restored.shape[0]
    for channel in range(n_channels):
        layer = find_restored_layer(viewer, image.name, channel)
        if layer is not None and tuple(layer.data.shape) != tuple(layout.spatial_shape):
            layer = None
        if layer is None:
            data = np.zeros(layout.spatial_shape, dtype=np.float32)
            L.write_probabilities_into(data, layout, restored[channel], slices, region)
            layer = viewer.add_image(
                data,
                name=restored_name(image.name, channel, n_channels),
                metadata={L.TAG: {"role": ROLE, "image_layer": image.name, "channel": channel}},
                colormap="gray",
                contrast_limits=_limits(restored[channel]),
                **L.spatial_transform(image, layout.axes),
            )
        else:
            L.write_probabilities_into(layer.data, layout, restored[channel], slices, region)
            layer.refresh()
        out.append(layer)
    logger.info("restored %d slice(s) of %s", len(slices), image.name)
    return out


def _limits(values: np.ndarray) -> tuple[float, float]:
    """Display range of a restored image: its 0.5-99.5 percentiles (never an empty range)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return (0.0, 1.0)
    low, high = (float(v) for v in np.percentile(finite, (0.5, 99.5)))
    return (low, high) if high > low else (low, low + 1.0)
