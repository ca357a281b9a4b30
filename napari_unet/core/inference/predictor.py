"""The tile predictor of a model: activation, test-time augmentation, device and precision.

Moved out of :mod:`napari_unet.core.inference.prediction` (which re-exports every name here):
:func:`make_predictor` turns a network into the ``tiles -> probabilities`` function the tiler
calls; :func:`tile_normalizer` normalises each tile as it is cut; :func:`inference_net` is the
fused eval copy of the caller's model that actually runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from napari_unet.core.device import autocast
from napari_unet.core.inference.config import PredictConfig
from napari_unet.core.inference.geometry import spatial_dims_of
from napari_unet.core.inference.normalization import NormalizationParams, apply_normalization
from napari_unet.core.inference.tiling import Prepare
from napari_unet.core.models.fuse import fuse_for_inference

__all__ = [
    "inference_net",
    "make_predictor",
    "reverse_z",
    "tile_normalizer",
    "tta_transforms",
    "z_flips",
]


def _activation(task: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if task == "binary":
        return torch.sigmoid
    if task == "instances":  # 4 channels: a distance head's logit last (core.models.aux)
        return lambda logits: (
            torch.cat([torch.softmax(logits[:, :3], dim=1), torch.sigmoid(logits[:, 3:])], dim=1)
            if logits.shape[1] == 4
            else torch.softmax(logits, dim=1)
        )
    if task == "semantic":
        return lambda logits: torch.softmax(logits, dim=1)
    return lambda logits: logits


def tta_transforms(mode: str) -> list[tuple[bool, tuple[int, ...]]]:
    """The symmetries ``(transpose, flipped dims)`` of ``mode`` for ``(B, C, H, W)`` tensors.

    Applied as: transpose H/W first, then flip; undone in the reverse order. The identity is
    first. Transposing keeps a valid input shape valid (the size rule is the same on both axes).
    """
    flips: list[tuple[int, ...]] = [()] if mode == "none" else [(), (-1,), (-2,), (-2, -1)]
    transposes = (False, True) if mode == "dihedral" else (False,)
    return [(t, f) for t in transposes for f in flips]


def reverse_z(batch: torch.Tensor, radius: int) -> torch.Tensor:
    """``batch`` with Z reversed: a 3-D ``(B, C, D, H, W)`` batch flipped in D (``radius`` 0),
    or a 2.5-D ``(B, C * (2r + 1), H, W)`` batch with its neighbour slices (neighbour-major
    channel blocks) in reverse order. A copy; ``batch`` is not modified."""
    if radius == 0:
        return torch.flip(batch, (-3,))
    n, channels, height, width = batch.shape
    blocks = batch.reshape(n, 2 * radius + 1, channels // (2 * radius + 1), height, width)
    return torch.flip(blocks, (1,)).reshape(batch.shape)


def z_flips(model: nn.Module, config: PredictConfig) -> tuple[int | None, ...]:
    """The Z passes of ``model``: ``(None,)`` (as given), or with ``config.z_flip`` for a 2.5-D
    model ``(None, r)`` and a 3-D one ``(None, 0)`` (the argument of :func:`reverse_z`)."""
    radius = int(getattr(model, "context_slices", 0) or 0)
    if not config.z_flip or (radius == 0 and spatial_dims_of(model) != 3):
        return (None,)
    return (None, radius)


def _augmented(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batch: torch.Tensor,
    mode: str,
    z_passes: tuple[int | None, ...] = (None,),
) -> torch.Tensor:
    """``forward(batch)`` (activated, float32) averaged over the ``mode`` symmetries of ``batch``
    and, for each, the Z passes of :func:`z_flips` (a 3-D output is flipped back in Z; a 2.5-D
    output is the centre slice's, which reversing its neighbours does not move).

    ``batch``: ``(B, C, H, W)`` or ``(B, C, D, H, W)``; returns ``(B, K, ...)`` as ``forward``.
    """
    total: torch.Tensor | None = None
    transforms = tta_transforms(mode)
    for transpose, dims in transforms:
        view = batch.transpose(-1, -2) if transpose else batch
        view = torch.flip(view, dims) if dims else view
        for radius in z_passes:
            out = forward(view if radius is None else reverse_z(view, radius))
            out = torch.flip(out, (-3,)) if radius == 0 else out
            out = torch.flip(out, dims) if dims else out
            out = out.transpose(-1, -2) if transpose else out
            total = out if total is None else total + out
    assert total is not None
    passes = len(transforms) * len(z_passes)
    return total if passes == 1 else total / passes


def make_predictor(
    model: nn.Module,
    *,
    task: str,
    device: torch.device,
    config: PredictConfig,
) -> Callable[[np.ndarray], np.ndarray]:
    """``tiles (B, C, h, w)`` normalised float32 -> activated ``(B, K, h', w')`` numpy (3-D
    models: ``(B, C, d, h, w) -> (B, K, d', h', w')``)."""
    activation = _activation(task)
    memory_format = _memory_format(model, config)
    z_passes = z_flips(model, config)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        batch = batch.contiguous(memory_format=memory_format)  # flipped views are copied here
        with autocast(device, config.precision):
            logits = model(batch)
        return activation(logits.float())

    def predictor(tiles: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(tiles).to(device)
        with torch.inference_mode():
            probabilities = _augmented(forward, batch, config.tta, z_passes)
        return probabilities.cpu().numpy()

    return predictor


def _memory_format(model: nn.Module, config: PredictConfig) -> torch.memory_format:
    if not config.channels_last:
        return torch.contiguous_format
    return torch.channels_last_3d if spatial_dims_of(model) == 3 else torch.channels_last


def tile_normalizer(params: NormalizationParams) -> Prepare:
    """Fill a float32 batch slot with a raw tile normalised by ``params`` (in float64 if needed)."""
    return lambda destination, tile: apply_normalization(tile, params, out=destination)


def inference_net(model: nn.Module, device: torch.device, config: PredictConfig) -> nn.Module:
    """The fused eval copy of ``model`` on ``device`` in the configured memory format."""
    net = fuse_for_inference(model).to(device)
    if config.channels_last:
        net.to(memory_format=_memory_format(model, config))
    return net
