"""Per-slice review status of the labels layer being corrected, and its one-line summary (no Qt).

The correction tools show "12 slices: 3 reviewed, 2 edited, 7 predicted"; a slice's status
(:func:`napari_unet._widgets.reviewed.status_of`) is computed once and again only after an edit
or a review marked it dirty, so scrolling a big stack stays instant.
"""

from __future__ import annotations

from typing import Any

from napari_unet._widgets import reviewed as rv


class SliceStatusCache:
    """Per-slice status of one labels layer, recomputed lazily for slices marked dirty."""

    def __init__(self) -> None:
        self.layer: Any = None
        self._status: dict[int, str] = {}

    def reset(self, layer: Any = None) -> None:
        """Forget everything (a new layer, or its data replaced)."""
        self.layer = layer
        self._status.clear()

    def mark_dirty(self, slices: set[int] | None) -> None:
        """Recompute ``slices`` (None: all) next time they are asked for."""
        if slices is None:
            self._status.clear()
        for s in slices or ():
            self._status.pop(s, None)

    def status(self, index: int) -> str:
        """Status of slice ``index`` (computed once until marked dirty)."""
        if index not in self._status:
            self._status[index] = rv.status_of(self.layer, index)
        return self._status[index]

    def counts(self) -> dict[str, int]:
        """How many slices have each status."""
        counts: dict[str, int] = {}
        for s in range(rv.n_slices(tuple(self.layer.data.shape))):
            status = self.status(s)
            counts[status] = counts.get(status, 0) + 1
        return counts


def summary_text(n: int, counts: dict[str, int]) -> str:
    """E.g. ``"12 slices: 3 reviewed, 2 edited, 7 predicted"``."""
    order = ("reviewed", "edited", "predicted", "unlabelled")
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    return f"{n} slice{'s' if n != 1 else ''}: " + ", ".join(parts)


__all__ = ["SliceStatusCache", "summary_text"]
