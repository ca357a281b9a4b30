"""The Zarr outputs of a ``predict --dask`` run: which, their dtypes, creating them, pyramids.

Outputs are created before any block runs, with chunks aligned to the blocks (one slice deep);
coarser pyramid levels are built once every block is done. Used by
:mod:`napari_unet.cli.predict_dask`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _label_dtype(job: Any) -> np.dtype | None:
    from napari_unet.core.postprocess.ops import semantic_label_dtype

    info = job.loaded.info
    if info.task == "restoration" or job.args.output == "probabilities":
        return None
    if job.post_config.output == "instances":
        return np.dtype(np.uint32)
    channels = int(job.loaded.model.out_channels)
    return semantic_label_dtype(2 if info.task == "binary" else channels)


def _targets(job: Any, out: Path, stem: str, labels: str | None) -> dict[str, Path]:
    if job.loaded.info.task == "restoration":
        return {"restored": out / f"{stem}_restored.zarr"}
    targets = {}
    if labels is not None:
        targets["labels"] = out / f"{stem}_labels.zarr"
    if job.args.output in ("probabilities", "both"):
        targets["probabilities"] = out / f"{stem}_probabilities.zarr"
    return targets


def _create_outputs(job, layout, grid, targets: dict[str, Path], label_dtype) -> None:
    from napari_unet.core.io.marks import zarr_attributes
    from napari_unet.distributed.store import create_block_output

    by, bx = grid.y_edges[1] - grid.y_edges[0], grid.x_edges[1] - grid.x_edges[0]
    spatial, axes = layout.spatial_shape, layout.spatial_axes
    chunks = (*(1 for _ in layout.stack_axes), by, bx)
    channels = int(job.loaded.model.out_channels)
    for name, target in targets.items():
        if name == "labels":
            create_block_output(
                target,
                shape=spatial,
                axes=axes,
                dtype=label_dtype,
                chunks=chunks,
                attributes=zarr_attributes(job.mark),
            )
        else:
            dtype = np.float32 if name == "restored" else np.float16
            create_block_output(
                target,
                shape=(channels, *spatial),
                axes="C" + axes,
                dtype=dtype,
                chunks=(channels, *chunks),
            )


def _pyramid(target: Path, name: str, layout: Any, physical: Any) -> None:
    """Build the coarser levels of ``target`` once level 0 is complete (needs ``ome-zarr``).

    Workers write level 0 in blocks that need not align with a coarser level, so the pyramid is
    made here, slice by slice, after every block is done (a rerun rebuilds the same values).
    """
    from napari_unet.core.io.ome_pyramid import build_pyramid, ome_zarr_available

    if not ome_zarr_available():
        logger.warning(
            '%s has one resolution level: install ome-zarr (pip install "napari-unet-loop'
            '[ome-zarr]") for a pyramid and physical pixel sizes.',
            target.name,
        )
        return
    axes = layout.spatial_axes if name == "labels" else "C" + layout.spatial_axes
    build_pyramid(target, labels=name == "labels", axes=axes, physical=physical)


def _create_scratch(book, layout, grid) -> None:
    from napari_unet.distributed.store import create_block_output

    by, bx = grid.y_edges[1] - grid.y_edges[0], grid.x_edges[1] - grid.x_edges[0]
    create_block_output(
        book.scratch,
        shape=(layout.n_slices, *layout.yx_shape),
        axes="ZYX",
        dtype=np.uint32,
        chunks=(1, by, bx),
    )
