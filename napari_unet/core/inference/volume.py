"""Images as stacks of volumes ``(C, Z, Y, X)`` for 3-D networks (views, never copies of the image).

:func:`to_volumes` views a ``ZYX``, ``ZCYX``, ``TZYX``, ... image as one volume per combination of
the other stack axes (``T``, ``S``), each ``(C, Z, Y, X)``; :meth:`VolumeLayout.output_views`
gives the matching ``(K, Z', Y', X')`` views of one preallocated probability array in the
image's own layout ``(K, *stack, Y', X')``, so nothing is reshaped or copied at the end.

A 3-D network needs a Z axis of more than one slice: an image without one, or with a Z of 1,
is refused in one sentence (:class:`~napari_unet.core.errors.UserInputError`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from napari_unet.core.errors import UserInputError
from napari_unet.core.inference.normalization import (
    NormalizationConfig,
    NormalizationParams,
    apply_normalization,
    normalization_params,
)
from napari_unet.core.inference.tiling import Prepare
from napari_unet.core.io.axes import StackLayout, to_stack

logger = logging.getLogger(__name__)

__all__ = ["VolumeLayout", "to_volumes", "volume_normalization_params", "volume_normalizer"]


@dataclass(frozen=True)
class VolumeLayout:
    """How an image maps onto volumes ``(C, Z, Y, X)``.

    Attributes:
        layout: The image's :class:`~napari_unet.core.io.axes.StackLayout` (with a ``Z``).
    """

    layout: StackLayout

    @property
    def z_position(self) -> int:
        """Index of ``Z`` among the stack axes."""
        return self.layout.stack_axes.index("Z")

    @property
    def depth(self) -> int:
        """``Z``: slices per volume."""
        return self.layout.stack_shape[self.z_position]

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` of each volume."""
        return (self.depth, *self.layout.yx_shape)

    @property
    def others_shape(self) -> tuple[int, ...]:
        """Sizes of the stack axes other than ``Z`` (``(T,)`` for a TZYX image, ``()`` for ZYX)."""
        shape = list(self.layout.stack_shape)
        del shape[self.z_position]
        return tuple(shape)

    @property
    def n_volumes(self) -> int:
        """Number of volumes (1 for a ZYX image)."""
        return int(np.prod(self.others_shape, dtype=np.int64))

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Index of each volume among the other stack axes, in order."""
        yield from np.ndindex(self.others_shape)

    def output_shape(self, n_channels: int, region_shape: tuple[int, int, int]) -> tuple[int, ...]:
        """``(K, *stack, Y', X')`` with ``Z`` replaced by the region's ``Z'``."""
        stack = list(self.layout.stack_shape)
        stack[self.z_position] = region_shape[0]
        return (n_channels, *stack, *region_shape[1:])

    def output_views(self, out: np.ndarray) -> Iterator[np.ndarray]:
        """Views ``(K, Z', Y', X')`` of ``out`` (:meth:`output_shape`), one per volume."""
        moved = np.moveaxis(out, 1 + self.z_position, -3)
        for index in self.indices():
            yield moved[(slice(None), *index)]


def to_volumes(
    image: np.ndarray, axes: str, *, model_name: str = "this model"
) -> tuple[Iterator[np.ndarray], VolumeLayout]:
    """View ``image`` as volumes ``(C, Z, Y, X)`` (views of ``image``, in stack order).

    Args:
        image: Any real dtype with one dimension per letter of ``axes`` (a ``Z`` among them).
        axes: E.g. ``"ZYX"``, ``"ZCYX"``, ``"TZYX"``.
        model_name: Named in the error message.

    Returns:
        ``(volumes, layout)``: an iterator of ``(C, Z, Y, X)`` views and the layout.

    Raises:
        UserInputError: No ``Z`` axis, or a ``Z`` of one slice.
        AxesError: ``axes`` does not fit ``image``.
    """
    stack, layout = to_stack(image, axes)
    if "Z" not in layout.stack_axes:
        raise UserInputError(
            f"{model_name} is a 3-D model and needs a volume, but the image has axes "
            f"{layout.axes!r} with no Z axis; give a Z-stack (axes such as ZYX) or use a 2-D model."
        )
    volumes = VolumeLayout(layout)
    if volumes.depth < 2:
        raise UserInputError(
            f"{model_name} is a 3-D model and needs a volume, but the image's Z axis has only "
            "1 slice; give a Z-stack of several slices or use a 2-D model."
        )
    full = stack.reshape(*layout.stack_shape, *stack.shape[1:])  # splits S: always a view
    moved = np.moveaxis(full, volumes.z_position, -4)  # (*others, Z, C, Y, X)

    def iterate() -> Iterator[np.ndarray]:
        for index in volumes.indices():
            yield moved[index].transpose(1, 0, 2, 3)

    return iterate(), volumes


def volume_normalization_params(
    volume: np.ndarray, config: NormalizationConfig | None = None
) -> NormalizationParams:
    """Measure a volume ``(C, Z, Y, X)`` as a whole (one set of parameters per channel)."""
    n_channels, depth, height, width = volume.shape
    return normalization_params(volume.reshape(n_channels, depth * height, width), config)


def volume_normalizer(params: NormalizationParams) -> Prepare:
    """Fill a float32 batch slot ``(C, d, h, w)`` with a raw tile normalised by ``params``."""

    def prepare(destination: np.ndarray, tile: np.ndarray) -> None:
        channels, width = destination.shape[0], destination.shape[-1]
        flat = destination.reshape(channels, -1, width)  # a view: the batch slot is contiguous
        apply_normalization(tile.reshape(channels, -1, width), params, out=flat)

    return prepare
