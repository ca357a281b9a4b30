"""2.5-D: a few neighbouring slices as the channels of a 2-D network.

A 2-D U-Net sees one slice; a 3-D U-Net sees the whole neighbourhood at several times the compute.
The 2.5-D trade gives a 2-D net the slices ``z - r .. z + r`` as extra input channels: it costs only
the first convolution's extra weights (``2r`` more input planes), runs at 2-D speed on a CPU and can
still use the context above and below (a membrane that tilts, a nucleus that ends).

Layout: slice ``z`` of a ``(C, Z, Y, X)`` volume becomes a ``(C * (2r + 1), Y, X)`` image whose
channel ``j * C + c`` is channel ``c`` of slice ``z - r + j`` (neighbour-major, so ``C = 1`` gives
the slices in order). Beyond the first and last slice the volume is mirrored without repeating the
edge slice (numpy's ``"reflect"``, as the overlap-tile prediction mirrors Y/X); a single slice is
repeated.

Example:
    >>> import numpy as np
    >>> from napari_unet.core.models import build_model
    >>> volume = np.zeros((1, 5, 32, 32), np.float32)
    >>> net = build_model("unet", depth=2, base_channels=4, in_channels=context_channels(1, 1))
    >>> stack_neighbour_slices(volume, 1).shape  # (Z, C * 3, Y, X): a batch for ``net``
    (5, 3, 32, 32)
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from napari_unet.core.errors import UserInputError
from napari_unet.core.io.neighbours import (  # noqa: F401 (importable from here)
    MAX_RADIUS,
    context_channels,
    neighbour_indices,
)

A = TypeVar("A", np.ndarray, torch.Tensor)


def stack_neighbour_slices(volume: A, radius: int) -> A:
    """``(C, Z, Y, X)`` volume -> ``(Z, C * (2r + 1), Y, X)``: each slice with its neighbours.

    Args:
        volume: A numpy array or torch tensor (any dtype), channels first, then Z; not modified.
        radius: Neighbours on each side (0 gives the slices unchanged, as ``(Z, C, Y, X)``).

    Returns:
        A new array/tensor of the same kind and dtype (a copy: the slices are gathered).

    Raises:
        UserInputError: ``volume`` is not 4-D, or a bad ``radius``.
    """
    if volume.ndim != 4:
        raise UserInputError(
            f"2.5-D stacking needs a (C, Z, Y, X) volume, got shape {tuple(volume.shape)}; give "
            "the channel axis first (C = 1 for a grey volume), then Z, Y and X."
        )
    _, n_slices, height, width = volume.shape
    index = neighbour_indices(int(n_slices), radius)  # (Z, 2r + 1)
    if isinstance(volume, torch.Tensor):
        gathered = volume[:, torch.from_numpy(index).to(volume.device)]  # (C, Z, 2r + 1, Y, X)
        return gathered.permute(1, 2, 0, 3, 4).reshape(n_slices, -1, height, width)
    gathered = volume[:, index]
    return np.ascontiguousarray(gathered.transpose(1, 2, 0, 3, 4)).reshape(
        n_slices, -1, height, width
    )
