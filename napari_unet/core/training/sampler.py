"""Class-balanced patch sampling from a pool of annotated images or volumes.

:class:`PatchSampler` turns a pool of :class:`~napari_unet.core.training.items.TrainingItem`
into batches of patches that always hold a drawn annotated pixel (at the window's middle in an
image; at a random place of the window in a volume, so that a volume annotated on a few slices, in
any orientation, shows those slices at every depth of the patch), drawn class-balanced: a class is
chosen uniformly among the classes present in the annotated targets, then a pixel of that
class. A valid-convolution model gets its larger input context (``h_in = h_out + 2 * margin``),
mirror-padded at image borders. Items can be added while training runs (continuous learning from
the GUI). Validation windows come from :mod:`napari_unet.core.training.split`; label-value counts
from :mod:`napari_unet.core.training.label_values` (importable from here)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_unet.core.errors import TrainingDataError
from napari_unet.core.training.items import (
    TargetsFn,
    TrainingItem,
    check_item,
    crop_targets_nd,
    mirror_index,
    window_starts,
)
from napari_unet.core.training.label_values import (  # noqa: F401 (their old home)
    INSTANCE_IDS_PER_IMAGE,
    MAX_CLASSES,
    label_values,
    looks_like_instances,
    semantic_class_count,
)
from napari_unet.core.training.split import is_flat_copy, iter_validation_windows
from napari_unet.core.training.targets import IGNORE_INDEX

__all__ = [
    "MAX_CLASSES",
    "PatchBatch",
    "PatchSampler",
    "label_values",
    "looks_like_instances",
    "semantic_class_count",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Entry:
    """One item of the pool with its targets and per-class annotated pixel indices."""

    item: TrainingItem
    classes: np.ndarray
    weights: np.ndarray
    pixels: dict[int, np.ndarray]  # class id -> flat indices of annotated pixels of that class


@dataclasses.dataclass(frozen=True)
class PatchBatch:
    """A batch of training patches (numpy, ready for ``torch.from_numpy``).

    Volumes give 3-D patches: every ``h, w`` below is then ``d, h, w``.

    Attributes:
        image: (B, C, h_in, w_in) float32, mirror-padded where the window leaves the image.
        classes: (B, h, w) int64 with IGNORE_INDEX where nothing is learnt (restoration: float32
            (B, C', h, w)); ``h, w`` is the output shape, or the input shape when the batch was
            sampled with ``full_context=True``.
        weights: (B, h, w) float32, 0 wherever ``classes`` is ignored or outside the image.
        centres: (B, 3) int64 rows ``(item index, y, x)`` (volumes: (B, 4), ``(item, z, y,
            x)``): the annotated pixel each patch was drawn around.
    """

    image: np.ndarray
    classes: np.ndarray
    weights: np.ndarray
    centres: np.ndarray


class PatchSampler:
    """Class-balanced patches holding annotated pixels, with a pool that can grow.

    Args:
        targets_fn: turns ``(labels, annotated_mask)`` into ``(classes, weights)`` (see
            :data:`TargetsFn`); computed once per item, on the whole image, so weight maps see
            every object.
        input_shape: (h_in, w_in) of the image patches the model takes ((d_in, h_in, w_in)
            for volumes).
        output_shape: (h, w) of the logits it returns; ``input - output`` must be even.
        task: the model task; ``restoration`` samples annotated pixels uniformly (no classes).
        seed: seeds the sampler's own generator (its state is part of :meth:`state_dict`).
        items: initial items.
    """

    def __init__(
        self,
        targets_fn: TargetsFn,
        *,
        input_shape: tuple[int, int],
        output_shape: tuple[int, int],
        task: str = "semantic",
        seed: int = 0,
        items: Sequence[TrainingItem] = (),
    ) -> None:
        diff = np.subtract(input_shape, output_shape)
        if (diff < 0).any() or (diff % 2).any():
            raise ValueError(f"input {input_shape} and output {output_shape} must differ by 2*m")
        self.targets_fn = targets_fn
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = tuple(int(s) for s in output_shape)
        self.margin = tuple(int(d) // 2 for d in diff)
        self.task = task
        self.rng = np.random.default_rng(seed)
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()
        self.version = 0  # bumped by every add_item
        for item in items:
            self.add_item(item, check=False)
        if items:
            self.check_usable()

    # -- the pool --------------------------------------------------------------------------
    def add_item(self, item: TrainingItem, *, check: bool = True) -> None:
        """Add ``item`` (or replace the item with the same non-empty name); thread-safe.

        Raises:
            TrainingDataError: the item is malformed, or (``check``) the pool is still unusable.
        """
        check_item(item, self.task)
        mask = item.mask
        classes, weights = self.targets_fn(np.asarray(item.labels), mask)
        weights = np.where(mask, np.asarray(weights, dtype=np.float32), np.float32(0))
        if self.task == "restoration":
            pixels = {0: np.flatnonzero(mask)}
        else:
            classes = np.asarray(classes, dtype=np.int64)
            flat = classes.ravel()
            present = np.unique(flat[flat != IGNORE_INDEX])
            pixels = {int(k): np.flatnonzero(flat == k) for k in present}
        entry = _Entry(item=item, classes=classes, weights=weights, pixels=pixels)
        with self._lock:
            names = [e.item.name for e in self._entries]
            if item.name and item.name in names:
                self._entries[names.index(item.name)] = entry
            else:
                self._entries.append(entry)
            self.version += 1
        if check:
            self.check_usable()

    @property
    def items(self) -> list[TrainingItem]:
        """The items in the pool, in the order they were added."""
        with self._lock:
            return [e.item for e in self._entries]

    def class_counts(self) -> dict[int, int]:
        """Annotated pixel count per target class over the pool."""
        with self._lock:
            counts: dict[int, int] = {}
            for entry in self._entries:
                for k, idx in entry.pixels.items():
                    counts[k] = counts.get(k, 0) + int(idx.size)
        return {k: v for k, v in sorted(counts.items()) if v}

    def annotated_pixels(self) -> int:
        """Annotated pixels in the pool; a 2.5-D flat copy (its original's pixels) not counted."""
        with self._lock:
            entries = [e for e in self._entries if not is_flat_copy(e.item)]
        return sum(int(idx.size) for e in entries for idx in e.pixels.values())

    def check_usable(self) -> None:
        """Raise :class:`TrainingDataError` unless the pool has something to learn from."""
        counts = self.class_counts()
        if not counts:
            raise TrainingDataError(
                "nothing is annotated: paint or correct labels in at least one region (and mark "
                "it as annotated) before training."
            )
        if self.task in ("binary", "semantic", "instances") and len(counts) < 2:
            only = next(iter(counts))
            raise TrainingDataError(
                f"only class {only} is annotated; annotate at least one pixel of another class "
                "(e.g. background)."
            )

    # -- sampling --------------------------------------------------------------------------
    def draw_centres(self, count: int) -> np.ndarray:
        """Draw ``count`` annotated pixels, class-balanced; (count, 1 + spatial dims) int64
        rows ``(item, y, x)`` (volumes: ``(item, z, y, x)``)."""
        with self._lock:
            entries = list(self._entries)
        classes = sorted({k for e in entries for k, idx in e.pixels.items() if idx.size})
        if not classes:
            self.check_usable()
        centres = np.empty((count, 1 + len(self.output_shape)), dtype=np.int64)
        for n in range(count):
            k = classes[int(self.rng.integers(len(classes)))]
            sizes = np.array([e.pixels[k].size if k in e.pixels else 0 for e in entries])
            i = int(np.searchsorted(np.cumsum(sizes), self.rng.integers(sizes.sum()), "right"))
            flat = int(entries[i].pixels[k][self.rng.integers(sizes[i])])
            centres[n] = (i, *np.unravel_index(flat, entries[i].item.spatial_shape))
        return centres

    def sample(self, batch_size: int, *, full_context: bool = False) -> PatchBatch:
        """A batch of ``batch_size`` patches around class-balanced annotated pixels.

        Args:
            batch_size: number of patches B.
            full_context: return targets at the input shape (real labels in the context margin,
                for augmentations that move pixels; centre-crop by ``margin`` afterwards).
        """
        centres = self.draw_centres(batch_size)
        with self._lock:
            entries = list(self._entries)
        patches = [self.crop(entries[c[0]], *c[1:], full_context=full_context) for c in centres]
        return PatchBatch(
            image=np.stack([p[0] for p in patches]),
            classes=np.stack([p[1] for p in patches]),
            weights=np.stack([p[2] for p in patches]),
            centres=centres,
        )

    def crop(
        self, entry: _Entry, *centre: int, full_context: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image input window and target window holding the annotated pixel ``centre``
        (``y, x``: the window's middle; ``z, y, x`` in a volume: a random place in the window)."""
        starts = window_starts(centre, self.output_shape, entry.item.spatial_shape, self.rng)
        return self.crop_window(entry, *starts, full_context=full_context)

    def crop_window(
        self, entry: _Entry, *starts: int, full_context: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image input window and target window for the output window at ``starts``
        (``y0, x0``, or ``z0, y0, x0`` in a volume)."""
        sizes, shape = entry.item.spatial_shape, self.output_shape
        index = [
            mirror_index(s - m, n + 2 * m, size)
            for s, m, n, size in zip(starts, self.margin, shape, sizes)
        ]
        grid = np.ix_(*index)
        patch = np.asarray(entry.item.image[(slice(None), *grid)], dtype=np.float32)
        if full_context:
            starts = tuple(s - m for s, m in zip(starts, self.margin))
            shape = tuple(n + 2 * m for n, m in zip(shape, self.margin))
        return (patch, *crop_targets_nd(entry.classes, entry.weights, tuple(starts), shape))

    def validation_batches(self, batch_size: int) -> list[PatchBatch]:
        """Deterministic batches tiling the annotated area of every item (for validation)."""
        with self._lock:
            entries = list(self._entries)
        patches = [
            (*self.crop_window(entry, *starts), (i, *starts))
            for i, entry in enumerate(entries)
            for starts in iter_validation_windows(entry.item, self.output_shape)
        ]
        return [
            PatchBatch(
                image=np.stack([p[0] for p in chunk]),
                classes=np.stack([p[1] for p in chunk]),
                weights=np.stack([p[2] for p in chunk]),
                centres=np.array([p[3] for p in chunk], dtype=np.int64),
            )
            for chunk in (
                patches[start : start + batch_size] for start in range(0, len(patches), batch_size)
            )
        ]

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The sampler's random state (plain, checkpoint-safe data: big ints as strings)."""
        state = self.rng.bit_generator.state
        return {"bit_generator": _stringify(state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output so sampling continues exactly where it stopped."""
        self.rng.bit_generator.state = _unstringify(state["bit_generator"])


def _stringify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _unstringify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unstringify(v) for k, v in value.items()}
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value
