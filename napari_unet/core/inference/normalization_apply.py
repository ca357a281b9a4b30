"""Applying a measured normalisation: :class:`NormalizationParams` -> finite float32.

:func:`apply_normalization` maps any array whose axis ``-3`` is the channel axis (a ``(C, Y, X)``
image or a ``(B, C, h, w)`` batch of tiles) with the per-channel affine map that
:func:`napari_unet.core.inference.normalization.normalization_params` measured on the whole image,
so prediction can normalise tile by tile. Re-exported by
:mod:`napari_unet.core.inference.normalization`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NormalizationParams:
    """Per-channel affine map and replacements for non-finite values, in raw image units.

    ``normalized = (x / divisor[c] - offset[c]) * scale[c]`` after NaN -> ``nan[c]``,
    +Inf -> ``posinf[c]``, -Inf -> ``neginf[c]`` (offset and the replacements are in units of
    ``x / divisor``). All arrays are float64 of shape ``(C,)``; ``divisor`` None means 1 for
    every channel (it differs from 1 only for float64 values beyond float32's range).
    ``float_input`` is False when the measured image had an integer or bool dtype (no
    non-finite values to replace).
    """

    offset: np.ndarray
    scale: np.ndarray
    nan: np.ndarray
    posinf: np.ndarray
    neginf: np.ndarray
    float_input: bool = True
    divisor: np.ndarray | None = None


def _exact_in_float32(dtype: np.dtype) -> bool:
    """True when every value of ``dtype`` is a float32 (bool, 8/16-bit ints, float16/32)."""
    return bool(np.can_cast(dtype, np.float32, casting="safe"))


def _affine_(view: np.ndarray, params: NormalizationParams, c: int) -> None:
    """Replace non-finite values and apply channel ``c``'s affine map to ``view`` in place."""
    if params.divisor is not None and params.divisor[c] != 1.0:
        view /= view.dtype.type(params.divisor[c])  # first: x - offset must not overflow
    if params.float_input:
        np.nan_to_num(
            view, copy=False, nan=params.nan[c], posinf=params.posinf[c], neginf=params.neginf[c]
        )
    if params.offset[c] != 0.0:
        view -= view.dtype.type(params.offset[c])
    if params.scale[c] != 1.0:
        view *= view.dtype.type(params.scale[c])


def apply_normalization(
    image: np.ndarray, params: NormalizationParams, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Apply ``params`` to ``image`` ``(..., C, Y, X)``; returns finite float32 of the same shape.

    Images whose values are all float32 (uint8/16, float16/32, ...) are mapped in float32 in
    ``out``. Other dtypes (float64, 32/64-bit ints) are mapped in float64 one channel at a time
    and cast at the end, so values beyond float32's range (a float64 image times 1e300) or with
    more digits than float32 holds normalise as they should instead of overflowing.

    Args:
        image: Raw values, channel axis at ``-3`` (an image or a batch of tiles).
        params: From :func:`normalization_params` on the whole image.
        out: Optional float32 destination (may be ``image`` itself when that is float32).

    Returns:
        ``out`` (or a new float32 array) holding the normalised values.
    """
    image = np.asarray(image)
    if out is None:
        out = np.empty(image.shape, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        if _exact_in_float32(image.dtype):
            if out is not image:
                np.copyto(out, image, casting="unsafe")
            for c in range(image.shape[-3]):
                _affine_(out[..., c, :, :], params, c)
        else:
            for c in range(image.shape[-3]):
                work = np.array(image[..., c, :, :], dtype=np.float64)
                _affine_(work, params, c)
                np.copyto(out[..., c, :, :], work, casting="unsafe")
        if params.float_input and not np.isfinite(out).all():
            # Values beyond float32 range after the affine map: clamp rather than pass Inf on.
            big = np.finfo(np.float32).max
            np.nan_to_num(out, copy=False, nan=0.0, posinf=big, neginf=-big)
    return out
