"""The anisotropic padded 3-D U-Net (``unet3d_aniso``): pooling chosen from the voxel size.

Moved out of :mod:`napari_unet.core.models.unet3d` (which re-exports its names): the same network
as ``unet3d`` (padded), with a per-level pooling and kernel schedule chosen from the voxel size as
nnU-Net does (:mod:`napari_unet.core.models.pooling`): for serial-section EM (50 x 4 x 4 nm) it
pools 1x2x2 and convolves 1x3x3 while Z is much coarser than Y/X.
"""

from __future__ import annotations

import dataclasses
import math

from napari_unet.core.config import Config
from napari_unet.core.models.base import check_bool, check_choice, check_int
from napari_unet.core.models.blocks3d import UPSAMPLING_3D
from napari_unet.core.models.pooling import (
    check_voxel_size,
    conv_kernel_schedule,
    pooling_schedule,
)
from napari_unet.core.models.registry import register_model
from napari_unet.core.models.unet3d import _UNet3DBase

__all__ = ["UNet3DAniso", "UNet3DAnisoConfig"]


def _check_schedule(name: str, schedule: tuple, length: int, allowed: tuple[int, ...]) -> None:
    if len(schedule) != length or not all(
        isinstance(entry, tuple)
        and len(entry) == 3
        and all(not isinstance(v, bool) and v in allowed for v in entry)
        for entry in schedule
    ):
        raise ValueError(
            f"{name} must be {length} (z, y, x) triples of {' or '.join(map(str, allowed))}, "
            f"got {schedule!r}"
        )


@dataclasses.dataclass(frozen=True)
class UNet3DAnisoConfig(Config):
    """Settings of the anisotropic padded 3-D U-Net.

    ``pool_schedule`` and ``kernel_schedule`` are derived from ``voxel_size`` when left empty
    (:func:`~napari_unet.core.models.pooling.pooling_schedule`,
    :func:`~napari_unet.core.models.pooling.conv_kernel_schedule`) and stored resolved, so a
    checkpoint rebuilds exactly the same network even if the rule changes.

    Attributes:
        in_channels: Image channels.
        out_channels: Logit channels.
        depth: Number of pooling levels, 1-5.
        base_channels: Channels of the first convolution (doubles before each pool, as unet3d).
        voxel_size: ``(z, y, x)`` voxel size in one unit (e.g. ``(50, 4, 4)`` nm, ``(1.75, 0.8,
            0.8)`` µm).
        pool_schedule: ``depth`` pooling factors ``(pz, py, px)`` of 1 or 2, shallow first.
        kernel_schedule: ``depth + 1`` convolution kernels ``(kz, ky, kx)`` of 1 or 3.
        upsampling: ``"transposed"`` or ``"trilinear"``.
        batch_norm: BatchNorm after each convolution.
    """

    in_channels: int = 1
    out_channels: int = 2
    depth: int = 4
    base_channels: int = 16
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pool_schedule: tuple[tuple[int, int, int], ...] = ()
    kernel_schedule: tuple[tuple[int, int, int], ...] = ()
    upsampling: str = "transposed"
    batch_norm: bool = True

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("out_channels", self.out_channels, 1)
        check_int("depth", self.depth, 1, 5)
        check_int("base_channels", self.base_channels, 2)
        check_choice("upsampling", self.upsampling, UPSAMPLING_3D)
        check_bool("batch_norm", self.batch_norm)
        try:
            voxel = check_voxel_size(self.voxel_size)
        except ValueError as err:
            raise ValueError(f"voxel_size: {err}") from None
        object.__setattr__(self, "voxel_size", voxel)
        pools = tuple(tuple(p) for p in self.pool_schedule) or tuple(
            pooling_schedule(voxel, self.depth)
        )
        kernels = tuple(tuple(k) for k in self.kernel_schedule) or tuple(
            conv_kernel_schedule(voxel, self.depth)
        )
        _check_schedule("pool_schedule", pools, self.depth, (1, 2))
        _check_schedule("kernel_schedule", kernels, self.depth + 1, (1, 3))
        object.__setattr__(self, "pool_schedule", pools)
        object.__setattr__(self, "kernel_schedule", kernels)


@register_model("unet3d_aniso")
class UNet3DAniso(_UNet3DBase):
    """Anisotropic padded 3-D U-Net: (B, C, D, H, W) -> logits (B, K, D, H, W).

    Pools ``pool_schedule[level]`` per axis (e.g. 1x2x2 while Z is coarse), so the sides must be
    multiples of ``size_multiples`` -- the product of the factors per axis (``(2, 16, 16)`` for
    the ISBI voxel at depth 4); ``margin`` is 0. 19.26M parameters at the defaults (base 16,
    depth 4, isotropic voxel); 17.08M for the ISBI voxel (50, 4, 4) with its 1x3x3 kernels.

    Args:
        settings: A :class:`UNet3DAnisoConfig` (defaults when omitted).
    """

    config_class = UNet3DAnisoConfig

    def __init__(self, settings: UNet3DAnisoConfig | None = None) -> None:
        settings = settings or UNet3DAnisoConfig()
        super().__init__(
            settings, in_channels=settings.in_channels, out_channels=settings.out_channels
        )
        self.depth = settings.depth
        pools = [tuple(p) for p in settings.pool_schedule]
        self._build(
            depth=settings.depth,
            base_channels=settings.base_channels,
            pools=pools,  # type: ignore[arg-type]
            kernels=[tuple(k) for k in settings.kernel_schedule],  # type: ignore[misc]
            padded=True,
            upsampling=settings.upsampling,
            batch_norm=settings.batch_norm,
        )
        self.axis_multiples = tuple(math.prod(p[axis] for p in pools) for axis in range(3))
        self.size_multiple = max(self.axis_multiples)
