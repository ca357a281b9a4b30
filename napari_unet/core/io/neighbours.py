"""2.5-D slice arithmetic without torch: which slices are the neighbours of each slice.

:mod:`napari_unet.core.models.context25d` stacks them (numpy or torch); this part is numpy only
so the GUI's main thread and the torch-free inference helpers can use it.
"""

from __future__ import annotations

import numpy as np

from napari_unet.core.errors import UserInputError

__all__ = ["MAX_RADIUS", "context_channels", "neighbour_indices"]

#: The most neighbours on each side; beyond it a 3-D network is the better tool.
MAX_RADIUS = 8


def _check_radius(radius: int) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int) or not 0 <= radius <= MAX_RADIUS:
        raise UserInputError(
            f"the 2.5-D context radius must be a whole number of slices from 0 to {MAX_RADIUS}, "
            f"got {radius!r}; use 1 or 2 (3 or 5 slices as channels)."
        )


def context_channels(in_channels: int, radius: int) -> int:
    """Input channels of the 2-D net: ``in_channels * (2 * radius + 1)``."""
    _check_radius(radius)
    return int(in_channels) * (2 * radius + 1)


def neighbour_indices(n_slices: int, radius: int) -> np.ndarray:
    """``(n_slices, 2r + 1)`` slice indices ``z - r .. z + r``, mirrored into ``[0, n_slices)``.

    Raises:
        UserInputError: ``n_slices < 1`` or a bad ``radius``.
    """
    _check_radius(radius)
    if n_slices < 1:
        raise UserInputError("the volume has no slices; give it at least one slice along Z.")
    index = np.arange(n_slices)[:, None] + np.arange(-radius, radius + 1)[None, :]
    if n_slices == 1:
        return np.zeros_like(index)
    period = 2 * (n_slices - 1)
    index = index % period
    return np.where(index >= n_slices, period - index, index)
