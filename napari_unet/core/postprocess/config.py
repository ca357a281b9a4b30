"""How probabilities become labels: :class:`PostprocessConfig` (torch-free, numpy only).

Its own module so that the block-wise instance code (:mod:`.blocks`) and the label code
(:mod:`.labels`) both import it without importing each other.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from napari_unet.core.config import Config

__all__ = ["UNSEEDED_CHOICES", "PostprocessConfig"]

#: What :attr:`PostprocessConfig.unseeded` may be.
UNSEEDED_CHOICES = ("object", "drop")


@dataclasses.dataclass(frozen=True)
class PostprocessConfig(Config):
    """How probabilities become labels (see the module docstring).

    Attributes:
        output: ``"semantic"`` (class ids) or ``"instances"`` (one id per object).
        threshold: foreground probability cut (binary models, class 1 of 2-class semantic
            models; foreground mask for instances).
        interior_threshold: interior probability for instance seeds (3-class and
            ``foreground_class`` instances).
        min_size: objects with fewer pixels are removed (0 keeps all).
        fill_holes: fill background holes enclosed by a single object.
        binary_instances: instances from a binary mask by ``"connected"`` components or a
            distance-transform ``"watershed"``.
        min_distance: minimum distance in pixels between watershed peaks.
        foreground_class: for semantic models, the class(es) that form object interiors when
            instances are asked for; an int is taken as a 1-tuple. None: all non-background.
        seed_erosion: erode the seed mask by this many pixels (closes leaks through gaps).
        unseeded: seeded instances (3-class and ``foreground_class``): what becomes of a
            foreground region that no interior seed reaches. ``"object"`` (the default and what
            checkpoints without the key get): each such region is an object of its own, nothing
            is lost; ``"drop"``: it stays background (the plain U-Net rule: for a briefly trained
            model these regions are mostly rims and specks). Such a region never touches a
            seeded object (the watershed floods every foreground pixel connected to a seed), so
            there is no "merge into the neighbour" choice.
        seeds: instances of a 3-class model: watershed seeds from the ``"interior"`` probability,
            or from the predicted ``"distance"`` of a model with a distance head (seeds where it
            is >= ``distance_threshold``, flooded over ``1 - distance`` within the foreground;
            probabilities without the distance channel fall back to interior seeds).
        distance_threshold: the normalised distance (0 rim .. 1 centre) of the distance seeds.
        block_shape: (Y, X) core of each block for instance labels of large planes.
        block_halo: context in pixels around each block; objects smaller than this come out
            exactly as without blocks.
    """

    output: Literal["semantic", "instances"] = "semantic"
    threshold: float = 0.5
    interior_threshold: float = 0.5
    min_size: int = 0
    fill_holes: bool = False
    binary_instances: Literal["connected", "watershed"] = "connected"
    min_distance: int = 5
    foreground_class: tuple[int, ...] | None = None
    seed_erosion: int = 0
    unseeded: Literal["object", "drop"] = "object"
    seeds: Literal["interior", "distance"] = "interior"
    distance_threshold: float = 0.5
    block_shape: tuple[int, int] = (4096, 4096)
    block_halo: int = 128

    def __post_init__(self) -> None:
        if self.output not in ("semantic", "instances"):
            raise ValueError(f"output must be 'semantic' or 'instances', got {self.output!r}")
        if self.seeds not in ("interior", "distance"):
            raise ValueError(f"seeds must be 'interior' or 'distance', got {self.seeds!r}")
        for name in ("threshold", "interior_threshold", "distance_threshold"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ("min_size", "seed_erosion", "block_halo"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.min_distance < 1:
            raise ValueError(f"min_distance must be >= 1, got {self.min_distance}")
        if self.binary_instances not in ("connected", "watershed"):
            raise ValueError(
                "binary_instances must be 'connected' or 'watershed', "
                f"got {self.binary_instances!r}"
            )
        if self.unseeded not in UNSEEDED_CHOICES:
            raise ValueError(
                f"unseeded must be one of {', '.join(UNSEEDED_CHOICES)}, got {self.unseeded!r}"
            )
        block_shape = tuple(int(v) for v in self.block_shape)
        if len(block_shape) != 2 or min(block_shape) < 1:
            raise ValueError(f"block_shape must be two positive ints, got {self.block_shape}")
        object.__setattr__(self, "block_shape", block_shape)
        foreground = self.foreground_class
        if foreground is not None:
            if isinstance(foreground, (int, np.integer)):
                foreground = (foreground,)
            foreground = tuple(int(c) for c in foreground)
            if not foreground or min(foreground) < 0:
                raise ValueError(f"foreground_class must be class indices, got {foreground}")
            object.__setattr__(self, "foreground_class", foreground)
