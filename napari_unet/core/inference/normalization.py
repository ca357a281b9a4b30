"""Input normalisation: any real-dtype image -> finite float32 the network can take.

Three modes (:class:`NormalizationConfig`):

- ``"percentile"`` (default): per image and channel, ``(x - lo) / (hi - lo)`` with ``lo``/``hi``
  the ``low``/``high`` percentiles of the channel's finite values. Not clipped.
- ``"meanstd"``: ``(x - mean[c]) / std[c]`` with per-channel values stored in the checkpoint (the
  retina example's way), in the raw units of the image (for an 8-bit image scaled to [0, 1] by
  ``ToTensor`` first, multiply the published mean/std by 255).
- ``"none"``: cast to float32 only.

``invert=True`` flips the result (``1 - x`` in percentile mode, ``-x`` in the others), so dark
objects on a bright background reach a model trained on bright objects as it knows them
(``train`` chooses it from the corrected images: :mod:`napari_unet.core.training.polarity`); it is
stored in the checkpoint and every prediction path applies it.

A float64 channel whose largest finite magnitude lies beyond float32's range is divided by that
magnitude first (percentile mode), so ``hi - lo`` and ``x - lo`` cannot overflow even for values
near float64's maximum (an image spanning -1e308 .. 1e308 normalises like one spanning -1 .. 1).

Every mode returns finite values: NaN becomes the low value (0 after normalisation in the
percentile and meanstd modes), +Inf the high value, -Inf the low value; a constant channel
becomes zeros. Percentiles of big images are computed on a regular strided subsample of at most
:data:`MAX_PERCENTILE_SAMPLES` pixels, so their cost is bounded whatever the image size.

The work is split in two so that prediction can normalise tile by tile without a float32 copy
of the whole image: :func:`normalization_params` measures a ``(C, Y, X)`` image once and
:func:`apply_normalization` (:mod:`napari_unet.core.inference.normalization_apply`, re-exported
here) applies the result to any array whose axis ``-3`` is the channel axis (the image itself or
a batch of tiles). :func:`normalize` does both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from napari_unet.core.config import Config
from napari_unet.core.errors import ChannelMismatchError, UserInputError
from napari_unet.core.inference.normalization_apply import (
    NormalizationParams,
    apply_normalization,
)

logger = logging.getLogger(__name__)

#: Normalisation modes.
MODES: tuple[str, ...] = ("percentile", "meanstd", "none")
#: Percentiles are computed on at most about this many pixels per channel.
MAX_PERCENTILE_SAMPLES = 1 << 20
#: A channel whose largest finite magnitude exceeds this (float32's maximum) is divided by that
#: magnitude before it is measured and mapped.
PRESCALE_ABOVE = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class NormalizationConfig(Config):
    """How images are normalised before they reach the network.

    Attributes:
        mode: ``"percentile"``, ``"meanstd"`` or ``"none"``.
        low: Lower percentile in [0, 100) (percentile mode).
        high: Upper percentile in (low, 100] (percentile mode).
        mean: Per-channel means in raw image units (meanstd mode; one value is used for all).
        std: Per-channel standard deviations, > 0 (meanstd mode; same length as ``mean``).
        invert: flip the normalised values (``1 - x`` percentile, ``-x`` otherwise).
    """

    mode: str = "percentile"
    low: float = 1.0
    high: float = 99.8
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    invert: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"normalization mode must be one of {', '.join(MODES)}, got {self.mode!r}"
            )
        if not (0.0 <= float(self.low) < float(self.high) <= 100.0):
            raise ValueError(
                f"percentiles must satisfy 0 <= low < high <= 100, "
                f"got low={self.low}, high={self.high}"
            )
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != len(self.std):
            raise ValueError(
                f"mean and std need one value per channel each, "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"mean values must be finite, got {self.mean}")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"std values must be finite and > 0, got {self.std}")
        if self.mode == "meanstd" and not self.mean:
            raise ValueError("meanstd normalization needs per-channel mean and std values")


def _check_real(image: np.ndarray) -> None:
    if image.dtype == bool or np.issubdtype(image.dtype, np.integer):
        return
    if np.issubdtype(image.dtype, np.floating):
        return
    raise UserInputError(
        f"images of dtype {image.dtype} cannot be segmented; convert the image to a real "
        "(integer, float or boolean) type first."
    )


def _subsample(channel: np.ndarray, max_samples: int) -> np.ndarray:
    """A regular strided subsample of ``channel`` with at most about ``max_samples`` values."""
    if channel.size <= max_samples:
        return channel
    step = math.ceil((channel.size / max_samples) ** (1.0 / channel.ndim))
    return channel[(slice(None, None, step),) * channel.ndim]


def _finite_values(channel: np.ndarray, divisor: float = 1.0) -> np.ndarray:
    """Flat float64 array of the finite values of ``channel``, divided by ``divisor``."""
    values = np.asarray(channel, dtype=np.float64).ravel()
    if np.issubdtype(channel.dtype, np.floating):
        values = values[np.isfinite(values)]
    return values / divisor if divisor != 1.0 else values


def _divisor(channel: np.ndarray) -> float:
    """The largest finite ``|value|`` of ``channel`` when it lies beyond float32's range, else 1.

    Measured on the percentile subsample: values elsewhere are at most float64's maximum, so
    after the division they stay below ``float64 max / PRESCALE_ABOVE`` (about 5e269).
    """
    if not np.issubdtype(channel.dtype, np.floating) or channel.dtype.itemsize <= 4:
        return 1.0
    values = _finite_values(_subsample(channel, MAX_PERCENTILE_SAMPLES))
    top = float(np.abs(values).max(initial=0.0))
    return top if top > PRESCALE_ABOVE else 1.0


def percentile_range(
    image: np.ndarray,
    low: float = 1.0,
    high: float = 99.8,
    *,
    max_samples: int = MAX_PERCENTILE_SAMPLES,
    divisor: float = 1.0,
) -> tuple[float, float]:
    """``(lo, hi)`` percentiles of the finite values of ``image`` (any shape, any real dtype).

    Uses a strided subsample of at most about ``max_samples`` values. An image without finite
    values gives ``(0.0, 0.0)``. With ``divisor``, the percentiles of ``image / divisor``
    (computed without overflow for values near float64's maximum).
    """
    image = np.asarray(image)
    _check_real(image)
    values = _finite_values(_subsample(image, max_samples), divisor)
    if values.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(values, [low, high])
    return float(lo), float(hi)


def _finite_min_max(channel: np.ndarray, divisor: float = 1.0) -> tuple[float, float]:
    values = _finite_values(channel, divisor)
    if values.size == 0:
        return 0.0, 0.0
    return float(values.min()), float(values.max())


def normalization_params(
    image: np.ndarray, config: NormalizationConfig | None = None
) -> NormalizationParams:
    """Measure ``image`` ``(C, Y, X)`` (any real dtype) for :func:`apply_normalization`.

    Raises:
        UserInputError: Complex or non-numeric dtype.
        ChannelMismatchError: meanstd values for a different number of channels.
    """
    config = config or NormalizationConfig()
    image = np.asarray(image)
    _check_real(image)
    if image.ndim != 3:
        raise ValueError(f"normalize expects a (C, Y, X) image, got shape {image.shape}")
    n_channels = image.shape[0]
    is_float = np.issubdtype(image.dtype, np.floating)
    columns: list[tuple[float, float, float, float, float]] = []
    divisors = np.ones(n_channels, dtype=np.float64)
    if config.mode == "meanstd" and len(config.mean) not in (1, n_channels):
        raise ChannelMismatchError(
            f"the normalization stores mean/std for {len(config.mean)} channel(s) but the image "
            f"has {n_channels}; use the image the model was trained on or check the axes."
        )
    for c in range(n_channels):
        channel = image[c]
        if config.mode == "percentile":
            divisors[c] = divisor = _divisor(channel)
            lo, hi = percentile_range(channel, config.low, config.high, divisor=divisor)
            if not hi > lo:
                # Percentiles coincide (e.g. sparse spots on an empty background): use the range.
                lo, hi = _finite_min_max(channel, divisor)
            scale = 1.0 / (hi - lo) if hi > lo else 0.0
            columns.append((lo, scale, lo, hi, lo))
            continue
        if is_float:
            fmin, fmax = _finite_min_max(_subsample(channel, MAX_PERCENTILE_SAMPLES))
        else:
            fmin = fmax = 0.0
        if config.mode == "meanstd":
            mean = config.mean[c if len(config.mean) > 1 else 0]
            std = config.std[c if len(config.std) > 1 else 0]
            columns.append((mean, 1.0 / std, mean, fmax, fmin))
        else:
            columns.append((0.0, 1.0, 0.0, fmax, fmin))
    table = np.array(columns, dtype=np.float64).reshape(n_channels, 5)
    if config.invert:
        table = _inverted(table, percentile=config.mode == "percentile")
    return NormalizationParams(
        *(table[:, i].copy() for i in range(5)),
        float_input=is_float,
        divisor=divisors if (divisors != 1.0).any() else None,
    )


def _inverted(table: np.ndarray, *, percentile: bool) -> np.ndarray:
    """Columns ``(offset, scale, nan, posinf, neginf)`` of the flipped map: ``1 - (x - o) s =
    (x - (o + 1/s)) (-s)`` (percentile) or ``-(x - o) s`` (other modes); NaN still maps to 0 and
    a constant channel (scale 0) stays zeros."""
    table = table.copy()
    live = table[:, 1] != 0.0
    if percentile:
        table[live, 0] += 1.0 / table[live, 1]
        table[live, 2] = table[live, 0]
    table[live, 1] *= -1.0
    return table


def normalize(image: np.ndarray, config: NormalizationConfig | None = None) -> np.ndarray:
    """Normalise ``image`` ``(C, Y, X)`` of any real dtype (bool, int, uint, float16/32/64).

    Args:
        image: The image; never modified.
        config: How to normalise (default: 1st-99.8th percentile per channel).

    Returns:
        Finite float32 ``(C, Y, X)``; a constant channel becomes zeros.

    Raises:
        UserInputError: Complex or non-numeric dtype.
        ChannelMismatchError: meanstd values for a different number of channels.
    """
    image = np.asarray(image)
    params = normalization_params(image, config)
    return apply_normalization(image, params)
