"""``predict ... --dask SCHEDULER``: predict Zarr images block by block on a dask cluster.

The CLI glue of :mod:`napari_unet.distributed`: it checks the input and settings, creates the
outputs (chunks aligned to the blocks), connects to the scheduler (``local:N`` starts a
``LocalCluster`` of N one-thread workers), prints the dashboard link and runs the graph with a
progress bar. A rerun with the same settings resumes: finished blocks are skipped.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import UserInputError

logger = logging.getLogger(__name__)

_CLIENTS: dict[str, Any] = {}


def _block(text: str) -> tuple[int, int, int]:
    try:
        sides = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        sides = []
    if len(sides) not in (2, 3) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"expected Y,X or SLICES,Y,X (positive), got {text!r}")
    return (sides[0], sides[1], sides[2]) if len(sides) == 3 else (1, sides[0], sides[1])


def add_dask_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--dask`` and ``--dask-block`` to the ``predict`` parser."""
    parser.add_argument(
        "--dask",
        metavar="SCHEDULER",
        help="Zarr inputs only: predict block by block on a dask cluster: a scheduler address "
        "(tcp://host:8786) or local:N for N local workers; a rerun resumes unfinished outputs",
    )
    parser.add_argument(
        "--dask-block",
        type=_block,
        metavar="SLICES,Y,X",
        help="block size for --dask (default: whole input chunks up to 2048 px, slices "
        "grouped up to 4 Mpx per block)",
    )


def _client(scheduler: str) -> Any:
    from napari_unet.distributed.cluster import close, connect

    if scheduler not in _CLIENTS:
        client = connect(scheduler)
        _CLIENTS[scheduler] = client
        atexit.register(close, client)
        import importlib.util

        note = "" if importlib.util.find_spec("bokeh") else " (pip install bokeh to see it)"
        print(f"dask dashboard: {client.dashboard_link}{note}", file=sys.stderr)
    return _CLIENTS[scheduler]


def _label_dtype(job: Any) -> np.dtype | None:
    from napari_unet.core.postprocess.ops import semantic_label_dtype

    info = job.loaded.info
    if info.task == "restoration" or job.args.output == "probabilities":
        return None
    if job.post_config.output == "instances":
        return np.dtype(np.uint32)
    channels = int(job.loaded.model.out_channels)
    return semantic_label_dtype(2 if info.task == "binary" else channels)


def _post_halo(job: Any, labels: str | None) -> int:
    """Context around a block's labels: exact objects up to this size, exact ``min_size``."""
    config = job.post_config
    if labels == "instances":
        return max(config.block_halo, 2)
    if labels == "semantic" and (config.min_size > 1 or config.fill_holes):
        return max(config.block_halo, config.min_size)
    return 0


def _input_chunks(lazy: Any, axes: str) -> tuple[int, int]:
    chunks = tuple(getattr(lazy.array, "chunks", lazy.shape))
    return int(chunks[axes.index("Y")]), int(chunks[axes.index("X")])


def _plan_record(job: Any, path: Path, shape, axes, grid, outputs) -> dict:
    checkpoint = Path(job.checkpoint_path)
    stat = checkpoint.stat()
    record = {
        "input": str(path.resolve()),
        "shape": list(shape),
        "axes": axes,
        "model": [str(checkpoint.resolve()), stat.st_size, stat.st_mtime_ns],
        "predict": job.predict_config.to_dict(),
        "postprocess": job.post_config.to_dict(),
        "outputs": sorted(outputs),
        "grid": [list(grid.z_edges), list(grid.y_edges), list(grid.x_edges), grid.halo],
    }
    return json.loads(json.dumps(record))  # as stored: lists, not tuples


def predict_dask(job: Any, path: Path, stem: str, bar: Any) -> str:
    """Predict the Zarr image at ``path`` on the ``--dask`` cluster; its summary line."""
    from napari_unet.cli.predict_zarr import _selected, labels_inside
    from napari_unet.core.checkpoint.format import resolve_checkpoint
    from napari_unet.core.io.axes import StackLayout, check_axes, check_channels, guess_axes
    from napari_unet.core.io.ome_labels import register_labels
    from napari_unet.core.io.zarr_io import is_zarr, open_zarr
    from napari_unet.core.models.base import require_spatial_dims
    from napari_unet.distributed.bookkeeping import BlockBook
    from napari_unet.distributed.cluster import require_distributed
    from napari_unet.distributed.engine import run_graph
    from napari_unet.distributed.grid import CHUNK_WARN_RATIO, chunk_overhead, plan_grid
    from napari_unet.distributed.store import check_writable, completed_plan, mark_complete
    from napari_unet.distributed.tasks import RunSpec

    require_distributed()
    args, info, model = job.args, job.loaded.info, job.loaded.model
    if not is_zarr(path):
        raise UserInputError(
            "--dask applies to Zarr / OME-Zarr inputs; predict this file without it."
        )
    require_spatial_dims(model, 2, what="distributed prediction (2-D nets, slice by slice)")
    job.checkpoint_path = str(resolve_checkpoint(args.model))
    lazy = open_zarr(path)
    axes = (
        check_axes(args.axes, lazy.shape)
        if args.axes
        else guess_axes(lazy.shape, metadata_axes=lazy.axes)
    )
    layout = StackLayout(axes=axes, shape=lazy.shape)
    check_channels(layout.n_channels, int(model.in_channels), shape=layout.shape, axes=axes)
    chosen = _selected(layout.n_slices, args.slices)
    if job.roi is not None and job.roi.shape != layout.yx_shape:
        raise UserInputError(
            f"--roi has shape {job.roi.shape}; a Zarr image takes a (Y, X) mask of "
            f"{layout.yx_shape}."
        )
    label_dtype = _label_dtype(job)
    labels = None if label_dtype is None else job.post_config.output
    input_chunks = _input_chunks(lazy, axes)
    grid = plan_grid(
        slices=chosen,
        yx_shape=layout.yx_shape,
        input_chunks=input_chunks,
        halo=_post_halo(job, labels),
        block=args.dask_block,
    )
    ratio = chunk_overhead(grid, input_chunks)
    if ratio > CHUNK_WARN_RATIO:
        logger.warning(
            "%s: input chunks %s are %.0fx larger than a block; every block re-reads whole "
            "chunks (rechunk the input or pass a larger --dask-block)",
            path,
            input_chunks,
            ratio,
        )
    out = args.out
    targets = _targets(job, out, stem, labels)
    inside = labels_inside(job, path, targets)
    plan = _plan_record(job, path, lazy.shape, axes, grid, targets)
    if targets and all(completed_plan(p) == plan for p in targets.values()):
        return f"ok {path} -> already complete ({', '.join(p.name for p in targets.values())})"
    client = _client(args.dask)  # an unreachable scheduler stops here, before any write
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out)
    book = BlockBook(out / f"{stem}.dask-blocks")
    _create_outputs(job, layout, grid, targets, label_dtype)
    done = book.start(plan)
    if labels == "instances":
        _create_scratch(book, layout, grid)
    run = RunSpec(
        input_path=str(path),
        axes=axes,
        shape=tuple(lazy.shape),
        checkpoint=job.checkpoint_path,
        device=args.device,
        task=info.task,
        predict_config=job.predict_config,
        normalization=info.normalization_config(),
        labels=labels,
        post_config=job.post_config if labels else None,
        outputs={k: str(v) for k, v in targets.items()},
        book=str(book.folder),
        grid=grid,
    )
    logger.info("%s: %d blocks, %d done before", path, len(list(grid.blocks())), done)
    summary = run_graph(client, run, book, roi=job.roi, progress=sys.stderr.isatty())
    for name, target in targets.items():
        _pyramid(target, name, layout, lazy.physical)
        mark_complete(target, plan)
    if inside is not None:
        register_labels(path, inside)
    book.finish()
    detail = f"{summary.blocks} blocks, {summary.skipped} resumed"
    if summary.objects is not None:
        detail += f", {summary.objects} objects"
    written = ", ".join(p.name for p in targets.values())
    return f"ok {path} -> {written} ({detail}, {summary.seconds:.1f} s on dask)"


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
