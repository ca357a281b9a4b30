"""A per-object table of labels too large for memory, measured block by block.

:class:`BlockMeasurements` takes the blocks of a labelled volume (3-D instance ids that are
global, i.e. one id per object across blocks, as a streamed prediction writes them) one at a
time, with the raw image under each block, and keeps per object only running sums: voxel count,
coordinate sums, bounding box, intensity sums, minima and maxima. An object that spans several
blocks is therefore counted once. :meth:`BlockMeasurements.table` gives the columns of
:func:`~napari_unet.core.postprocess.measure.measure_objects` for ``output="instances"`` (a
``slice`` column numbering the volumes of a ``TZYX`` image): the same table as measuring the
whole volume in memory. Memory grows with the number of objects, never with the volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_unet.core.postprocess.measure import measurement_columns

__all__ = ["BlockMeasurements"]


class BlockMeasurements:
    """Running per-object sums over the blocks of ``n_volumes`` volumes.

    Args:
        channels: None without an image, 0 for an image without a channel axis (columns
            ``mean_intensity``, ...), else C (``mean_intensity_c0``, ...).
        stack: a ``slice`` column (the volume index, for ``TZYX`` images).
        spacing: voxel size ``(z, y, x)`` for the physical columns, or None.
    """

    def __init__(
        self,
        channels: int | None,
        *,
        stack: bool = False,
        spacing: Sequence[float] | None = None,
    ) -> None:
        self.channels, self.stack = channels, stack
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self._rows: dict[tuple[int, int], int] = {}  # (volume, id) -> row
        n = max(channels or 0, 1)
        self._count = np.zeros(0, np.int64)
        self._sums = np.zeros((0, 3), np.float64)
        self._low = np.zeros((0, 3), np.int64)
        self._high = np.zeros((0, 3), np.int64)
        self._isum = np.zeros((0, n), np.float64)
        self._imin = np.zeros((0, n), np.float64)
        self._imax = np.zeros((0, n), np.float64)

    def add(
        self,
        labels: np.ndarray,
        origin: Sequence[int],
        image: np.ndarray | None = None,
        *,
        volume: int = 0,
    ) -> None:
        """Add one block: ``labels`` ``(d, h, w)`` at ``origin`` ``(z, y, x)`` of ``volume``;
        ``image`` ``(C, d, h, w)`` raw voxels under it (with an image-measuring table)."""
        labels = np.asarray(labels)
        inside = np.flatnonzero(labels.ravel())
        if not inside.size:
            return
        ids, inverse = np.unique(labels.ravel()[inside], return_inverse=True)
        rows = self._rows_of(volume, ids)
        coords = np.stack(np.unravel_index(inside, labels.shape), axis=1) + np.asarray(origin)
        np.add.at(self._count, rows, np.bincount(inverse, minlength=len(ids)))
        for axis in range(3):
            self._sums[rows, axis] += np.bincount(inverse, coords[:, axis], minlength=len(ids))
        np.minimum.at(self._low, rows[inverse], coords)
        np.maximum.at(self._high, rows[inverse], coords + 1)
        if image is not None and self.channels is not None:
            values = np.asarray(image, np.float64).reshape(len(image), -1)[:, inside].T
            for c in range(values.shape[1]):
                self._isum[rows, c] += np.bincount(inverse, values[:, c], minlength=len(ids))
            np.minimum.at(self._imin, rows[inverse], values)
            np.maximum.at(self._imax, rows[inverse], values)

    def _rows_of(self, volume: int, ids: np.ndarray) -> np.ndarray:
        """Rows of ``ids`` of ``volume``, new objects appended."""
        new = [(volume, int(i)) for i in ids if (volume, int(i)) not in self._rows]
        if new:
            start = len(self._count)
            self._rows.update({key: start + k for k, key in enumerate(new)})
            self._grow(len(new))
        return np.array([self._rows[(volume, int(i))] for i in ids], dtype=np.int64)

    def _grow(self, n: int) -> None:
        big = np.iinfo(np.int64).max
        self._count = np.concatenate([self._count, np.zeros(n, np.int64)])
        self._sums = np.concatenate([self._sums, np.zeros((n, 3))])
        self._low = np.concatenate([self._low, np.full((n, 3), big, np.int64)])
        self._high = np.concatenate([self._high, np.zeros((n, 3), np.int64)])
        width = self._isum.shape[1]
        self._isum = np.concatenate([self._isum, np.zeros((n, width))])
        self._imin = np.concatenate([self._imin, np.full((n, width), np.inf)])
        self._imax = np.concatenate([self._imax, np.full((n, width), -np.inf)])

    def table(self) -> dict[str, np.ndarray]:
        """The columns of ``measure_objects(..., output="instances")``, rows by volume then id."""
        keys = sorted(self._rows)
        order = np.array([self._rows[k] for k in keys], dtype=np.int64)
        count = self._count[order]
        found: dict[str, np.ndarray] = {
            "slice": np.array([k[0] for k in keys], dtype=np.int64),
            "label": np.array([k[1] for k in keys], dtype=np.int64),
            "area": count,
        }
        for axis, a in enumerate("zyx"):
            found[f"centroid_{a}"] = self._sums[order, axis] / np.maximum(count, 1)
            found[f"bbox_{a}_min"] = self._low[order, axis] if len(order) else count
            found[f"bbox_{a}_max"] = self._high[order, axis] if len(order) else count
            if self.spacing is not None:
                found[f"centroid_{a}_physical"] = found[f"centroid_{a}"] * self.spacing[axis]
        if self.spacing is not None:
            found["volume_physical"] = count * float(np.prod(self.spacing))
        self._intensity_columns(found, order, count)
        columns = measurement_columns(
            "ZYX", self.channels, stack=self.stack, physical=self.spacing is not None
        )
        return {name: found[name] for name in columns}

    def _intensity_columns(self, found: dict, order: np.ndarray, count: np.ndarray) -> None:
        if self.channels is None:
            return
        suffixes = [""] if self.channels == 0 else [f"_c{c}" for c in range(self.channels)]
        for c, suffix in enumerate(suffixes):
            found[f"mean_intensity{suffix}"] = self._isum[order, c] / np.maximum(count, 1)
            found[f"min_intensity{suffix}"] = self._imin[order, c]
            found[f"max_intensity{suffix}"] = self._imax[order, c]
