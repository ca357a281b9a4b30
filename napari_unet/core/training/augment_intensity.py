"""Random draws shared by the augmentations, and the intensity augmentation (image only).

Moved out of :mod:`napari_unet.core.training.augment` (which imports them from here): gamma,
brightness/contrast, Gaussian blur (in Y/X, per slice of a volume) and Gaussian noise, each applied
with ``probability`` per sample, on (B, C, H, W) image batches or (B, C, D, H, W) volume batches.
Every random number comes from the caller's ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from napari_unet.core.training.config import AugmentConfig

Tensor = torch.Tensor


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    """(n,) float32 uniform in [low, high) drawn on the generator's device."""
    u = torch.rand(n, generator=generator, device=generator.device)
    return low + (high - low) * u


def _bernoulli(n: int, p: float, generator: torch.Generator) -> Tensor:
    """(n,) bool, True with probability ``p``."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def _select(mask: Tensor, changed: Tensor, original: Tensor) -> Tensor:
    """Per-sample choice: ``changed`` where ``mask`` (B,) is True, else ``original``."""
    if bool(mask.all()):
        return changed
    shape = (-1,) + (1,) * (original.ndim - 1)
    return torch.where(mask.view(shape), changed, original)


def _gaussian_blur(image: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample separable Gaussian blur of (B, C, H, W); ``sigma`` (B,) in pixels (0 = none)."""
    b, _, h, w = image.shape
    radius = max(math.ceil(3 * float(sigma.max())), 1)
    radius = min(radius, min(h, w) - 1)  # reflection padding needs pad < size
    if radius == 0:
        return image
    pos = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    s = sigma.to(image.dtype).clamp_min(1e-3).view(-1, 1)
    kernel = torch.exp(-(pos.view(1, -1) ** 2) / (2 * s**2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (B, 2r+1)
    # shifted multiply-adds: per-sample kernels without grouped convolutions (several x faster
    # on CPU for these small kernels)
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    rows = sum(
        kernel[:, k].view(b, 1, 1, 1) * padded[..., k : k + h, :] for k in range(2 * radius + 1)
    )
    return sum(kernel[:, k].view(b, 1, 1, 1) * rows[..., k : k + w] for k in range(2 * radius + 1))


def _intensity(image: Tensor, config: AugmentConfig, g: torch.Generator) -> Tensor:
    """Gamma, brightness/contrast, blur and noise, each with ``probability`` per sample.

    ``image`` is (B, C, H, W) or a volume batch (B, C, D, H, W) (blurred in Y/X per slice).
    """
    n, device, s, p = image.shape[0], image.device, config.strength, config.probability
    if s == 0 or p == 0:
        return image
    view = (-1,) + (1,) * (image.ndim - 1)
    dims = tuple(range(1, image.ndim))
    low = image.amin(dim=dims, keepdim=True)
    span = (image.amax(dim=dims, keepdim=True) - low).clamp_min(1e-6)
    g_lo, g_hi = (math.log(v) * s for v in config.gamma)
    if g_lo != 0 or g_hi != 0:
        apply = _bernoulli(n, p, g).to(device)
        gamma = torch.exp(_uniform(n, g_lo, g_hi, g)).to(device).view(view)
        changed = low + span * ((image - low) / span).clamp(0, 1) ** gamma
        image = _select(apply, changed, image)
    if config.brightness > 0 or config.contrast > 0:
        apply = _bernoulli(n, p, g).to(device).view(view)
        shift = _uniform(n, -config.brightness * s, config.brightness * s, g).to(device)
        factor = _uniform(n, 1 - config.contrast * s, 1 + config.contrast * s, g).to(device)
        mean = image.mean(dim=dims, keepdim=True)
        changed = mean + factor.view(view) * (image - mean) + shift.view(view) * span
        image = torch.where(apply, changed, image)
    b_lo, b_hi = (v * s for v in config.blur_sigma)
    if b_hi > 0:
        apply = _bernoulli(n, p, g).to(device)
        sigma = _uniform(n, b_lo, b_hi, g).to(device) * apply
        if bool(apply.any()) and float(sigma.max()) > 0:
            planes = image.reshape(n, -1, *image.shape[-2:])  # a volume: blurred slice by slice
            blurred = _gaussian_blur(planes, sigma).reshape(image.shape)
            image = _select(apply, blurred, image)
    if config.noise_std > 0:
        apply = _bernoulli(n, p, g).to(device)
        std = _uniform(n, 0.0, config.noise_std * s, g).to(device) * apply
        noise = torch.randn(image.shape, generator=g, device=g.device).to(device)
        image = image + noise * std.view(view) * span
    return image
