"""Validating axes strings against shapes, and an image's channels against a model.

Every refusal is an :class:`~napari_unet.core.errors.AxesError` or
:class:`~napari_unet.core.errors.ChannelMismatchError` whose message names the shape and what to
do. Re-exported by :mod:`napari_unet.core.io.axes`.
"""

from __future__ import annotations

from napari_unet.core.errors import AxesError, ChannelMismatchError

#: Letters an axes string may use.
AXES_LETTERS = "TZCYXS"
#: Letters that are flattened into the slice axis.
STACK_LETTERS = "TZS"


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


def _channels(n: int) -> str:
    """``"1 channel"``, ``"3 channels"``."""
    return f"{n} channel{'' if n == 1 else 's'}"


def _named(shape: tuple[int, ...] | None, axes: str | None) -> str:
    """`` of shape (64, 64, 3) with axes 'YXC'`` as the user gave them; internal stacks (axes
    with ``S``, the plugin's slice axis) are not named: the user never saw that shape."""
    if axes is not None and "S" in axes:
        return ""
    text = "" if shape is None else f" of shape {_shape_text(tuple(shape))}"
    return text + ("" if axes is None else f" with axes {axes!r}")


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
    head = (
        f"the model expects {_channels(model_in_channels)} but the image"
        f"{_named(shape, axes)} has {_channels(n_channels)}; "
    )
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
