"""``predict`` with a 3-D model on a volume streamed from disk: block by block in Z, Y and X.

Inputs: a Zarr / OME-Zarr volume, or a TIFF volume too large for memory (read through
tifffile's Zarr interface, ``tifffile.imread(path, aszarr=True)``, never whole). Each block of
the volume (default 64x256x256, ``--dask-block SLICES,Y,X`` sets it) is predicted in 3-D from
the volume's global tile grid with mirrored context at the borders, so its probabilities and
semantic labels equal the in-memory prediction's; instance ids are linked across the faces of
neighbouring blocks. Outputs are OME-Zarr (``STEM_labels.zarr``, ``STEM_probabilities.zarr``),
written block by block (a pyramid is added at the end with ``ome-zarr``). Memory grows with one
block, not the volume. ``--dask local:N|ADDRESS`` sends the same blocks to a cluster.
A failed or cancelled run that finished some blocks keeps them (``STEM.dask-blocks``): the same
command run again predicts only the rest (:mod:`napari_unet.cli.predict_volume_resume`); one that
finished none removes the outputs it created. ``--measure`` measures the instance labels block by
block once they are complete (:mod:`napari_unet.cli.predict_volume_measure`).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.cli.predict_volume_measure import check_stream_measure
from napari_unet.core.errors import UserInputError

__all__ = ["predict_volume_stream"]

logger = logging.getLogger(__name__)


def _layout(job: Any, path: Path, array: Any, stated: str | None) -> Any:
    """The checked :class:`StackLayout` of a volume for the job's 3-D model."""
    from napari_unet.core.io.axes import StackLayout, check_axes, check_channels, guess_axes

    shape = tuple(int(s) for s in array.shape)
    axes = (
        check_axes(job.args.axes, shape)
        if job.args.axes
        else guess_axes(shape, metadata_axes=stated)
    )
    layout = StackLayout(axes=axes, shape=shape)
    name = getattr(job.loaded.model, "arch", "") or "this model"
    if "Z" not in layout.stack_axes or layout.stack_shape[layout.stack_axes.index("Z")] < 2:
        raise UserInputError(
            f"{name} is a 3-D model and needs a volume, but {path.name} has axes {axes!r} "
            f"{shape} without a Z axis of several slices; give a Z-stack or use a 2-D model."
        )
    model = job.loaded.model
    check_channels(layout.n_channels, int(model.in_channels), shape=shape, axes=axes)
    check_stream_measure(job, name)  # --measure: instances, measured block by block
    if getattr(job.args, "slices", None) is not None:
        raise UserInputError(
            f"--slices shares a stack among 2-D jobs; {name} predicts whole volumes: drop --slices."
        )
    if job.roi is not None and job.roi.shape != layout.yx_shape:
        raise UserInputError(
            f"--roi has shape {job.roi.shape}; this volume takes a (Y, X) mask of "
            f"{layout.yx_shape}."
        )
    return layout


def _halo(job: Any, labels: str | None) -> int:
    """Context around a block's labels: exact objects up to this size, exact ``min_size``."""
    from napari_unet.distributed.volume_grid import MAX_VOLUME_HALO

    config = job.post_config
    if labels == "instances":
        return max(2, min(config.block_halo, MAX_VOLUME_HALO))
    if labels == "semantic" and (config.min_size > 1 or config.fill_holes):
        return min(config.block_halo, max(config.min_size, MAX_VOLUME_HALO))
    return 0


def _spacing(job: Any, path: Path, physical: Any) -> tuple[float, float, float]:
    """``--pixel-size``, else the OME-Zarr scale of Z/Y/X, else the job's default voxel size."""
    from napari_unet.core.postprocess.volume import check_spacing

    if getattr(job.args, "pixel_size", None) is None and "Z" in physical.scale:
        return check_spacing([physical.scale.get(a, 1.0) for a in "ZYX"])
    return check_spacing(job.voxel_size(path))


def _spec(job: Any, path: Path, layout: Any, labels, targets, physical, book: Path) -> Any:
    from napari_unet.core.checkpoint.format import resolve_checkpoint
    from napari_unet.core.inference.volume import VolumeLayout
    from napari_unet.distributed.volume_grid import plan_volume_grid
    from napari_unet.distributed.volume_tasks import VolumeRunSpec

    volumes = VolumeLayout(layout)
    grid = plan_volume_grid(
        volumes.volume_shape,
        n_volumes=volumes.n_volumes,
        halo=_halo(job, labels),
        block=getattr(job.args, "dask_block", None),
    )
    info = job.loaded.info
    return VolumeRunSpec(
        input_path=str(path),
        axes=layout.axes,
        shape=tuple(layout.shape),
        checkpoint=str(resolve_checkpoint(job.args.model)),
        device=job.args.device,
        task=info.task,
        predict_config=job.predict_config,
        normalization=info.normalization_config(),
        labels=labels,
        post_config=job.post_config if labels else None,
        spacing=_spacing(job, path, physical) if labels == "instances" else (1.0, 1.0, 1.0),
        outputs={k: str(v) for k, v in targets.items()},
        grid=grid,
        book=str(book),
    )


def _chunks(layout: Any, grid: Any) -> tuple[int, ...]:
    """Label chunks one slice deep and one block wide (blocks never share a chunk)."""
    (_, by, bx) = (e[1] - e[0] for e in grid.edges)
    return (*(1 for _ in layout.stack_axes), by, bx)


def _create_outputs(job: Any, layout: Any, grid: Any, targets: dict, label_dtype) -> None:
    """Outputs with chunks one slice deep and one block wide (blocks never share a chunk)."""
    from napari_unet.core.io.marks import zarr_attributes, zarr_output_attributes
    from napari_unet.distributed.store import create_block_output

    chunks = _chunks(layout, grid)
    channels = int(job.loaded.model.out_channels)
    for name, target in targets.items():
        labels = name == "labels"
        create_block_output(
            target,
            shape=layout.spatial_shape if labels else (channels, *layout.spatial_shape),
            axes=layout.spatial_axes if labels else "C" + layout.spatial_axes,
            dtype=label_dtype if labels else (np.float32 if name == "restored" else np.float16),
            chunks=chunks if labels else (channels, *chunks),
            attributes=zarr_attributes(job.mark)
            if labels
            else zarr_output_attributes(name, job.mark.model),
        )


def _run(job: Any, spec: Any, path: Path, bar: Any) -> int | None:
    """Predict every block, here or on the ``--dask`` cluster; the object count (instances)."""
    if getattr(job.args, "dask", None):
        from napari_unet.cli.predict_dask import _client
        from napari_unet.distributed.cluster import require_distributed
        from napari_unet.distributed.volume_run import run_volume_dask

        require_distributed()
        client = _client(job.args.dask)
        return run_volume_dask(client, spec, roi=job.roi, progress=sys.stderr.isatty())
    from napari_unet.core.device import get_device
    from napari_unet.core.inference.predictor import inference_net, make_predictor
    from napari_unet.distributed.volume_run import iter_volume_local

    model, config = job.loaded.model, job.predict_config
    device = get_device(config.device)
    net = inference_net(model, device, config)
    predictor = make_predictor(net, task=spec.task, device=device, config=config)
    blocks = iter_volume_local(spec, predictor, model, roi=job.roi)
    while True:
        try:
            done, total = next(blocks)
        except StopIteration as stop:
            return stop.value
        bar.update(path.name, done / total)


def predict_volume_stream(job: Any, path: Path, stem: str, bar: Any) -> str:
    """Predict the volume at ``path`` with the job's 3-D model, streamed; its summary line."""
    from napari_unet.cli import predict_volume_resume as resume
    from napari_unet.cli.predict_dask_outputs import _label_dtype, _pyramid, _targets
    from napari_unet.cli.predict_volume_measure import measure_stream, stream_measurements_target
    from napari_unet.cli.predict_zarr import _remove_store, labels_inside
    from napari_unet.core.io.marks import check_overwritable
    from napari_unet.core.io.ome_labels import register_labels

    tic = time.perf_counter()
    from napari_unet.distributed.volume_tasks import open_volume

    array, stated, physical = open_volume(path)
    layout = _layout(job, path, array, stated)
    label_dtype = _label_dtype(job)
    labels = None if label_dtype is None else job.post_config.output
    targets = _targets(job, job.args.out, stem, labels)
    inside = labels_inside(job, path, targets)
    for target in targets.values():  # the user's own files are never written into
        check_overwritable(target)
    table = stream_measurements_target(job, stem)  # --measure
    spec = _spec(job, path, layout, labels, targets, physical, resume.book_folder(job, stem))
    plan = resume.volume_plan(job, path, spec)
    if resume.already_complete(targets, plan):
        return f"ok {path} -> already complete ({', '.join(t.name for t in targets.values())})"
    fresh = [t for t in targets.values() if not (t.exists() or t.is_symlink())]
    try:
        job.args.out.mkdir(parents=True, exist_ok=True)
        resumed = resume.start_book(spec, plan, layout, _chunks(layout, spec.grid))
        _create_outputs(job, layout, spec.grid, targets, label_dtype)
        objects = _run(job, spec, path, bar)
        measured = [measure_stream(job, spec, physical, table)] if table else []
        for name, target in targets.items():
            _pyramid(target, name, layout, physical)
        resume.finish(spec, targets, plan)
        if inside is not None:
            register_labels(path, inside)
    except BaseException:
        if not resume.keep_for_resume(spec):  # nothing to resume: no half-written store left
            for target in fresh:
                _remove_store(target)
        raise
    blocks = int(np.prod(spec.grid.shape)) * spec.grid.n_volumes
    detail = f"{blocks} blocks ({'x'.join(map(str, spec.grid.shape))} per volume)"
    detail += f", {resumed} resumed" if resumed else ""
    if objects is not None:
        detail += f", {objects} objects"
    written = ", ".join([*(t.name for t in targets.values()), *measured])
    seconds = time.perf_counter() - tic
    return f"ok {path} -> {written} ({detail}, {seconds:.1f} s, streamed in 3-D)"
