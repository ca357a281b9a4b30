"""Small synthetic volumes and a tiny trained 3-D checkpoint for the 3-D GUI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (16, 64, 64)
#: Ellipsoid centres (z, y, x); semi-axes 4 x 8 x 8 voxels: each spans 7 slices.
CENTRES = ((6, 18, 18), (9, 44, 40), (8, 20, 46))


def balls(shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A (Z, Y, X) uint16 volume of three bright ellipsoids and their instance labels."""
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    labels = np.zeros(shape, np.uint8)
    for value, centre in enumerate(CENTRES, start=1):
        inside = sum(((g - c) / s) ** 2 for g, c, s in zip(grids, centre, (4, 8, 8))) < 1
        labels[inside] = value
    rng = np.random.default_rng(0)
    image = (np.where(labels > 0, 800, 100) + rng.integers(0, 60, shape)).astype(np.uint16)
    return image, labels


def trained_checkpoint(path: Path, steps: int = 25) -> Path:
    """A depth-1 ``unet3d_aniso`` binary model fitted to :func:`balls` (~15 s on one core).

    A random 3-D net segments nothing useful; a few full-volume steps make its foreground
    match the balls (IoU ~0.85), so the dock's 3-D objects can be checked.
    """
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    image, truth = balls()
    torch.manual_seed(0)
    model = build_model("unet3d_aniso", depth=1, base_channels=4, out_channels=1)
    low, high = np.percentile(image, (1, 99.8))
    x = torch.from_numpy(((image - low) / (high - low)).astype(np.float32))[None, None]
    y = torch.from_numpy((truth > 0).astype(np.float32))[None, None]
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        optimiser.step()
    model.eval()
    return save_checkpoint(path, model, task="binary", tile_shape=(16, 64, 64), overlap=4)
