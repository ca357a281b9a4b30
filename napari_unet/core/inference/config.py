"""How to run prediction: :class:`PredictConfig` and its allowed values (numpy only, no torch).

:mod:`napari_unet.core.inference.prediction` runs it; this module is apart so that the GUI's
forms, the CLI's parser and the trainer process can build and pass the config without
importing torch. Field metadata (``label``, ``tooltip``, ``min``, ``max``, ``step``,
``choices``, ``advanced``) is plain data the GUI's settings forms are generated from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_unet.core.config import PRECISIONS, Config, setting
from napari_unet.core.errors import UserInputError
from napari_unet.core.inference.tiling import BLENDS

__all__ = [
    "DEFAULT_PADDED_OVERLAP",
    "DEFAULT_TILE_2D",
    "DEFAULT_TILE_3D",
    "MIN_TILE",
    "PRECISIONS",
    "PROBABILITY_DTYPES",
    "TTA_MODES",
    "Z_FLIP_DEFAULT",
    "PredictConfig",
]

#: Output dtypes for probabilities.
PROBABILITY_DTYPES: tuple[str, ...] = ("float32", "float16")
#: Overlap used for padded nets when ``PredictConfig.overlap`` is ``None``.
DEFAULT_PADDED_OVERLAP = 32
#: Test-time augmentation modes (1, 4 and 8 forward passes per tile).
TTA_MODES: tuple[str, ...] = ("none", "flips", "dihedral")
#: ``PredictConfig.z_flip``'s default: off. Measured (``bench_3d.py --quick``, ISBI, 3 slices, 1.5
#: CPU-minutes, seeds 0-2): averaging both Z orders moved the 2.5-D Rand error by at most 0.004
#: (either way) and made the 3-D one 0.009 worse, at twice the prediction time.
Z_FLIP_DEFAULT = False
#: ``PredictConfig.tile_shape``'s default (2-D models).
DEFAULT_TILE_2D: tuple[int, int] = (512, 512)
#: Default input tile ``(d, h, w)`` of 3-D models (bounded CPU memory), used when
#: ``PredictConfig.tile_shape`` is left at its 2-D default.
DEFAULT_TILE_3D: tuple[int, int, int] = (32, 128, 128)


@dataclass(frozen=True)
class PredictConfig(Config):
    """How to run prediction.

    Attributes:
        tile_shape: Input tile ``(h, w)`` (an int means square), or ``(d, h, w)`` for a 3-D model;
            snapped up to a size the model accepts. A 3-D model given the 2-D default uses
            :data:`DEFAULT_TILE_3D`, and given another ``(h, w)`` uses it with the default depth.
        overlap: Output overlap between tiles in pixels; ``None`` = 32 for padded nets (at most
            a quarter of the tile), 0 for valid-convolution nets (whose mirrored context already
            makes tiles seamless).
        batch_size: Tiles per forward pass.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        precision: ``"auto"`` (fp16 autocast on CUDA, bf16 on CPUs with native bf16 units,
            fp32 elsewhere; see :func:`~napari_unet.core.device.autocast_dtype`), ``"fp32"``,
            ``"bf16"``, ``"fp16"``.
        channels_last: Run the model in channels-last memory format.
        blend: ``"gaussian"`` or ``"constant"`` blending of overlapping tiles.
        probability_dtype: ``"float32"`` or ``"float16"`` (halves the output's memory).
        tta: Test-time augmentation: ``"none"``, ``"flips"`` (average over the 4 flips, 4x the
            time) or ``"dihedral"`` (flips and transposes, 8x the time).
        z_flip: 2.5-D and 3-D models: also predict every tile with Z reversed (a 2.5-D model's
            neighbour slices in reverse order, a 3-D tile flipped in Z) and average, on top of
            ``tta`` (2x the time); no effect on 2-D models. Reversing Z is a symmetry of the data
            that a 2-D model cannot use; off by default (:data:`Z_FLIP_DEFAULT`, measured).
    """

    tile_shape: tuple[int, ...] = setting(
        DEFAULT_TILE_2D,
        "Tile size",
        tooltip="Tile side fed to the network",
        min=32,
        max=4096,
        step=32,
        suffix=" px",
        square=True,
        advanced=True,
        order=1,
    )
    overlap: int | None = setting(
        None,
        "Overlap",
        tooltip="Overlap between neighbouring tiles",
        min=0,
        max=512,
        step=8,
        suffix=" px",
        advanced=True,
        order=2,
    )
    batch_size: int = setting(
        4,
        "Batch size",
        tooltip="Tiles per forward pass (lower it on a small GPU)",
        min=1,
        max=64,
        advanced=True,
        order=5,
    )
    device: str = setting(
        "auto",
        "Device",
        tooltip="Where the network runs (only devices present on this machine)",
        widget="ComboBox",
        order=1,
    )
    precision: str = "auto"
    channels_last: bool = True
    blend: str = "gaussian"
    probability_dtype: str = "float32"
    tta: str = setting(
        "none",
        "Augment (TTA)",
        tooltip="Test-time augmentation: also predict the image flipped (and rotated) and "
        "average; fewer gaps in thin membranes and fewer split objects, at 4x (8x) the time",
        choices=(
            ("none", "Off"),
            ("flips", "Flips (4x time)"),
            ("dihedral", "Flips + rotations (8x time)"),
        ),
        advanced=True,
        order=6,
    )
    z_flip: bool = setting(
        Z_FLIP_DEFAULT,
        "Average with Z reversed",
        tooltip="2.5-D and 3-D models: also predict with the slices above and below swapped "
        "and average (2x the time); no effect on 2-D models",
        advanced=True,
        order=7,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile_shape", _checked_tile(self.tile_shape))
        overlap = self.overlap
        if overlap is not None and (not _is_int(overlap) or overlap < 0):
            _refuse("overlap", overlap, "None or a whole number of pixels >= 0")
        if overlap is not None and overlap >= min(self.tile_shape):
            _refuse("overlap", overlap, f"0 to {min(self.tile_shape) - 1} (below the tile side)")
        if overlap is not None:
            object.__setattr__(self, "overlap", int(overlap))
        if not _is_int(self.batch_size) or self.batch_size < 1:
            _refuse("batch_size", self.batch_size, "a whole number >= 1")
        object.__setattr__(self, "batch_size", int(self.batch_size))
        if not isinstance(self.device, str) or not self.device:
            _refuse("device", self.device, "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        for name, allowed in (
            ("precision", PRECISIONS),
            ("blend", BLENDS),
            ("probability_dtype", PROBABILITY_DTYPES),
            ("tta", TTA_MODES),
        ):
            if getattr(self, name) not in allowed:
                _refuse(name, getattr(self, name), "one of " + ", ".join(allowed))
        for name in ("channels_last", "z_flip"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                _refuse(name, getattr(self, name), "True or False")


#: Smallest tile side accepted (the model may snap a tile up to the size it can take).
MIN_TILE = 1


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _refuse(name: str, value: object, allowed: str) -> None:
    """Raise the one-sentence error for a bad :class:`PredictConfig` field."""
    raise UserInputError(f"PredictConfig {name}={value!r} is not valid; use {allowed}.")


def _checked_tile(tile: object) -> tuple[int, ...]:
    """``tile_shape`` as ``(h, w)`` or ``(d, h, w)`` positive ints, or a :class:`UserInputError`."""
    sides = (tile, tile) if _is_int(tile) else tile
    try:
        sides = tuple(sides)  # type: ignore[arg-type]
    except TypeError:
        sides = ()
    if len(sides) not in (2, 3) or not all(_is_int(t) and t >= MIN_TILE for t in sides):
        _refuse(
            "tile_shape",
            tile,
            f"one or two whole numbers of pixels >= {MIN_TILE} (three for a 3-D model)",
        )
    return tuple(int(s) for s in sides)
