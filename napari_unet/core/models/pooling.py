"""Which axes a 3-D network pools at each level, from the voxel size (nnU-Net's planning rule).

EM sections (ISBI 2012: about 50 x 4 x 4 nm, Z x Y x X) and light-microscopy Z-stacks (the embryo
stacks: 1.75 x 0.8 x 0.8 µm) are coarser in Z than in Y/X. Pooling Z as often as Y/X would make
the deep feature maps far coarser in Z than in Y/X; nnU-Net (Isensee et al. 2021, ``experiment
planning``, ``get_pool_and_conv_props``) instead pools an axis only while it is fine enough.

The rule implemented here (nnU-Net's, without its patch-size limit):

1. Start from the voxel size ``s = (sz, sy, sx)``.
2. At each of the ``depth`` levels, pool (factor 2) exactly the axes whose current spacing is less
   than twice the finest current spacing (``s[a] < 2 * min(s)``); the others get factor 1.
3. A pooled axis doubles its spacing; go to the next level.

The finest axis is always pooled, so every level pools. ISBI (50, 4, 4) gives (1, 2, 2) three
times (Y/X spacing 8, 16, 32 nm) and (2, 2, 2) from the fourth level on; the embryo voxel (1.75,
0.8, 0.8) gives (1, 2, 2) once, then (2, 2, 2). An isotropic voxel pools all axes at every level
(Çiçek et al.'s 3-D U-Net).

:func:`conv_kernel_schedule` is nnU-Net's companion rule for the convolution kernels: at each level
the largest group of axes whose spacings lie within a factor 2 of each other gets kernel 3, the
other axes kernel 1 (so a coarse Z is not convolved across while sections are far apart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from napari_unet.core.errors import UserInputError

#: Largest accepted ratio between the coarsest and the finest voxel side; beyond it the sizes are
#: almost certainly in mixed units (e.g. Z in µm, Y/X in nm).
MAX_ANISOTROPY = 100.0


def check_voxel_size(voxel_size: Sequence[float]) -> tuple[float, float, float]:
    """``voxel_size`` as three positive finite floats ``(z, y, x)``.

    Raises:
        UserInputError: Missing or wrong length, a side that is not a positive finite number, or
            sides more than :data:`MAX_ANISOTROPY` times apart (probably mixed units).
    """
    try:
        sizes = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        sizes = ()
    if len(sizes) != 3:
        raise UserInputError(
            f"voxel_size must be three numbers (z, y, x), got {voxel_size!r}; give the voxel "
            "size of the volume, e.g. (50, 4, 4) nm for serial-section EM."
        )
    if not all(math.isfinite(v) and v > 0 for v in sizes):
        raise UserInputError(
            f"voxel_size must be positive finite numbers (z, y, x), got {sizes}; give the voxel "
            "size of the volume in one unit, e.g. (1.75, 0.8, 0.8) µm."
        )
    if max(sizes) / min(sizes) > MAX_ANISOTROPY:
        raise UserInputError(
            f"voxel_size {sizes} has sides more than {MAX_ANISOTROPY:g} times apart; check that "
            "z, y and x are in the same unit (e.g. all in µm)."
        )
    return sizes  # type: ignore[return-value]


def pooling_schedule(voxel_size: Sequence[float], depth: int) -> list[tuple[int, int, int]]:
    """Pooling factors ``(pz, py, px)`` (1 or 2) for each of ``depth`` levels (rule: module doc).

    Args:
        voxel_size: ``(z, y, x)`` voxel size, any unit (the same for all three).
        depth: Number of pooling levels (>= 1).

    Returns:
        ``depth`` tuples, shallow level first, e.g. ``[(1, 2, 2), (2, 2, 2)]`` for the embryo
        voxel ``(1.75, 0.8, 0.8)`` at depth 2.

    Raises:
        UserInputError: Bad voxel size (see :func:`check_voxel_size`).
        ValueError: ``depth`` is not a positive integer.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    spacing = list(check_voxel_size(voxel_size))
    schedule = []
    for _ in range(depth):
        finest = min(spacing)
        pools = tuple(2 if s < 2 * finest else 1 for s in spacing)
        spacing = [s * p for s, p in zip(spacing, pools)]
        schedule.append(pools)
    return schedule  # type: ignore[return-value]


def conv_kernel_schedule(voxel_size: Sequence[float], depth: int) -> list[tuple[int, int, int]]:
    """Convolution kernels ``(kz, ky, kx)`` (1 or 3) for each of the ``depth + 1`` levels.

    The spacing of level ``l`` is the voxel size times the pooling of the levels above it
    (:func:`pooling_schedule`); the largest group of axes within a factor 2 of each other gets
    kernel 3 (ISBI: ``(1, 3, 3)`` for the first three levels, then ``(3, 3, 3)``).
    """
    spacing = list(check_voxel_size(voxel_size))
    kernels = []
    for pools in [*pooling_schedule(voxel_size, depth), (1, 1, 1)]:
        group: list[int] = []
        for mine in spacing:
            partners = [i for i, s in enumerate(spacing) if s < 2 * mine and mine < 2 * s]
            if len(partners) > len(group):
                group = partners
        kernels.append(tuple(3 if i in group else 1 for i in range(3)))
        spacing = [s * p for s, p in zip(spacing, pools)]
    return kernels  # type: ignore[return-value]


def model_voxel_size(model: object) -> tuple[float, ...]:
    """The voxel size (z, y, x) stored in a model's config (``unet3d_aniso``), else isotropic
    ``(1, 1, 1)``: what its 3-D watershed measures distances in when nothing else says."""
    config = dict(getattr(model, "config", {}) or {})
    return tuple(float(v) for v in config.get("voxel_size") or (1.0, 1.0, 1.0))
