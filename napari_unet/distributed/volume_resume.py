"""Resuming a 3-D model's streamed prediction: which blocks an interrupted run finished.

A run with a resume folder (``VolumeRunSpec.book``, a :class:`.bookkeeping.BlockBook` as for
2-D ``--dask`` runs) marks each block once its pixels are written (for instance labels the mark
keeps the block's faces, so a rerun links the blocks without predicting them again) and each
block relabelled with the look-up tables of digest :func:`lut_tag`. A rerun with the same plan
predicts only the unmarked blocks and relabels only the unmarked ones; the stitched ids are the
same because the faces are.
"""

from __future__ import annotations

import hashlib

import numpy as np

from napari_unet.distributed.bookkeeping import BlockBook
from napari_unet.distributed.stitch import BlockFaces

__all__ = ["finished_block", "is_finished", "lut_tag"]


def is_finished(run, block) -> bool:
    """Whether ``block`` of ``run`` (a ``VolumeRunSpec``) was written by an earlier run."""
    return run.book is not None and BlockBook(run.book).is_predicted(block.key)


def finished_block(run, block) -> tuple[bool, BlockFaces | None]:
    """``(finished, faces)``: whether ``block`` was written before, and its recorded faces
    (instance labels; None otherwise or when not finished)."""
    if not is_finished(run, block):
        return False, None
    return True, BlockBook(run.book).load_predicted(block.key)


def lut_tag(luts: dict[str, np.ndarray]) -> str:
    """A short digest of every block's look-up table (marks which tables a block holds)."""
    digest = hashlib.sha1()
    for key in sorted(luts):
        digest.update(key.encode() + np.ascontiguousarray(luts[key]).tobytes())
    return digest.hexdigest()[:12]
