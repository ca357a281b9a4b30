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

from napari_unet.cli.predict_dask_outputs import (
    _create_outputs,
    _create_scratch,
    _label_dtype,
    _pyramid,
    _targets,
)
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
        "grouped up to 4 Mpx per block); for a 3-D model the Z,Y,X block a volume is streamed "
        "in, with or without --dask (default 64,256,256)",
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
    from napari_unet.cli.predict_zarr import labels_inside
    from napari_unet.core.io.ome_labels import register_labels
    from napari_unet.distributed.bookkeeping import BlockBook
    from napari_unet.distributed.cluster import require_distributed
    from napari_unet.distributed.engine import run_graph
    from napari_unet.distributed.store import check_writable, completed_plan, mark_complete

    require_distributed()
    args = job.args
    lazy, axes, layout, chosen = _open_input(job, path)
    label_dtype = _label_dtype(job)
    labels = None if label_dtype is None else job.post_config.output
    grid = _plan(job, path, lazy, axes, layout, chosen, labels)
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
    run = _run_spec(job, path, axes, lazy, labels, targets, book, grid)
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


def _open_input(job: Any, path: Path) -> tuple[Any, str, Any, range]:
    """``(lazy image, axes, StackLayout, chosen slices)`` of ``path``, checked against the job.

    Raises:
        UserInputError: not a Zarr store, a 3-D model, axes, channels or ``--roi`` that do not fit.
    """
    from napari_unet.cli.predict_zarr import _selected
    from napari_unet.core.checkpoint.format import resolve_checkpoint
    from napari_unet.core.io.axes import StackLayout, check_axes, check_channels, guess_axes
    from napari_unet.core.io.zarr_io import is_zarr, open_zarr
    from napari_unet.core.models.base import require_spatial_dims

    args, model = job.args, job.loaded.model
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
    return lazy, axes, layout, chosen


def _plan(
    job: Any, path: Path, lazy: Any, axes: str, layout: Any, chosen: range, labels: str | None
) -> Any:
    """The block grid over the chosen slices; warns when input chunks dwarf the blocks."""
    from napari_unet.distributed.grid import CHUNK_WARN_RATIO, chunk_overhead, plan_grid

    input_chunks = _input_chunks(lazy, axes)
    grid = plan_grid(
        slices=chosen,
        yx_shape=layout.yx_shape,
        input_chunks=input_chunks,
        halo=_post_halo(job, labels),
        block=job.args.dask_block,
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
    return grid


def _run_spec(
    job: Any,
    path: Path,
    axes: str,
    lazy: Any,
    labels: str | None,
    targets: dict[str, Path],
    book: Any,
    grid: Any,
) -> Any:
    """The :class:`~napari_unet.distributed.tasks.RunSpec` every block task receives."""
    from napari_unet.distributed.tasks import RunSpec

    info = job.loaded.info
    return RunSpec(
        input_path=str(path),
        axes=axes,
        shape=tuple(lazy.shape),
        checkpoint=job.checkpoint_path,
        device=job.args.device,
        task=info.task,
        predict_config=job.predict_config,
        normalization=info.normalization_config(),
        labels=labels,
        post_config=job.post_config if labels else None,
        outputs={k: str(v) for k, v in targets.items()},
        book=str(book.folder),
        grid=grid,
    )
