"""The dask graph of a distributed prediction: normalise, predict blocks, stitch, relabel.

Stage 1 (one graph): for each group of slices one task measures their normalisation; each
unfinished block's task depends on its group's and predicts, post-processes and writes the block
(:func:`.tasks.predict_block`). Finished blocks (their markers exist) are not submitted. Stage
2, instance labels only: the driver links the blocks' faces (:mod:`.stitch`) and one relabel task
per block writes the final ids. A worker that dies loses only its running task, which the
scheduler runs again elsewhere (up to ``distributed.scheduler.allowed-failures`` times).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_unet.core.errors import UserInputError
from napari_unet.distributed.bookkeeping import BlockBook
from napari_unet.distributed.grid import DIRECTIONS
from napari_unet.distributed.stitch import global_luts
from napari_unet.distributed.tasks import RunSpec, predict_block, relabel_block, slice_params

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    """What a distributed run did: ``blocks`` in all, ``skipped`` (done before), ``objects``."""

    blocks: int
    skipped: int
    objects: int | None
    seconds: float


def _roi_crop(roi: np.ndarray | None, run: RunSpec, block) -> np.ndarray | None:
    if roi is None:
        return None
    (y0, y1), (x0, x1) = run.grid.padded(block, run.layout.yx_shape)
    return np.ascontiguousarray(roi[y0:y1, x0:x1])


def _drain(futures: list, *, label: str, progress: bool) -> list:
    """Results of ``futures`` with a tqdm bar; a failure cancels the rest and is explained."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    from tqdm.auto import tqdm

    results = {}
    bar = tqdm(total=len(futures), desc=label, unit="block", disable=not progress or None)
    try:
        for future in as_completed(futures):
            results[future.key] = future.result()
            bar.update(1)
    except KilledWorker as err:
        raise UserInputError(
            f"a block killed every worker that ran it ({err}); it may need more memory "
            "than a worker has: give workers more memory or use a smaller --dask-block "
            "(finished blocks are kept; rerun to resume)."
        ) from None
    except PermissionError as err:
        raise UserInputError(
            f"a worker cannot write {err.filename or 'the output'} (permission denied); make the "
            "output writable and rerun (finished blocks are kept and skipped)."
        ) from None
    finally:
        bar.close()
        if futures:  # release results (done) or stop the rest (after a failure)
            futures[0].client.cancel(futures)
    return [results[f.key] for f in futures]


def run_graph(
    client: Any, run: RunSpec, book: BlockBook, *, roi=None, progress: bool = True
) -> RunSummary:
    """Predict every unfinished block of ``run`` on ``client``; stitch and relabel instances."""
    import dask

    tic = time.perf_counter()
    grid = run.grid
    blocks = list(grid.blocks())
    todo = [b for b in blocks if not book.is_predicted(b.key)]
    params = {}
    tasks = []
    for block in todo:
        iz = block.index[0]
        if iz not in params:
            params[iz] = dask.delayed(slice_params, pure=True)(
                run, *block.z, dask_key_name=f"normalise-{block.key.split('-')[0]}-{id(run)}"
            )
        tasks.append(
            dask.delayed(predict_block, pure=True)(
                run,
                block,
                params[iz],
                _roi_crop(roi, run, block),
                dask_key_name=f"predict-{block.key}-{id(run)}",
            )
        )
    logger.info("%d of %d blocks to predict", len(todo), len(blocks))
    _drain(client.compute(tasks), label="predict", progress=progress)
    objects = None
    if run.labels == "instances":
        objects = _relabel(client, run, book, blocks, progress=progress)
    return RunSummary(len(blocks), len(blocks) - len(todo), objects, time.perf_counter() - tic)


def _relabel(client: Any, run: RunSpec, book: BlockBook, blocks: list, *, progress: bool) -> int:
    """Stitch the blocks' faces into global ids and rewrite every block with them."""
    faces = {b.key: book.load_predicted(b.key) for b in blocks}
    links = []
    for block in blocks:
        for direction in DIRECTIONS:
            other = run.grid.neighbour(block, direction)
            if other is not None:
                links.append((block.key, direction, other.key))
    min_size = run.post_config.min_size if run.post_config else 0
    luts, objects = global_luts(faces, links, min_size=min_size)
    digest = hashlib.sha1()
    for key in sorted(luts):
        digest.update(key.encode() + luts[key].tobytes())
    tag = digest.hexdigest()[:12]
    todo = [b for b in blocks if not book.is_relabelled(b.key, tag)]
    futures = [
        client.submit(relabel_block, run, b, luts[b.key], tag, key=f"relabel-{b.key}-{tag}")
        for b in todo
    ]
    _drain(futures, label="relabel", progress=progress)
    logger.info("%d objects after stitching %d blocks", objects, len(blocks))
    return objects
