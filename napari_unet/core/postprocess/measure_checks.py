"""Checking the arguments of :func:`napari_unet.core.postprocess.measure.measure_objects`.

Each refusal is one :class:`~napari_unet.core.errors.UserInputError` sentence that says what does
not fit and what to give instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from napari_unet.core.errors import UserInputError

#: Stack letters whose slices are measured one by one (Z is measured as a volume).
PER_SLICE_AXES = "TS"


def check_inputs(
    labels: np.ndarray,
    image: np.ndarray | None,
    axes: str | None,
    output: str,
    semantic: np.ndarray | None,
    spacing: float | Sequence[float] | None,
) -> tuple[str, int | None, tuple[float, ...] | None]:
    """``(axes, channels, spacing)`` checked for ``labels`` (*spatial).

    ``channels`` is None without an image, 0 for a (*spatial) image, C for (*spatial, C);
    ``spacing`` has one value per measured axis (``YX`` or ``ZYX``) or is None.

    Raises:
        UserInputError: shapes that do not match, axes that do not fit, a bad spacing or output.
    """
    axes = _check_axes(labels, axes)
    if output not in ("instances", "semantic"):
        raise UserInputError(f"output must be 'instances' or 'semantic', got {output!r}.")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise UserInputError(f"labels must be integers (object or class ids), got {labels.dtype}.")
    channels = _check_image(labels, image)
    if semantic is not None and np.shape(semantic) != labels.shape:
        raise UserInputError(
            f"the class map has shape {np.shape(semantic)} but the labels {labels.shape}; give one "
            "class id per label pixel."
        )
    measured_axes = "".join(a for a in axes if a not in PER_SLICE_AXES)
    return axes, channels, _check_spacing(spacing, measured_axes)


def _check_axes(labels: np.ndarray, axes: str | None) -> str:
    if axes is None:
        if labels.ndim not in (2, 3):
            raise UserInputError(
                f"labels of shape {labels.shape} need axes (e.g. 'TZYX'); 2-D and 3-D labels are "
                "taken as YX and ZYX."
            )
        return "YX" if labels.ndim == 2 else "ZYX"
    axes = axes.upper()
    measured = "".join(a for a in axes if a not in PER_SLICE_AXES)
    if (
        len(axes) != labels.ndim
        or len(set(axes)) != len(axes)
        or not set(axes) <= set("TZSYX")
        or measured not in ("YX", "ZYX")
    ):
        raise UserInputError(
            f"axes {axes!r} do not fit labels of shape {labels.shape}: give one letter per "
            "dimension from T, S, Z, Y, X, ending in YX (e.g. 'YX', 'ZYX', 'TYX')."
        )
    return axes


def _check_image(labels: np.ndarray, image: np.ndarray | None) -> int | None:
    """Channels of ``image``: None without one, 0 for (*spatial), C for (*spatial, C)."""
    if image is None:
        return None
    shape = tuple(np.shape(image))
    if shape == labels.shape:
        return 0
    if len(shape) == labels.ndim + 1 and shape[:-1] == labels.shape:
        return int(shape[-1])
    raise UserInputError(
        f"the image has shape {shape} but the labels {labels.shape}; measure labels with the image "
        "they were predicted from (same shape, channels last)."
    )


def _check_spacing(
    spacing: float | Sequence[float] | None, measured_axes: str
) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = [spacing] * len(measured_axes) if np.isscalar(spacing) else list(spacing)
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        values = []
    if len(values) != len(measured_axes) or not all(math.isfinite(v) and v > 0 for v in values):
        raise UserInputError(
            f"the pixel size must be one positive number or one per axis {measured_axes} "
            f"(e.g. {','.join(['0.5'] * len(measured_axes))}), got {spacing!r}."
        )
    return tuple(values)
