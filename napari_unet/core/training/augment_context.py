"""Z-order augmentation of 2.5-D batches: each sample's neighbour slices reversed at random.

A 2.5-D model (:mod:`napari_unet.core.models.context25d`) reads slice ``z`` with the slices
``z - r .. z + r`` as neighbour-major channel blocks. Reversing those blocks (slice ``z + k``
where ``z - k`` was) is a valid symmetry of a volume: the same structures seen from the other
side. A 2-D model cannot use it; a 2.5-D model trained from a few annotated slices sees twice the
neighbour patterns, and at prediction (``PredictConfig.z_flip``) averages both orders.
"""

from __future__ import annotations

import torch

from napari_unet.core.training.augment_intensity import _bernoulli

__all__ = ["flip_context"]


def flip_context(image: torch.Tensor, radius: int, generator: torch.Generator) -> torch.Tensor:
    """``image`` ``(B, C * (2r + 1), H, W)`` with each sample's neighbour slices in reverse order
    with probability 1/2 (one draw per sample from ``generator``); the centre slice stays.

    Returns ``image`` itself when ``radius`` is 0 (nothing is drawn then) or no sample is drawn,
    else a new tensor (``image`` is not modified).
    """
    if radius <= 0:
        return image
    n, channels, height, width = image.shape
    flip = _bernoulli(n, 0.5, generator).to(image.device)
    if not bool(flip.any()):
        return image
    blocks = image.reshape(n, 2 * radius + 1, channels // (2 * radius + 1), height, width)
    reversed_ = torch.flip(blocks, (1,)).reshape(image.shape)
    return torch.where(flip.view(-1, 1, 1, 1), reversed_, image)
