"""Resume of a 3-D model's streamed prediction (``predict`` on a Zarr or too-large TIFF volume,
with or without ``--dask``), as for 2-D ``--dask`` runs.

``--out/STEM.dask-blocks/`` (:class:`~napari_unet.distributed.bookkeeping.BlockBook`) records
the run's plan (input, model file, settings, block grid) and marks every block once it is
written. An interrupted run (a failure, Ctrl+C, a killed process) keeps its outputs and that
folder when it finished a block; the same command run again predicts only the unmarked blocks,
and the result equals an uninterrupted run's. A rerun with other settings is refused in one
sentence. Once complete the outputs say so (their attributes hold the plan), the folder is
removed, and running the same command again does nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["already_complete", "finish", "keep_for_resume", "start_book", "volume_plan"]

logger = logging.getLogger(__name__)


def book_folder(job: Any, stem: str) -> Path:
    """The resume folder of ``stem``'s outputs in ``--out``."""
    return job.args.out / f"{stem}.dask-blocks"


def volume_plan(job: Any, path: Path, spec: Any) -> dict:
    """What the run computes (as stored: plain JSON data); a rerun resumes only the same plan."""
    checkpoint = Path(spec.checkpoint)
    stat = checkpoint.stat()
    record = {
        "input": str(path.resolve()),
        "shape": list(spec.shape),
        "axes": spec.axes,
        "model": [str(checkpoint.resolve()), stat.st_size, stat.st_mtime_ns],
        "predict": job.predict_config.to_dict(),
        "postprocess": job.post_config.to_dict(),
        "labels": spec.labels,
        "spacing": list(spec.spacing),
        "outputs": sorted(spec.outputs),
        "measure": bool(getattr(job.args, "measure", False)),
        "pixel_size": list(getattr(job.args, "pixel_size", None) or []),
        "grid": [[list(e) for e in spec.grid.edges], spec.grid.n_volumes, spec.grid.halo],
    }
    return json.loads(json.dumps(record))


def already_complete(targets: dict[str, Path], plan: dict) -> bool:
    """Whether every output was completed by a run of this plan."""
    from napari_unet.distributed.store import completed_plan

    return bool(targets) and all(completed_plan(p) == plan for p in targets.values())


def start_book(spec: Any, plan: dict, layout: Any, chunks: tuple[int, ...]) -> int:
    """Record ``plan`` in ``spec.book`` (or check it: other settings -> one sentence); create
    the scratch store of block-local instance ids; the number of blocks finished before."""
    from napari_unet.distributed.bookkeeping import BlockBook
    from napari_unet.distributed.store import create_block_output

    book = BlockBook(spec.book)
    done = book.start(plan)
    if spec.labels == "instances":
        create_block_output(
            book.scratch,
            shape=layout.spatial_shape,
            axes=layout.spatial_axes,
            dtype=np.uint32,
            chunks=chunks,
        )
    if done:
        logger.info("resuming: %d block(s) were finished by an earlier run", done)
    return done


def finish(spec: Any, targets: dict[str, Path], plan: dict) -> None:
    """Mark the outputs complete and remove the resume folder."""
    from napari_unet.distributed.bookkeeping import BlockBook
    from napari_unet.distributed.store import mark_complete

    for target in targets.values():
        mark_complete(target, plan)
    BlockBook(spec.book).finish()


def keep_for_resume(spec: Any) -> bool:
    """After a failure: True (outputs kept, a warning says how to resume) when a block was
    finished; else the resume folder is removed and False (the caller removes the outputs)."""
    folder = Path(spec.book)
    done = len(list((folder / "predicted").glob("*.npz"))) if folder.is_dir() else 0
    if done:
        logger.warning(
            "%d finished block(s) are kept in %s and its outputs: run the same command again "
            "to resume, or remove them to start again",
            done,
            folder,
        )
        return True
    shutil.rmtree(folder, ignore_errors=True)
    return False
