"""What fine-tuning will learn from: counts over a session, and the validation hold-back.

Pure (numpy, scipy and the session; no Qt): :class:`SummaryCache` turns a
:class:`~napari_unet.session.Session` into a :class:`DataSummary` — annotated images, slices,
pixels and objects, and the part held back for validation: the user's pins, plus annotated
``val_tile`` x ``val_tile`` tiles chosen by the stable hash of
:func:`core.training.split.split_validation` (the trainer's own split, so the numbers match what it
will hold back). For a 3-D start model the units are the trainer's: one volume per image, split
by Y/X tile through Z or, when a volume fits in one tile, by Z plane
(:mod:`~napari_unet._widgets.data_summary_volume`).

Cheap to refresh: per slice, only a small record is kept (annotated pixels, objects and the
annotated-pixel count of each tile), keyed by the slice's stored files and its pins, so a slice
is read again only when it was saved again. Images are never read.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np

from napari_unet._widgets.data_summary_volume import held_pixels, stack_shapes, volume_units
from napari_unet.core.training.items import TrainingItem
from napari_unet.core.training.split import (
    forced_unit,
    split_validation,
    tile_counts,
    unit_candidates,
)
from napari_unet.session.tracking import annotated_mask

if TYPE_CHECKING:
    from napari_unet.session import Session

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataSummary:
    """Annotation a fine-tuning run would use.

    Attributes:
        images, slices: images and (Y, X) slices with annotation (edited or reviewed).
        pixels: annotated pixels in total; objects: annotated objects (instance ids, or
            connected foreground regions for semantic labels) touching them.
        val_pixels: annotated pixels held back for validation (never trained on);
            val_tiles: hashed tiles held back; pinned_pixels: of ``val_pixels``, those pinned.
        tiles: annotated tiles (of the slices outside pins) the hash chose from.
        unit: what a held-back unit is: ``tile`` (Y/X tiles of a slice, or through all of Z for
            a 3-D model), ``slice`` (a 3-D model's volume that fits in one tile is split by
            plane, ``core.training.split``), ``tile/slice`` for a mix.
    """

    images: int = 0
    slices: int = 0
    pixels: int = 0
    objects: int = 0
    val_pixels: int = 0
    val_tiles: int = 0
    pinned_pixels: int = 0
    tiles: int = 0
    unit: str = "tile"

    @property
    def train_pixels(self) -> int:
        """Annotated pixels trained on."""
        return self.pixels - self.val_pixels

    @property
    def empty(self) -> bool:
        """True when nothing is annotated."""
        return self.pixels == 0

    def lines(self) -> list[str]:
        """Two short sentences for the widget."""
        if self.empty:
            return ["Nothing annotated yet."]
        s = "s" if self.slices != 1 else ""
        first = (
            f"{self.images} image(s), {self.slices} slice{s}: {_count(self.pixels)} annotated "
            f"pixels, {self.objects} object(s)."
        )
        if not self.val_pixels:
            return [first, "Validation: nothing held back (annotate more tiles, or pin one)."]
        share = 100.0 * self.val_pixels / max(self.pixels, 1)
        parts = [f"{self.val_tiles} {self.unit}(s) of {self.tiles}"] if self.val_tiles else []
        if self.pinned_pixels:
            parts.append(f"{_count(self.pinned_pixels)} pinned pixels")
        return [
            first,
            f"Validation: {' + '.join(parts)} = {_count(self.val_pixels)} pixels "
            f"({share:.0f}%), never trained on.",
        ]


def _count(n: int) -> str:
    if n >= 10**6:
        return f"{n / 1e6:.1f} M"
    if n >= 10**4:
        return f"{n / 1e3:.0f} k"
    return str(n)


@dataclasses.dataclass(frozen=True, eq=False)
class _SliceCounts:
    """One slice: annotated pixels, objects, pinned pixels and (ny, nx) tile pixel counts."""

    pixels: int
    objects: int
    pinned: int
    tile_pixels: np.ndarray


def pin_mask(pins: list[dict], shape: tuple[int, int]) -> np.ndarray:
    """(Y, X) bool union of the pins of one slice (``rect`` = (y0, x0, y1, x1) or None: all)."""
    mask = np.zeros(shape, dtype=bool)
    for pin in pins:
        rect = pin.get("rect")
        if rect is None:
            mask[:] = True
        else:
            y0, x0, y1, x1 = (int(v) for v in rect)
            mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask


def count_objects(labels: np.ndarray, mask: np.ndarray, kind: str) -> int:
    """Objects of ``labels`` (Y, X) touching ``mask``: instance ids, or connected foreground."""
    if not mask.any():
        return 0
    if kind == "instances":
        ids = np.unique(labels[mask])
        return int(np.count_nonzero(ids))
    from scipy import ndimage

    regions, _ = ndimage.label(labels > 0)
    ids = np.unique(regions[mask])
    return int(np.count_nonzero(ids))


def tile_pixels(mask: np.ndarray, tile: int) -> np.ndarray:
    """(ny, nx) int64: annotated pixels of each ``tile`` x ``tile`` tile (grid at (0, 0); a
    border sliver counted in its neighbour, as the trainer splits: ``split.tile_counts``)."""
    return tile_counts(mask, tile)


def held_back_tiles(
    tiles: dict[str, np.ndarray], fraction: float, *, seed: int = 0, pinned: bool = False
) -> dict[str, np.ndarray]:
    """The tiles the trainer holds back by hash, as (ny, nx) bool per item.

    ``tiles`` maps an item name (``"<image_id>/<slice:05d>"``, the trainer's) to its tile pixel
    counts outside the pins. As the trainer's ``ValidationPlan``: the tiles the hash of
    :func:`core.training.split.split_validation` selects, or, when it selects none and nothing is
    ``pinned``, one forced tile (``at_least_one``: :func:`core.training.split.forced_unit`, from
    the tiles' pixel counts). The split is run on one pixel per tile (``tile=1``): tile
    ``(ty, tx)`` keeps its index ``ty * nx + tx``, hence its hash, so the choice is exactly the
    trainer's.
    """
    names = sorted(tiles)
    items = [
        TrainingItem(
            image=np.broadcast_to(np.float32(0), (1, *tiles[n].shape)),
            labels=np.zeros(tiles[n].shape, dtype=np.uint8),
            annotated_mask=tiles[n] > 0,
            name=n,
        )
        for n in names
    ]
    _, val_items = split_validation(items, fraction, tile=1, seed=seed, at_least_one=False)
    if val_items or pinned or fraction <= 0:
        return {item.name: item.mask for item in val_items}
    groups, candidates, _ = unit_candidates(items, 1, seed)
    if len(groups) < 2:
        return {}
    pixels: dict[tuple, int] = {}
    for group, i, region in candidates:
        pixels[group] = pixels.get(group, 0) + int(tiles[names[i]][region].sum())
    forced = forced_unit(groups, pixels)
    held: dict[str, np.ndarray] = {}
    for group, i, region in candidates:
        if group == forced:
            held.setdefault(names[i], np.zeros(tiles[names[i]].shape, dtype=bool))[region] = True
    return held


class SummaryCache:
    """Computes :class:`DataSummary` of a session, re-reading only slices saved since."""

    def __init__(self) -> None:
        self._slices: dict[tuple, _SliceCounts] = {}

    def clear(self) -> None:
        """Forget every slice (e.g. another session was opened)."""
        self._slices.clear()

    def summary(
        self,
        session: Session,
        *,
        fraction: float = 0.1,
        tile: int = 128,
        seed: int = 0,
        volumetric: bool = False,
    ) -> DataSummary:
        """Counts over every annotated slice of ``session`` (see the module docs);
        ``volumetric``: held back as a 3-D model's trainer splits (one volume per image)."""
        pins: dict[tuple[str, int], list[dict]] = {}
        for pin in session.validation_pins():
            pins.setdefault((pin["image_id"], int(pin["slice_index"])), []).append(pin)
        keys = session.annotated_slices()
        seen, counts = set(), {}
        for image_id, s in keys:
            record = session.slice_entry(image_id, s)
            slice_pins = pins.get((image_id, s), [])
            key = (
                image_id,
                s,
                record.labels,
                record.reviewed,
                record.snapshot,
                tile,
                repr(slice_pins),
            )
            seen.add(key)
            if key not in self._slices:
                self._slices[key] = self._count(session, image_id, s, slice_pins, tile)
            counts[f"{image_id}/{s:05d}"] = self._slices[key]
        for stale in set(self._slices) - seen:
            del self._slices[stale]
        pinned = sum(c.pinned for c in counts.values())
        units = (
            volume_units(counts, stack_shapes(session, counts), tile)
            if volumetric
            else {n: (c.tile_pixels, "tile") for n, c in counts.items()}
        )
        held = held_back_tiles(
            {n: u[0] for n, u in units.items() if u[0].any()},
            fraction,
            seed=seed,
            pinned=pinned > 0,
        )
        kinds = sorted({u[1] for u in units.values() if u[0].any()}) or ["tile"]
        return DataSummary(
            images=len({name.split("/")[0] for name, c in counts.items() if c.pixels}),
            slices=sum(1 for c in counts.values() if c.pixels),
            pixels=sum(c.pixels for c in counts.values()),
            objects=sum(c.objects for c in counts.values()),
            val_pixels=sum(held_pixels(units[n], m) for n, m in held.items()) + pinned,
            val_tiles=sum(int(m.sum()) for m in held.values()),
            pinned_pixels=pinned,
            tiles=sum(int(np.count_nonzero(u[0])) for u in units.values()),
            unit="/".join(kinds),
        )

    @staticmethod
    def _count(
        session: Session, image_id: str, slice_index: int, pins: list[dict], tile: int
    ) -> _SliceCounts:
        entry = session.image(image_id)
        data = session.load_slice(image_id, slice_index)
        if data.labels is None:
            labels = np.zeros(entry.yx_shape, dtype=np.uint8)
            mask = (
                np.zeros(entry.yx_shape, dtype=bool)
                if data.reviewed is None
                else np.asarray(data.reviewed, dtype=bool)
            )
        else:
            labels = data.labels
            mask = annotated_mask(labels, data.snapshot, data.reviewed, kind=entry.kind)
        pinned = mask & pin_mask(pins, entry.yx_shape) if pins else np.zeros_like(mask)
        return _SliceCounts(
            pixels=int(np.count_nonzero(mask)),
            objects=count_objects(labels, mask, entry.kind),
            pinned=int(np.count_nonzero(pinned)),
            tile_pixels=tile_pixels(mask & ~pinned, tile),
        )
