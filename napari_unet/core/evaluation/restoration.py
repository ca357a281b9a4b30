"""Scoring a restored image: peak signal-to-noise ratio and reproducible noisy copies.

Numpy only. ``psnr`` follows scikit-image's definition (``10 log10(range^2 / MSE)``) with the data
range given explicitly, so noisy, restored and clean images of any dtype are compared on one scale.
"""

from __future__ import annotations

import math

import numpy as np


def psnr(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio of ``image`` against ``reference`` in decibels.

    Args:
        reference: the clean image, any shape. image: same shape (noisy or restored).
        data_range: the span of valid values (1.0 for images scaled to [0, 1]).

    Returns:
        ``10 * log10(data_range**2 / mse)``; ``inf`` when the images are equal.

    Raises:
        ValueError: the shapes differ or ``data_range`` is not positive.
    """
    reference = np.asarray(reference, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    if reference.shape != image.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {image.shape}")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    mse = float(np.mean((reference - image) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def noisy_copy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``clean`` (float, ~[0, 1]) plus Gaussian noise of std ``sigma``: float32, same shape."""
    generator = np.random.default_rng(seed)
    noise = generator.normal(0.0, sigma, size=np.shape(clean))
    return (np.asarray(clean, dtype=np.float64) + noise).astype(np.float32)
