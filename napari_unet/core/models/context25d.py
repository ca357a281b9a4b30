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


def first_conv(model: torch.nn.Module, in_channels: int) -> torch.nn.Conv2d:
    """The convolution that reads the image: the first ``Conv2d`` with ``in_channels`` inputs.

    Raises:
        UserInputError: ``model`` has no such convolution (not a 2-D net of that input).
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            if module.in_channels == in_channels:
                return module
            break
    raise UserInputError(
        f"{type(model).__name__} does not read {in_channels} input channel(s) with a 2-D "
        "convolution first, so it cannot start as a 2.5-D model; give a 2-D net (e.g. unet)."
    )


def zero_context_weights(model: torch.nn.Module, radius: int, channels: int = 1) -> None:
    """Zero the input convolution's weights on the neighbour slices, in place.

    The model then computes what it computes from the centre slice alone (a 2-D model) and
    learns to use a neighbour only where the gradient says it helps. The centre slice's weights
    (channels ``r * C .. r * C + C - 1``, neighbour-major) and the bias are kept.

    Args:
        model: A 2-D net whose input is ``(B, C * (2r + 1), H, W)``.
        radius: ``r`` (0: nothing to do).
        channels: ``C``, channels per slice.
    """
    if radius == 0:
        return
    conv = first_conv(model, context_channels(channels, radius))
    with torch.no_grad():
        centre = conv.weight[:, radius * channels : (radius + 1) * channels].clone()
        conv.weight.zero_()
        conv.weight[:, radius * channels : (radius + 1) * channels] = centre


def start_from_2d(
    model: torch.nn.Module, model2d: torch.nn.Module, radius: int, channels: int = 1
) -> None:
    """Give a 2.5-D ``model`` the weights of the 2-D ``model2d`` (same architecture and widths),
    the neighbour slices' input weights zero: at step 0 it predicts what ``model2d`` predicts
    from the centre slice (in place)."""
    state = model2d.state_dict()
    wide = first_conv(model, context_channels(channels, radius))
    narrow = first_conv(model2d, channels)
    wide_name = next(n for n, m in model.named_modules() if m is wide) + ".weight"
    with torch.no_grad():
        weight = torch.zeros_like(wide.weight)
        weight[:, radius * channels : (radius + 1) * channels] = narrow.weight
    state = {**state, wide_name: weight}
    model.load_state_dict(state)
