"""``predict`` on a Zarr / OME-Zarr image: slice by slice, streamed into OME-Zarr outputs.

Memory grows with one 2-D slice (its tiles, probabilities and labels), never with the volume.
``--slices START:STOP`` limits a run to some slices (flat index over the Z/T stack), so cluster
jobs can share one volume: each writes its own slices of the same ``STEM_labels.zarr``.

Outputs (OME-NGFF v0.4, one resolution level, chunks one slice deep):

- ``STEM_labels.zarr``: (*stack, Y, X); semantic labels uint8/uint16, instance labels uint32
  numbered from 1 **in each slice** (the model is 2-D, so each slice's objects are its own);
- ``STEM_probabilities.zarr``: (K, *stack, Y, X) float16 (``--output probabilities|both``);
- ``STEM_restored.zarr``: (C, *stack, Y, X) float32 for restoration models.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import UserInputError

__all__ = ["parse_slices", "predict_zarr"]


def parse_slices(text: str) -> tuple[int | None, int | None]:
    """``"START:STOP"`` (either may be empty) or ``"N"`` (slice N only) -> (start, stop)."""
    try:
        if ":" not in text:
            index = int(text)
            return index, index + 1
        start, stop = text.split(":", 1)
        return (int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected START:STOP (e.g. 0:100) or one slice number, got {text!r}"
        ) from None


def _selected(n_slices: int, bounds: tuple[int | None, int | None] | None) -> range:
    if bounds is None:
        return range(n_slices)
    start, stop = bounds
    chosen = range(n_slices)[slice(start, stop)]
    if not chosen:
        raise UserInputError(
            f"--slices {start if start is not None else ''}:{stop if stop is not None else ''} "
            f"selects no slice of the {n_slices} in this image."
        )
    return chosen


def predict_zarr(job: Any, path: Path, stem: str, bar: Any) -> str:
    """Predict the Zarr image at ``path`` for ``job`` (a ``predict._Job``); its summary line."""
    from napari_unet.core.axes import StackLayout, check_axes, guess_axes
    from napari_unet.core.generators import run_to_end
    from napari_unet.core.lazy import iter_slices, slice_axes
    from napari_unet.core.postprocess import labels_from_probabilities
    from napari_unet.core.predict import iter_predict
    from napari_unet.core.zarr_io import open_zarr

    tic = time.perf_counter()
    args, info, model = job.args, job.loaded.info, job.loaded.model
    lazy = open_zarr(path)
    if args.axes:
        axes = check_axes(args.axes, lazy.shape)
    else:
        axes = guess_axes(lazy.shape, metadata_axes=lazy.axes)
    layout = StackLayout(axes=axes, shape=lazy.shape)
    chosen = _selected(layout.n_slices, args.slices)
    roi = job.roi
    if roi is not None and roi.shape != layout.yx_shape:
        raise UserInputError(
            f"--roi has shape {roi.shape}; a Zarr image takes a (Y, X) mask of {layout.yx_shape}."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    writers = _writers(job, layout, stem, info)
    per_slice_axes = slice_axes(axes)
    objects = 0
    for done, (index, plane) in enumerate(iter_slices(lazy.array, layout, chosen)):
        generator = iter_predict(
            model,
            plane,
            per_slice_axes,
            task=info.task,
            normalization=info.normalization_config(),
            config=job.predict_config,
        )
        probabilities = run_to_end(  # (K, Y, X)
            generator, lambda p, done=done: bar.update(path.name, (done + p.fraction) / len(chosen))
        )
        position = _position(layout, index)
        if "labels" in writers:
            labels = labels_from_probabilities(
                probabilities, task=info.task, config=job.post_config, roi=roi
            )
            writers["labels"][position] = labels
            objects = max(objects, int(labels.max()) if labels.size else 0)
        for name in ("probabilities", "restored"):
            if name in writers:  # channels first: (K, *stack, Y, X)
                target = writers[name]
                target[(slice(None), *position)] = probabilities.astype(target.dtype, copy=False)
    written = ", ".join(f"{stem}_{name}.zarr" for name in writers)
    kind = "objects per slice up to" if job.post_config.output == "instances" else "max class"
    detail = f"slices {chosen.start}..{chosen.stop - 1} of {layout.n_slices}"
    if "labels" in writers:
        detail += f", labels {layout.spatial_shape}, {kind} {objects}"
    seconds = time.perf_counter() - tic
    return f"ok {path} -> {written} ({detail}, {seconds:.1f} s)"


def _position(layout: Any, index: int) -> tuple:
    from napari_unet.core.lazy import stack_index

    return (*stack_index(layout, index), slice(None), slice(None))


def _writers(job: Any, layout: Any, stem: str, info: Any) -> dict[str, Any]:
    """The output arrays of this run by kind: ``labels``, ``probabilities`` (or restored)."""
    from napari_unet.core.marks import zarr_attributes
    from napari_unet.core.postprocess_ops import semantic_label_dtype
    from napari_unet.core.zarr_io import create_output

    out, output = job.args.out, job.args.output
    channels = int(job.loaded.model.out_channels)
    spatial, axes = layout.spatial_shape, layout.spatial_axes
    writers: dict[str, Any] = {}
    if info.task == "restoration":
        target = out / f"{stem}_restored.zarr"
        shape = (channels, *spatial)
        writers["restored"] = create_output(target, shape=shape, axes="C" + axes, dtype=np.float32)
        return writers
    if output in ("labels", "both"):
        if job.post_config.output == "instances":
            dtype = np.dtype(np.uint32)
        else:
            dtype = semantic_label_dtype(2 if info.task == "binary" else channels)
        writers["labels"] = create_output(
            out / f"{stem}_labels.zarr",
            shape=spatial,
            axes=axes,
            dtype=dtype,
            attributes=zarr_attributes(job.mark),
        )
    if output in ("probabilities", "both"):
        target = out / f"{stem}_probabilities.zarr"
        shape = (channels, *spatial)
        writers["probabilities"] = create_output(
            target, shape=shape, axes="C" + axes, dtype=np.float16
        )
    return writers
