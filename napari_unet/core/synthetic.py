"""Deterministic synthetic microscopy images with exact ground truth.

Used by the sample data, the README walkthrough and the tests: no file or download needed.

- :func:`synthetic_nuclei`: fluorescent-nuclei-like image (bright blobs on a dark, noisy
  background, some touching) with instance labels.
- :func:`synthetic_em`: EM-like image (cells separated by dark membranes, textured interior) with
  membrane labels (1 = membrane, 0 = interior) and the cell instance labels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def synthetic_nuclei(
    shape: tuple[int, int] = (256, 256),
    *,
    n_nuclei: int = 40,
    radius: tuple[float, float] = (6.0, 14.0),
    noise: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-like nuclei image and its instance labels.

    Args:
        shape: (Y, X) of the image.
        n_nuclei: how many nuclei to place (some may touch or be rejected when fully covered).
        radius: range of the ellipse semi-axes in pixels.
        noise: standard deviation of additive Gaussian noise, relative to the nucleus brightness.
        seed: random seed; the same seed gives the same images.

    Returns:
        ``image`` (Y, X) uint16 and ``labels`` (Y, X) uint16 with 0 = background, 1..N nuclei.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    labels = np.zeros(shape, np.uint16)
    intensity = np.zeros(shape, np.float32)
    next_id = 1
    for _ in range(n_nuclei):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ry, rx = rng.uniform(*radius, size=2)
        angle = rng.uniform(0, np.pi)
        cos, sin = np.cos(angle), np.sin(angle)
        dy, dx = yy - cy, xx - cx
        u = (dy * cos + dx * sin) / ry
        v = (-dy * sin + dx * cos) / rx
        inside = (u * u + v * v) <= 1.0
        free = inside & (labels == 0)
        if free.sum() < 0.6 * inside.sum() or not free.any():
            continue  # mostly hidden behind an earlier nucleus: skip it
        labels[free] = next_id
        brightness = rng.uniform(0.5, 1.0)
        texture = 1.0 - 0.3 * (u * u + v * v)
        intensity[free] = brightness * texture[free]
        next_id += 1
    image = ndimage.gaussian_filter(intensity, 1.0) + 0.05
    image += rng.normal(0.0, noise, shape).astype(np.float32)
    image = np.clip(image, 0, None) * 4000.0
    return image.astype(np.uint16), labels


def synthetic_em(
    shape: tuple[int, int] = (256, 256),
    *,
    n_cells: int = 30,
    membrane_width: int = 3,
    noise: float = 0.08,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An EM-like image of cells separated by dark membranes.

    Cells are the Voronoi regions of random seeds; membranes are their boundaries, widened to
    ``membrane_width`` pixels.

    Args:
        shape: (Y, X) of the image.
        n_cells: number of Voronoi cells.
        membrane_width: membrane thickness in pixels.
        noise: standard deviation of additive noise (image range ~[0, 1] before scaling).
        seed: random seed.

    Returns:
        ``image`` (Y, X) uint8, ``membranes`` (Y, X) uint8 with 1 = membrane and 0 = interior,
        and ``cells`` (Y, X) uint16 cell instance ids (0 on membranes).
    """
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    points = rng.integers(0, [shape[0], shape[1]], size=(n_cells, 2))
    seeds[points[:, 0], points[:, 1]] = np.arange(1, n_cells + 1)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    regions = seeds[iy, ix]
    edges = np.zeros(shape, bool)
    edges[:-1] |= regions[:-1] != regions[1:]
    edges[:, :-1] |= regions[:, :-1] != regions[:, 1:]
    membranes = ndimage.binary_dilation(edges, iterations=max(membrane_width // 2, 1))
    cells = np.where(membranes, 0, regions).astype(np.uint16)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 2.0)
    brightness = 0.65 + 0.1 * rng.uniform(-1, 1, n_cells + 1).astype(np.float32)
    image = brightness[regions] + 0.15 * texture
    image[membranes] = 0.2
    image = ndimage.gaussian_filter(image, 0.8) + rng.normal(0, noise, shape).astype(np.float32)
    image = np.clip(image, 0, 1) * 255
    return image.astype(np.uint8), membranes.astype(np.uint8), cells
