"""Run a 3-D model's streamed prediction block by block: in this process, or on a dask cluster.

:func:`iter_volume_local` predicts the blocks one after the other (a generator: progress after
each block, stop iterating to cancel) with memory bounded by one block, its tiles and the faces
of the blocks whose neighbours are not done yet. :func:`run_volume_dask` sends the same block
tasks to a cluster. Instance ids are made global the same way in both (:class:`FaceLinker`,
the face stitching of :mod:`.stitch` over the 26 neighbours of a 3-D block), then every block
is rewritten with its look-up table.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Generator
from typing import Any

import numpy as np

from napari_unet.distributed.bookkeeping import BlockBook
from napari_unet.distributed.stitch import BlockFaces, face_pairs, luts_from_pairs
from napari_unet.distributed.volume_grid import DIRECTIONS_3D, VolumeBlock, VolumeGrid
from napari_unet.distributed.volume_resume import finished_block, is_finished, lut_tag
from napari_unet.distributed.volume_tasks import (
    VolumeRunSpec,
    predict_volume_block,
    relabel_volume_block,
    volume_params,
)

logger = logging.getLogger(__name__)


class FaceLinker:
    """Links the faces of blocks as they arrive (any order); a block's faces are dropped once
    every neighbour has reported, so memory holds only the faces of the front of work."""

    def __init__(self, grid: VolumeGrid) -> None:
        self.grid = grid
        self.counts: dict[str, np.ndarray] = {}
        self._faces: dict[str, BlockFaces] = {}
        self._waiting: dict[str, int] = {}
        self._pairs: list[tuple[str, np.ndarray, str, np.ndarray]] = []

    def add(self, block: VolumeBlock, faces: BlockFaces) -> None:
        """Record ``block``'s report and link it with every neighbour already reported."""
        self.counts[block.key] = faces.counts
        neighbours = [
            (d, other)
            for d in DIRECTIONS_3D
            if (other := self.grid.neighbour(block, d)) is not None
        ]
        self._faces[block.key], self._waiting[block.key] = faces, len(neighbours)
        for direction, other in neighbours:
            if other.key not in self._faces:
                continue
            back = tuple(-d for d in direction)
            self._link(block.key, direction, other.key)
            self._link(other.key, back, block.key)
            self._settle(other.key)
            self._settle(block.key)
        if not neighbours:
            self._settle(block.key, 0)

    def _link(self, a: str, direction: tuple[int, ...], b: str) -> None:
        back = tuple(-d for d in direction)
        fa, fb = self._faces[a], self._faces[b]
        pairs = face_pairs(fa.outer[direction], fa.n_ids, fb.inner[back])
        self._pairs.append((a, pairs[:, 0], b, pairs[:, 1]))

    def _settle(self, key: str, by: int = 1) -> None:
        self._waiting[key] -= by
        if self._waiting[key] <= 0:
            del self._faces[key]

    def luts(self, order: list[str], *, min_size: int = 0) -> tuple[dict[str, np.ndarray], int]:
        """Global ids of every block (numbered in ``order``) and the number of objects."""
        counts = {key: self.counts[key] for key in order}
        sizes = np.array([len(c) - 1 for c in counts.values()], dtype=np.int64)
        offsets = dict(zip(order, np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()))
        rows = [ids_a + offsets[a] for a, ids_a, _, _ in self._pairs]
        cols = [ids_b + offsets[b] for _, _, b, ids_b in self._pairs]
        return luts_from_pairs(counts, rows, cols, min_size=min_size)


def roi_crop(roi: np.ndarray | None, grid: VolumeGrid, block: VolumeBlock):
    """The ``(Y, X)`` region of interest over ``block``'s padded Y/X (None: everywhere)."""
    if roi is None:
        return None
    _, (y0, y1), (x0, x1) = grid.padded(block)
    return np.ascontiguousarray(roi[y0:y1, x0:x1])


def iter_volume_local(
    run: VolumeRunSpec, predictor: Any, model: Any, roi: np.ndarray | None = None
) -> Generator[tuple[int, int], None, int | None]:
    """Predict every block of ``run`` here, yielding ``(done, total)`` after each block.

    Blocks an interrupted run finished (``run.book``) are not predicted again.

    Returns:
        The number of objects (instances), else None.
    """
    blocks = list(run.grid.blocks())
    linker = FaceLinker(run.grid)
    params: dict[int, Any] = {}
    for done, block in enumerate(blocks, start=1):
        skipped, faces = finished_block(run, block)
        if not skipped:
            if block.volume not in params:  # one volume's parameters at a time
                params = {block.volume: volume_params(run, block.volume)}
            crop = roi_crop(roi, run.grid, block)
            faces = predict_volume_block(run, block, predictor, model, params[block.volume], crop)
        if faces is not None:
            linker.add(block, faces)
        yield done, len(blocks)
    if run.labels != "instances":
        return None
    luts, objects = _luts(run, blocks, linker)
    tag = lut_tag(luts)
    for block in blocks:
        relabel_volume_block(run, block, luts[block.key], tag)
    return objects


def _luts(run: VolumeRunSpec, blocks: list, linker: FaceLinker) -> tuple[dict, int]:
    """Every block's global ids (``min_size`` applied to the stitched objects)."""
    min_size = run.post_config.min_size if run.post_config else 0
    luts, objects = linker.luts([b.key for b in blocks], min_size=min_size)
    logger.info("%d objects after stitching %d blocks", objects, len(blocks))
    return luts, objects


def _worker_block(run: VolumeRunSpec, block: VolumeBlock, params, roi) -> BlockFaces | None:
    """A dask task: the worker's cached model predicts ``block``."""
    from napari_unet.core.inference.predictor import make_predictor
    from napari_unet.distributed.model_cache import get_model

    skipped, faces = finished_block(run, block)  # a retried task whose first run finished
    if skipped:
        return faces
    config = run.predict_config
    cached = get_model(run.checkpoint, run.device, channels_last=config.channels_last)
    predictor = make_predictor(cached.net, task=run.task, device=cached.device, config=config)
    return predict_volume_block(run, block, predictor, cached.loaded.model, params, roi)


def run_volume_dask(
    client: Any, run: VolumeRunSpec, *, roi: np.ndarray | None = None, progress: bool = True
) -> int | None:
    """Predict every unfinished block of ``run`` on ``client``; stitch and relabel instances
    there too (blocks and relabels an interrupted run finished are not submitted again)."""
    import dask

    from napari_unet.distributed.engine import _drain

    blocks, token = list(run.grid.blocks()), uuid.uuid4().hex[:12]
    todo = [b for b in blocks if not is_finished(run, b)]
    params = {
        v: dask.delayed(volume_params, pure=True)(run, v, dask_key_name=f"normalise-t{v}-{token}")
        for v in range(run.grid.n_volumes)
    }
    tasks = [
        dask.delayed(_worker_block, pure=True)(
            run, b, params[b.volume], roi_crop(roi, run.grid, b),
            dask_key_name=f"predict3d-{b.key}-{token}",
        )
        for b in todo
    ]  # fmt: skip
    results = _drain(client.compute(tasks), label="predict", progress=progress)
    if run.labels != "instances":
        return None
    new = dict(zip([b.key for b in todo], results))
    linker = FaceLinker(run.grid)
    for block in blocks:
        linker.add(block, new[block.key] if block.key in new else finished_block(run, block)[1])
    luts, objects = _luts(run, blocks, linker)
    tag = lut_tag(luts)
    futures = [
        client.submit(
            relabel_volume_block, run, b, luts[b.key], tag, key=f"relabel3d-{b.key}-{tag}"
        )
        for b in blocks
        if run.book is None or not BlockBook(run.book).is_relabelled(b.key, tag)
    ]
    _drain(futures, label="relabel", progress=progress)
    return objects
