"""The held-back regions an operating point is chosen on, and how a setting scores there.

:func:`_pieces` predicts each connected group of held-back tiles once (with ``CONTEXT`` pixels of
context); :func:`_counts` turns the probabilities into instances with one post-processing setting,
matches them to the truth at IoU 0.5 and compares their foreground with the true foreground,
summed over the regions (:class:`HeldScore`).

Objects cut by the edge of a held-back region are scored as the cut pieces in both the prediction
and the truth (pixels outside the held-back tiles are set to 0; the prediction saw the context, so
a minimum size acts on whole predicted objects). :func:`uncut_areas` gives the sizes of the true
objects no edge cuts (the image's own border does not cut), from which candidate minimum sizes
are derived.

Volumes (``(C, Z, Y, X)`` items of a 3-D model) are scored the same way in 3-D: each held-back
region (a plane, or a tile's share of an annotated slice) is predicted with ``CONTEXT`` voxels
around it on every axis, the 3-D watershed (:func:`~napari_unet.core.postprocess.volume.
volume_labels`, with the voxel size) runs on that block, and the objects' cross-sections in the
held-back voxels are matched to the truth there -- so an object that runs on into a held-back
slice where no nucleus is scores as a false positive, and one that is too wide scores a low IoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from napari_unet.core.models import SegmentationNet
    from napari_unet.core.postprocess.config import PostprocessConfig
    from napari_unet.core.training.items import TrainingItem

#: At most this many groups of held-back tiles are predicted (bounds the time after training).
MAX_REGIONS = 16
#: Context in pixels predicted around each group of held-back tiles.
CONTEXT = 32


def _regions(item: TrainingItem) -> list[tuple[slice, ...]]:
    """Bounding boxes ((Z,) Y, X slices) of the connected groups of annotated (held-back)
    pixels."""
    groups, _ = ndimage.label(item.mask)
    return [box for box in ndimage.find_objects(groups) if box is not None]


def _with_context(
    box: tuple[slice, ...], shape: tuple[int, ...], context: int = CONTEXT
) -> tuple[slice, ...]:
    return tuple(
        slice(max(s.start - context, 0), min(s.stop + context, n)) for s, n in zip(box, shape)
    )  # type: ignore[return-value]


def _pieces(
    model: SegmentationNet,
    items: Sequence[TrainingItem],
    predict_config: Any,
    *,
    task: str = "instances",
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[slice, slice], tuple[slice, slice]]]:
    """Per region: ``(probabilities (K, y', x'), truth (y, x), held mask (y, x), core, box)``
    (a volume's: ``(K, z', y', x')`` and ``(z, y, x)``).

    ``box`` is the region's bounding box in the item, ``core`` the same box inside the
    probabilities (which carry ``CONTEXT`` pixels more on every side, clipped at the border;
    ``k`` times more for a model that sees the images ``k`` times smaller).
    """
    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.inference.prediction import predict
    from napari_unet.core.models.aux import with_distance

    net = with_distance(model, task == "instances")  # a distance head's seeds ride along
    # a net seeing the images k times smaller gets k times the context (the same in its pixels)
    context = CONTEXT * int(getattr(model, "downscale", 1) or 1)
    pieces = []
    for item in items:
        for box in _regions(item):
            if len(pieces) >= MAX_REGIONS:
                return pieces
            outer = _with_context(box, item.spatial_shape, context)
            probabilities = predict(
                net,
                np.ascontiguousarray(item.image[(slice(None), *outer)]),
                "CZYX" if len(outer) == 3 else "CYX",
                task=task,
                normalization=NormalizationConfig(mode="none"),
                config=predict_config,
            )
            core = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, outer))
            mask = item.mask[box]
            truth = np.where(mask, np.asarray(item.labels)[box], 0).astype(np.int64)
            pieces.append((np.asarray(probabilities, dtype=np.float32), truth, mask, core, box))
    return pieces


def _tile_count(pieces, tile: int) -> int:
    """Validation tiles (``tile`` squares on the grid anchored at (0, 0)) in the pieces."""
    cells = set()
    for index, (_, _, mask, _, box) in enumerate(pieces):
        coords = [c + b.start for c, b in zip(np.nonzero(mask), box)]
        coords[-2:] = [c // tile for c in coords[-2:]]  # a volume's tiles: per plane
        cells.update((index, *map(int, cell)) for cell in zip(*coords))
    return len(cells)


def cut_objects(
    truth: np.ndarray, mask: np.ndarray, core: tuple[slice, ...], shape: tuple[int, ...]
) -> np.ndarray:
    """Pixels ((z,) y, x) of the true objects the edge of the held-back ``mask`` cuts (in a
    volume, a held-back plane inside it cuts every object it holds).

    Args:
        truth: true instance ids in the region's box (0 outside ``mask``).
        mask: the held-back pixels of the box.
        core: the box inside the region's probabilities of spatial ``shape``: a side with no
            context there lies on the image border, which does not cut.
    """
    border = [
        (int(c.start == 0), int(c.stop == n)) for c, n in zip(core, shape)
    ]  # 1: the image border (counts as held back), 0: an edge inside the image
    inside = (slice(1, -1),) * mask.ndim
    padded = np.pad(mask, [(1, 1)] * mask.ndim, constant_values=False)
    for axis, (before, after) in enumerate(border):
        index = list(inside)
        for side, on_border in ((0, before), (-1, after)):
            if on_border:
                index[axis] = side
                padded[tuple(index)] = np.take(mask, side, axis=axis)
    inner = ndimage.binary_erosion(padded, structure=np.ones((3,) * mask.ndim, bool))[inside]
    edge = mask & ~inner
    ids = np.unique(truth[edge])
    ids = ids[ids > 0]
    return np.isin(truth, ids) if ids.size else np.zeros(truth.shape, bool)


def uncut_areas(pieces) -> np.ndarray:
    """Areas (pixels) of the true objects the held-back edges do not cut, over the pieces."""
    areas = []
    for probabilities, truth, mask, core, _ in pieces:
        kept = np.where(cut_objects(truth, mask, core, probabilities.shape[1:]), 0, truth)
        counts = np.bincount(kept.ravel())
        areas.append(counts[1:][counts[1:] > 0])
    return np.concatenate(areas) if areas else np.zeros(0, int)


class HeldScore(NamedTuple):
    """One setting on the held-back regions: matches at IoU 0.5 and foreground pixels, summed."""

    tp: int
    fp: int
    fn: int
    overlap: int  # pixels foreground in both the prediction and the truth
    union: int  # pixels foreground in either

    @property
    def ap50(self) -> float:
        """Pooled AP@0.5: TP / (TP + FP + FN)."""
        return _ap(self.tp, self.fp, self.fn)

    @property
    def foreground_iou(self) -> float:
        """Pooled foreground IoU (1.0 when neither has foreground)."""
        return self.overlap / self.union if self.union else 1.0


def _counts(
    config: PostprocessConfig, pieces, spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
) -> HeldScore:
    """The :class:`HeldScore` of ``config``, summed over the pieces (a volume's with the 3-D
    watershed at voxel size ``spacing`` (z, y, x))."""
    from napari_unet.core.evaluation.instances import matching_at
    from napari_unet.core.postprocess.labels import labels_from_probabilities
    from napari_unet.core.postprocess.volume import volume_labels

    totals = np.zeros(5, dtype=np.int64)
    for probabilities, truth, mask, core, _ in pieces:
        if probabilities.ndim == 4:
            labels = volume_labels(probabilities, task="instances", config=config, spacing=spacing)
        else:
            labels = labels_from_probabilities(probabilities, task="instances", config=config)
        pred = np.where(mask, np.asarray(labels)[core], 0).astype(np.int64)
        match = matching_at(pred, truth, (0.5,))[0.5]
        both, either = np.count_nonzero((pred > 0) & (truth > 0)), np.count_nonzero(pred | truth)
        totals += (match.tp, match.fp, match.fn, both, either)
    return HeldScore(*(int(v) for v in totals))


def _ap(tp: int, fp: int, fn: int) -> float:
    total = tp + fp + fn
    return tp / total if total else 1.0
