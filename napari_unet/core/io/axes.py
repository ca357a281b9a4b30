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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from napari_unet.core.errors import AxesError, ChannelMismatchError

logger = logging.getLogger(__name__)

#: Letters an axes string may use.
AXES_LETTERS = "TZCYXS"
#: Letters that are flattened into the slice axis.
STACK_LETTERS = "TZS"

#: tifffile / OME / ImageJ letters translated to ours (``S`` there means RGB samples,
#: ``I`` a generic image sequence).
_METADATA_LETTERS = {"T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X", "I": "S", "S": "C"}


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def check_axes(axes: str, shape: tuple[int, ...]) -> str:
    """Validate ``axes`` against ``shape`` and return it upper-cased.

    Raises:
        AxesError: Wrong length, unknown or repeated letter, or ``Y``/``X`` missing; the message
            names the shape and what is needed.
    """
    if not isinstance(axes, str):
        raise AxesError(f"axes must be a string such as 'YX' or 'ZCYX', got {axes!r}")
    axes = axes.strip().upper()
    shape_txt = _shape_text(shape)
    if len(axes) != len(shape):
        raise AxesError(
            f"axes {axes!r} has {len(axes)} letter(s) but the image has {len(shape)} dimension(s) "
            f"with shape {shape_txt}; give one letter per dimension from {AXES_LETTERS} "
            f"(e.g. {_example_axes(len(shape))!r})."
        )
    unknown = sorted({a for a in axes if a not in AXES_LETTERS})
    if unknown:
        raise AxesError(
            f"axes {axes!r} for shape {shape_txt} uses unknown letter(s) {', '.join(unknown)}; "
            f"use only {', '.join(AXES_LETTERS)} (time, depth, channel, y, x, generic stack)."
        )
    repeated = sorted({a for a in axes if axes.count(a) > 1})
    if repeated:
        raise AxesError(
            f"axes {axes!r} for shape {shape_txt} repeats {', '.join(repeated)}; "
            "each letter may appear only once."
        )
    if "Y" not in axes or "X" not in axes:
        raise AxesError(
            f"axes {axes!r} for shape {shape_txt} has no Y and X; the image plane must be named "
            f"(e.g. {_example_axes(len(shape))!r})."
        )
    return axes


def _example_axes(ndim: int) -> str:
    return {2: "YX", 3: "ZYX or CYX", 4: "ZCYX", 5: "TZCYX"}.get(ndim, "YX")


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


def _normalise_metadata_axes(metadata_axes: str, shape: tuple[int, ...]) -> str:
    raw = metadata_axes.strip().upper()
    if "S" in raw and "C" in raw:
        raise AxesError(
            f"the file's axes {raw!r} for shape {_shape_text(shape)} have both channels (C) and "
            "samples (S); pass the axes explicitly (e.g. --axes) with one C."
        )
    unknown = sorted({a for a in raw if a not in _METADATA_LETTERS})
    if unknown:
        raise AxesError(
            f"the file's axes {raw!r} for shape {_shape_text(shape)} contain letter(s) "
            f"{', '.join(unknown)} that cannot be interpreted; pass the axes explicitly "
            f"(e.g. --axes {_example_axes(len(shape)).split(' ')[0]}) using {AXES_LETTERS}."
        )
    return check_axes("".join(_METADATA_LETTERS[a] for a in raw), shape)


def guess_axes(
    shape: tuple[int, ...], *, rgb: bool | None = None, metadata_axes: str | None = None
) -> str:
    """Axes for an image of ``shape``, refusing to guess when the shape is ambiguous.

    Rules, in order:

    1. ``metadata_axes`` (tifffile / OME / ImageJ letters) win; ``I`` (image sequence) becomes the
       generic stack ``S`` and ``S`` (RGB samples) becomes ``C``; other letters (``Q`` ...) raise.
    2. 2-D: ``"YX"``.
    3. ``rgb=True`` (napari's flag) with a last dimension of 3 or 4: ``"YXC"`` (3-D) or
       ``"ZYXC"`` (4-D).
    4. 3-D whose first and last dimensions are both larger than 4 and ``rgb`` not set: ``"ZYX"``.
       This is a stack; it could also be ``TYX``, which predicts identically slice by slice.
    5. Anything else raises, e.g. ``(3, Y, X)`` (channels or slices?), ``(Y, X, 3)`` without the
       rgb flag, any 4-D shape without the rgb flag, and 5-D or more.

    Args:
        shape: The image shape.
        rgb: napari's ``rgb`` flag when known (``None`` = unknown).
        metadata_axes: Axes stored in the file, if any.

    Returns:
        A valid axes string for ``shape``.

    Raises:
        AxesError: The axes cannot be determined safely; the message says to pass them.
    """
    shape = tuple(int(s) for s in shape)
    if metadata_axes:
        return _normalise_metadata_axes(metadata_axes, shape)
    ndim = len(shape)
    shape_txt = _shape_text(shape)
    if ndim == 2:
        return "YX"
    if ndim < 2:
        raise AxesError(f"an image needs at least two dimensions (Y, X); got shape {shape_txt}.")
    if rgb and ndim in (3, 4):
        if shape[-1] in (3, 4):
            return "YXC" if ndim == 3 else "ZYXC"
        raise AxesError(
            f"the image is flagged RGB but its last dimension is {shape[-1]}, not 3 or 4 "
            f"(shape {shape_txt}); pass the axes explicitly (e.g. --axes ZYX)."
        )
    if ndim == 3 and shape[0] > 4 and shape[-1] > 4:
        logger.info("reading shape %s as a ZYX stack (could also be TYX)", shape_txt)
        return "ZYX"
    if ndim == 3:
        raise AxesError(
            f"the axes of an image of shape {shape_txt} are ambiguous (channels or a stack?); "
            "pass them explicitly, e.g. --axes CYX for channels first, YXC for RGB, "
            "or ZYX for a stack of slices."
        )
    raise AxesError(
        f"the axes of a {ndim}-D image of shape {shape_txt} cannot be guessed; pass them "
        "explicitly with one letter per dimension from T, Z, C, Y, X (e.g. --axes "
        f"{'ZCYX' if ndim == 4 else 'TZCYX'})."
    )


def check_channels(
    n_channels: int,
    model_in_channels: int,
    *,
    shape: tuple[int, ...] | None = None,
    axes: str | None = None,
) -> None:
    """Raise unless an image with ``n_channels`` channels fits a model taking ``model_in_channels``.

    Args:
        n_channels: Channels of the image (``StackLayout.n_channels``).
        model_in_channels: ``model.in_channels``.
        shape: The image shape, to name it in the message.
        axes: The image axes, to name them in the message.

    Raises:
        ChannelMismatchError: The counts differ; the message says what to do.
    """
    if n_channels == model_in_channels:
        return
    what = "the image"
    if shape is not None:
        what += f" of shape {_shape_text(tuple(shape))}"
    if axes is not None:
        what += f" with axes {axes!r}"
    head = f"{what} has {n_channels} channel(s) but the model expects {model_in_channels}; "
    if model_in_channels == 1:
        advice = "convert it to grayscale or pick one channel, or use a model trained on colour."
    elif n_channels == 1:
        advice = (
            f"the model needs {model_in_channels}-channel images: check that the channel axis "
            "is named C in the axes (e.g. YXC for RGB), or use a single-channel model."
        )
    else:
        advice = (
            "check the channel axis (C) in the axes, select the channels the model was trained "
            "on, or use a model trained for this many channels."
        )
    raise ChannelMismatchError(head + advice)
