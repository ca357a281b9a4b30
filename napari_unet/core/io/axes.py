"""Axes strings: turn any image into a ``(S, C, Y, X)`` stack of 2-D slices, and back.

An ``axes`` string names every dimension of an image, one letter each:

- ``Y``, ``X``: the image plane (both required);
- ``C``: channels (at most once);
- ``T``, ``Z``, ``S``: stack axes (time, depth, generic stack). They are flattened, in the order in
  which they appear, into one slice axis ``S`` that prediction walks through slice by slice.

The *spatial* layout of an image is its stack axes (in their original order) followed by ``Y, X``;
for the usual orders (stack axes before ``Y`` before ``X``, e.g. ``ZCYX``, ``TYXC``) that is simply
the image shape without ``C``. Results per slice are put back into that layout with
:meth:`StackLayout.restore` or :meth:`StackLayout.channels_first`.

Axes are never guessed silently for ambiguous shapes: :func:`guess_axes` raises an
:class:`~napari_unet.core.errors.AxesError` for e.g. ``(3, 512, 512)`` (three channels or three
slices?) unless file metadata or napari's ``rgb`` flag settles it.

Checking axes and channels lives in :mod:`napari_unet.core.io.axes_check`, guessing in
:mod:`napari_unet.core.io.axes_guess`; both are re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_unet.core.io.axes_check import (
    AXES_LETTERS,
    STACK_LETTERS,
    check_axes,
    check_channels,
)
from napari_unet.core.io.axes_guess import guess_axes

__all__ = [
    "AXES_LETTERS",
    "STACK_LETTERS",
    "StackLayout",
    "check_axes",
    "check_channels",
    "guess_axes",
    "to_stack",
]


@dataclass(frozen=True)
class StackLayout:
    """How an image of ``shape`` with ``axes`` maps onto a ``(S, C, Y, X)`` stack.

    Attributes:
        axes: The validated, upper-case axes string of the original image.
        shape: The original image shape.
    """

    axes: str
    shape: tuple[int, ...]

    def _size(self, letter: str) -> int:
        return int(self.shape[self.axes.index(letter)]) if letter in self.axes else 1

    @property
    def stack_axes(self) -> str:
        """Stack letters (T, Z, S) in their original order, e.g. ``"TZ"``; ``""`` for one image."""
        return "".join(a for a in self.axes if a in STACK_LETTERS)

    @property
    def stack_shape(self) -> tuple[int, ...]:
        """Sizes of :attr:`stack_axes`."""
        return tuple(self._size(a) for a in self.stack_axes)

    @property
    def n_slices(self) -> int:
        """Number of 2-D slices ``S`` (product of the stack sizes, 1 for a plain image)."""
        return math.prod(self.stack_shape)

    @property
    def n_channels(self) -> int:
        """Number of channels ``C`` (1 when the image has no ``C`` axis)."""
        return self._size("C")

    @property
    def yx_shape(self) -> tuple[int, int]:
        """``(Y, X)`` of each slice."""
        return self._size("Y"), self._size("X")

    @property
    def spatial_axes(self) -> str:
        """Axes of results without channels: stack axes then ``YX`` (e.g. ``"ZYX"``)."""
        return self.stack_axes + "YX"

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of :attr:`spatial_axes`: the image shape without ``C`` (for usual orders)."""
        return (*self.stack_shape, *self.yx_shape)

    def restore(self, stack_like: np.ndarray, axis: int = 0) -> np.ndarray:
        """Split the slice axis back into the stack axes (a reshape; a view where possible).

        Args:
            stack_like: Array with the slice axis of length ``S`` at ``axis``, e.g. labels
                ``(S, Y', X')`` or ``(K, S, Y', X')`` with ``axis=1``.
            axis: Position of the slice axis.

        Returns:
            The array with ``S`` replaced by :attr:`stack_shape`, e.g. ``(*stack, Y', X')``.
        """
        stack_like = np.asarray(stack_like)
        axis = axis % stack_like.ndim
        if stack_like.shape[axis] != self.n_slices:
            raise ValueError(
                f"expected {self.n_slices} slice(s) on axis {axis}, got shape {stack_like.shape}"
            )
        shape = stack_like.shape
        return stack_like.reshape(*shape[:axis], *self.stack_shape, *shape[axis + 1 :])

    def channels_first(self, stack_like: np.ndarray) -> np.ndarray:
        """Per-slice results ``(S, K, Y', X')`` -> ``(K, *stack, Y', X')`` (a view)."""
        stack_like = np.asarray(stack_like)
        if stack_like.ndim != 4:
            raise ValueError(f"expected an (S, K, Y, X) array, got shape {stack_like.shape}")
        return self.restore(np.moveaxis(stack_like, 1, 0), axis=1)


def to_stack(image: np.ndarray, axes: str) -> tuple[np.ndarray, StackLayout]:
    """View ``image`` as a ``(S, C, Y, X)`` stack of 2-D multi-channel slices.

    Args:
        image: Array of any real dtype with one dimension per letter of ``axes``.
        axes: Axes string, e.g. ``"YX"``, ``"YXC"``, ``"ZYX"``, ``"TZCYX"`` (see module docs).

    Returns:
        ``(stack, layout)``: ``stack`` has shape ``(S, C, Y, X)`` and the input's dtype; it is a
        view of ``image`` whenever numpy can express it as one (always for the usual orders),
        otherwise a copy. ``image`` is never modified.

    Raises:
        AxesError: ``axes`` does not fit ``image`` (the message names the shape and what is needed).
    """
    image = np.asarray(image)
    axes = check_axes(axes, image.shape)
    layout = StackLayout(axes=axes, shape=tuple(int(s) for s in image.shape))
    order = [axes.index(a) for a in layout.stack_axes]
    if "C" in axes:
        order.append(axes.index("C"))
    order += [axes.index("Y"), axes.index("X")]
    stack = np.transpose(image, order).reshape(layout.n_slices, layout.n_channels, *layout.yx_shape)
    return stack, layout
