"""Batched, seeded training augmentation on torch tensors (the U-Net paper's recipe and a bit more).

Geometry: exact flips and 90-degree rotations, then ONE resampling that combines a small affine
(scale, rotation about the patch centre) with the paper's elastic deformation: random displacement
vectors on a coarse ``elastic_grid`` x ``elastic_grid`` grid, Gaussian-smoothed across the grid,
then bicubic-upsampled to a per-pixel field. The image is resampled bilinearly (or bicubically)
with reflection padding; class targets and weights with nearest neighbour, so no new label value
appears. Target pixels that come from outside the patch become ``IGNORE_INDEX`` (weight 0).
Intensity: gamma, brightness/contrast, Gaussian noise and Gaussian blur, on the image only
(:mod:`napari_unet.core.training.augment_intensity`).

Volumes (3-D models: image (B, C, D, H, W), targets (B, D, H, W)) get the exact geometry only --
flips in Z, Y and X and quarter turns in Y/X (never across the coarse Z) -- and the intensity ops;
the affine/elastic resampling is 2-D and skipped for them.

Everything is vectorised over the batch and runs on the batch's device; every random number comes
from the caller's ``torch.Generator`` (drawn on the generator's device), so a seed reproduces a
batch exactly. ``strength`` scales every magnitude; ``strength=0`` returns the inputs unchanged.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from napari_unet.core.training.augment_context import flip_context
from napari_unet.core.training.augment_intensity import (  # noqa: F401 (their old home)
    _bernoulli,
    _gaussian_blur,
    _intensity,
    _select,
    _uniform,
)
from napari_unet.core.training.config import AugmentConfig
from napari_unet.core.training.targets import IGNORE_INDEX

logger = logging.getLogger(__name__)

Tensor = torch.Tensor


def _flip_rot90(tensors: list[Tensor | None], config: AugmentConfig, g: torch.Generator) -> None:
    """Exact flips / quarter turns of every tensor (B, ..., H, W), the same per sample, in place.

    Each sample gets one composed transform (k quarter turns, then flips): at most two copies of
    its slice, and no work at all for samples drawn as the identity.
    """
    ref = next(t for t in tensors if t is not None)
    n = ref.shape[0]
    square = ref.shape[-1] == ref.shape[-2]
    zeros = torch.zeros(n, dtype=torch.bool)
    flip_x = _bernoulli(n, 0.5, g).cpu() if config.flip else zeros
    flip_y = _bernoulli(n, 0.5, g).cpu() if config.flip else zeros
    volume = ref.ndim == 5  # (B, C, D, H, W): Z is dim -3 of every tensor
    flip_z = _bernoulli(n, 0.5, g).cpu() if config.flip and volume else zeros
    odd = _bernoulli(n, 0.5, g).cpu() if config.rot90 else zeros
    half = _bernoulli(n, 0.5, g).cpu() if config.rot90 else zeros
    odd = odd & square  # a quarter turn would change a non-square patch's shape
    quarter_turns = odd.long() + 2 * half.long()
    plans = [
        (
            int(quarter_turns[i]),
            [d for d, f in ((-3, flip_z[i]), (-2, flip_y[i]), (-1, flip_x[i])) if f],
        )
        for i in range(n)
    ]
    if all(k == 0 and not dims for k, dims in plans):
        return
    for j, t in enumerate(tensors):
        if t is None:
            continue
        slices = []
        for i, (k, dims) in enumerate(plans):
            piece = torch.rot90(t[i], k, (-2, -1)) if k else t[i]
            slices.append(piece.flip(dims) if dims else piece)
        tensors[j] = torch.stack(slices)


def _smoothing_matrix(n: int, sigma: float) -> Tensor:
    """(n, n) row-normalised Gaussian smoothing along one grid axis (identity for sigma 0)."""
    if sigma <= 0:
        return torch.eye(n)
    pos = torch.arange(n, dtype=torch.float64)
    kernel = torch.exp(-((pos[:, None] - pos[None, :]) ** 2) / (2 * sigma**2))
    return (kernel / kernel.sum(1, keepdim=True)).float()


def _elastic_field(n: int, config: AugmentConfig, g: torch.Generator) -> Tensor:
    """(n, 2, k, k) coarse displacements (dy, dx) in pixels; std ``alpha`` at every grid node."""
    k = config.elastic_grid
    noise = torch.randn(n, 2, k, k, generator=g, device=g.device)
    smooth = _smoothing_matrix(k, config.elastic_sigma).to(noise.device)
    coarse = smooth @ noise @ smooth.T
    # Unit std per node: a node's std after smoothing is |row_i| * |row_j| of the matrix
    row_norm = smooth.norm(dim=1)
    coarse = coarse / (row_norm[:, None] * row_norm[None, :])
    return coarse * (config.elastic_alpha * config.strength)


def _bicubic_matrix(size: int, nodes: int, device: torch.device) -> Tensor:
    """(size, nodes) weights of bicubic upsampling (align_corners) along one axis.

    ``F.interpolate(..., mode="bicubic")`` is separable, so ``Wy @ coarse @ Wx.T`` equals it at a
    fraction of the cost.
    """
    basis = torch.eye(nodes, device=device).view(nodes, 1, nodes, 1)
    weights = F.interpolate(basis, size=(size, 1), mode="bicubic", align_corners=True)
    return weights.view(nodes, size).T


def _sampling_coordinates(
    n: int, shape: tuple[int, int], config: AugmentConfig, g: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor, Tensor] | None:
    """Source pixel coordinates (ys, xs), each (n, H, W) float32, and which samples move (n,).

    Returns ``None`` when no sample is resampled (so identity stays exact).
    """
    p = config.probability
    moved = torch.zeros(n, dtype=torch.bool, device=g.device)
    scale = torch.ones(n, device=g.device)
    angle = torch.zeros(n, device=g.device)
    coarse = None
    strength = config.strength
    lo, hi = (1 + strength * (s - 1) for s in config.affine_scale)
    use_affine = (lo, hi) != (1.0, 1.0) or config.affine_rotation_deg * strength > 0
    if use_affine:
        apply = _bernoulli(n, p, g)
        scale = torch.where(apply, _uniform(n, lo, hi, g), scale)
        max_angle = math.radians(config.affine_rotation_deg * strength)
        angle = torch.where(apply, _uniform(n, -max_angle, max_angle, g), angle)
        moved |= apply
    if config.elastic and config.elastic_alpha * strength > 0:
        apply = _bernoulli(n, p, g)
        coarse = _elastic_field(n, config, g) * apply.view(-1, 1, 1, 1)
        moved |= apply
    if not bool(moved.any()):
        return None
    h, w = shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ys = torch.arange(h, dtype=torch.float32, device=device) - cy
    xs = torch.arange(w, dtype=torch.float32, device=device) - cx
    yy, xx = ys.view(1, h, 1), xs.view(1, 1, w)
    cos, sin = (torch.cos(angle) / scale).to(device), (torch.sin(angle) / scale).to(device)
    cos, sin = cos.view(-1, 1, 1), sin.view(-1, 1, 1)
    src_y = cos * yy - sin * xx + cy
    src_x = sin * yy + cos * xx + cx
    if coarse is not None:
        coarse = coarse.to(device)
        field = _bicubic_matrix(h, coarse.shape[-2], device) @ coarse
        field = field @ _bicubic_matrix(w, coarse.shape[-1], device).T
        src_y = src_y + field[:, 0]
        src_x = src_x + field[:, 1]
    return src_y, src_x, moved.to(device)


def _resample_image(image: Tensor, src_y: Tensor, src_x: Tensor, mode: str) -> Tensor:
    """(B, C, H, W) image sampled at pixel coordinates (B, H, W), reflection-padded."""
    h, w = image.shape[-2:]
    grid = torch.stack(
        (src_x * (2 / max(w - 1, 1)) - 1, src_y * (2 / max(h - 1, 1)) - 1), dim=-1
    ).to(image.dtype)
    return F.grid_sample(image, grid, mode=mode, padding_mode="reflection", align_corners=True)


def _nearest_index(src_y: Tensor, src_x: Tensor) -> tuple[Tensor, Tensor]:
    """Flat index (B, H*W) int64 of the nearest source pixel; (B, H, W) bool: inside the patch."""
    b, h, w = src_y.shape
    # float arithmetic, one int64 conversion: ~6x faster than int64 throughout (exact < 2**24)
    iy, ix = torch.round(src_y), torch.round(src_x)
    inside = (iy >= 0) & (iy <= h - 1) & (ix >= 0) & (ix <= w - 1)
    flat = iy.clamp_(0, h - 1).mul_(w).add_(ix.clamp_(0, w - 1)).long().view(b, -1)
    return flat, inside


def _resample_nearest(values: Tensor, index: tuple[Tensor, Tensor], fill: float) -> Tensor:
    """(B, H, W) values gathered at :func:`_nearest_index`; ``fill`` outside the patch."""
    flat, inside = index
    out = torch.gather(values.reshape(flat.shape), 1, flat).view(values.shape)
    return out.masked_fill_(~inside, fill)


def _check(image: Tensor, others: dict[str, Tensor | None], channel_dim: set[str]) -> None:
    """Shapes must agree: image (B, C, H, W); targets (B, H, W) or (B, C', H, W) (volumes:
    image (B, C, D, H, W), targets (B, D, H, W))."""
    if image.ndim not in (4, 5) or not image.is_floating_point():
        raise ValueError(
            f"image must be a float (B, C, H, W) or (B, C, D, H, W) tensor, got "
            f"{tuple(image.shape)}"
        )
    spatial = image.ndim - 2
    for name, t in others.items():
        if t is None:
            continue
        ndim = spatial + (2 if name in channel_dim else 1)
        same = t.shape[-spatial:] == image.shape[-spatial:]
        if t.ndim != ndim or t.shape[0] != image.shape[0] or not same:
            raise ValueError(
                f"{name} {tuple(t.shape)} does not match image {tuple(image.shape)} "
                f"(expected {ndim} dims with the same batch and spatial size)"
            )


def augment_batch(
    image: Tensor,
    classes: Tensor | None,
    weights: Tensor | None,
    config: AugmentConfig,
    generator: torch.Generator,
    *,
    context_radius: int = 0,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Augment a training batch with one random draw per sample (geometry, then intensity).

    Args:
        image: (B, C, H, W) float32, normalised; or a volume batch (B, C, D, H, W) (flips,
            quarter turns in Y/X and intensity only; targets then (B, D, H, W)).
        classes: (B, H, W) int64 class targets with ``IGNORE_INDEX`` where nothing is learnt (the
            annotated mask is encoded here), or ``None``.
        weights: (B, H, W) float32 weight map, or ``None``.
        config: what to apply and how strongly.
        generator: the source of every random number (its device may differ from the batch's).
        context_radius: ``r`` of a 2.5-D batch (channels = ``2r + 1`` neighbour slices): with
            ``config.flip_context`` its neighbours are reversed at random (:func:`flip_context`).

    Returns:
        ``(image, classes, weights)`` with the input dtypes and shapes (the inputs are never
        modified in place; with ``strength == 0`` they are returned as they are). ``classes``
        holds only input values and ``IGNORE_INDEX`` (pixels resampled from outside the patch);
        ``weights`` is 0 there.
    """
    _check(image, {"classes": classes, "weights": weights}, set())
    if config.strength == 0:
        return image, classes, weights
    tensors = [image, classes, weights]
    _flip_rot90(tensors, config, generator)
    image, classes, weights = tensors
    if config.flip_context and image.ndim == 4:
        image = flip_context(image, context_radius, generator)
    coords = None
    if image.ndim == 4:  # the affine/elastic resampling is 2-D
        coords = _sampling_coordinates(
            image.shape[0], tuple(image.shape[-2:]), config, generator, image.device
        )
    if coords is not None:
        src_y, src_x, moved = coords
        warped = _resample_image(image, src_y, src_x, config.image_interpolation)
        image = _select(moved, warped, image)
        index = _nearest_index(src_y, src_x)
        if classes is not None:
            classes = _select(moved, _resample_nearest(classes, index, IGNORE_INDEX), classes)
        if weights is not None:
            weights = _select(moved, _resample_nearest(weights, index, 0.0), weights)
    image = _intensity(image, config, generator)
    return image, classes, weights


def augment_restoration(
    image: Tensor, target: Tensor, config: AugmentConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The same random geometry on an input image and its restoration target.

    Intensity ops are not applied: they would change the mapping the model has to learn.

    Args:
        image: (B, C, H, W) float32 input.
        target: (B, C', H, W) float32 target image (same batch and spatial size).
        config: geometry settings (flip, rot90, affine, elastic, strength).
        generator: the source of every random number.

    Returns:
        ``(image, target)``, both resampled with ``config.image_interpolation`` and reflection.
    """
    _check(image, {"target": target}, {"target"})
    if config.strength == 0:
        return image, target
    tensors = [image, target]
    _flip_rot90(tensors, config, generator)
    image, target = tensors
    coords = _sampling_coordinates(
        image.shape[0], tuple(image.shape[-2:]), config, generator, image.device
    )
    if coords is not None:
        src_y, src_x, moved = coords
        mode = config.image_interpolation
        image = _select(moved, _resample_image(image, src_y, src_x, mode), image)
        target = _select(moved, _resample_image(target, src_y, src_x, mode), target)
    return image, target
