"""``predict`` on a Zarr / OME-Zarr image: slice by slice, streamed into OME-Zarr outputs.

Memory grows with one 2-D slice (its tiles, probabilities and labels), never with the volume.
``--slices START:STOP`` limits a run to some slices (flat index over the Z/T stack), so cluster
jobs can share one volume: each writes its own slices of the same ``STEM_labels.zarr``.

Outputs (OME-NGFF v0.4, chunks one slice deep; with ``ome-zarr`` installed a multiscale pyramid --
Y/X halved per level, each slice's levels written with it so ``--slices`` shares stay independent --
and the input's physical pixel sizes, written by ome-zarr-py; one level without it):

- ``STEM_labels.zarr``: (*stack, Y, X); semantic labels uint8/uint16, instance labels uint32
  numbered from 1 **in each slice** (the model is 2-D, so each slice's objects are its own);
- ``STEM_probabilities.zarr``: (K, *stack, Y, X) float16 (``--output probabilities|both``);
- ``STEM_restored.zarr``: (C, *stack, Y, X) float32 for restoration models.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import UserInputError

__all__ = ["parse_slices", "predict_zarr", "write_output"]

logger = logging.getLogger(__name__)


def write_output(target: Path, write: Any) -> str:
    """``write(target)`` (creating ``--out`` first); an ``OSError`` becomes one clear sentence.

    Returns:
        The name of the written file.

    Raises:
        UserInputError: the output folder is full, read-only or otherwise not writable; the
            message names ``target`` and the cause, never a temporary file.
    """
    from napari_unet.core.io.images import write_error

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write(target)
    except OSError as err:
        raise write_error(target, err) from None
    return target.name


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
    from napari_unet.cli.predict_context import open_lazy
    from napari_unet.cli.predict_measure import SliceMeasurements, measurements_target
    from napari_unet.core.io.axes import StackLayout, check_axes, guess_axes
    from napari_unet.core.io.lazy import slice_axes
    from napari_unet.core.io.marks import check_overwritable
    from napari_unet.core.io.ome_labels import register_labels

    tic = time.perf_counter()
    args, info = job.args, job.loaded.info
    lazy = open_lazy(path)  # a Zarr store, or a TIFF too large for memory (2.5-D)
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
    targets = job.targets(stem, ".zarr")
    inside = labels_inside(job, path, targets)
    measurements = measurements_target(job, stem)
    for target in [*targets.values(), measurements]:  # the user's own files are never written into
        if target is not None:
            check_overwritable(target)
    fresh = [t for t in targets.values() if not (t.exists() or t.is_symlink())]
    if inside is not None and not (path / "labels").exists():
        fresh.append(path / "labels")  # made by this run: removed with its labels on failure
    try:
        writers = _writers(job, layout, targets, info, lazy.physical)
        table = None
        if measurements is not None:
            table = SliceMeasurements(job, measurements, slice_axes(layout.axes))
        objects = _fill(job, path, lazy, layout, chosen, writers, targets, roi, bar, table)
        if inside is not None:
            register_labels(path, inside)
    except BaseException:
        # What this run created is removed (a failed write leaves no half-written store), unless
        # cluster jobs (--slices) may be filling it too.
        if args.slices is None:
            for target in fresh:
                _remove_store(target)
        raise
    written = ", ".join(target.name for target in targets.values())
    if table is not None:
        written += ", " + table.write()
    kind = "objects per slice up to" if job.post_config.output == "instances" else "max class"
    detail = f"slices {chosen.start}..{chosen.stop - 1} of {layout.n_slices}"
    if "labels" in writers:
        detail += f", labels {layout.spatial_shape}, {kind} {objects}"
    seconds = time.perf_counter() - tic
    return f"ok {path} -> {written} ({detail}, {seconds:.1f} s)"


def labels_inside(job: Any, image: Path, targets: dict[str, Path]) -> str | None:
    """With ``--labels-in-image``, point ``targets["labels"]`` into ``image``; the label name.

    Raises:
        UserInputError: the image cannot take labels (see
            :func:`~napari_unet.core.io.ome_labels.labels_in_image`).
    """
    from napari_unet.core.io.ome_labels import label_name, labels_in_image

    if not getattr(job.args, "labels_in_image", False) or "labels" not in targets:
        return None
    name = label_name(job.mark.model)
    target = labels_in_image(image, name)
    if target is None:  # not OME-Zarr: a sibling store in --out
        return None
    targets["labels"] = target
    return name


def _fill(job, path, lazy, layout, chosen, writers, targets, roi, bar, table=None) -> int:
    """Predict the ``chosen`` slices into ``writers``; the most objects (or classes) in a slice.

    ``table`` (a :class:`~napari_unet.cli.predict_measure.SliceMeasurements`) measures each slice.
    """
    from napari_unet.cli.predict_context import context_plane
    from napari_unet.core.generators import run_to_end
    from napari_unet.core.inference.prediction import iter_predict
    from napari_unet.core.io.images import write_error
    from napari_unet.core.io.lazy import iter_slices, slice_axes
    from napari_unet.core.io.ome_pyramid import write_plane
    from napari_unet.core.models.aux import classes_only, labelling_net
    from napari_unet.core.postprocess.labels import labels_from_probabilities

    info, model = job.loaded.info, job.loaded.model
    per_slice_axes = slice_axes(layout.axes)
    # distance seeds: the model's distance channel rides along until the labels are made
    net = labelling_net(model, job.post_config if "labels" in writers else None)
    objects = 0
    for done, (index, plane) in enumerate(iter_slices(lazy.array, layout, chosen)):
        given, given_axes = context_plane(model, lazy, layout, index, plane, per_slice_axes)
        generator = iter_predict(
            net,
            given,
            given_axes,
            task=info.task,
            normalization=info.normalization_config(),
            config=job.predict_config,
        )
        probabilities = run_to_end(  # (K, Y, X); K + 1 with the distance channel
            generator,
            lambda p, done=done: bar.update(path.name, (done + p.fraction) / len(chosen)),
        )
        position = _position(layout, index)
        results: dict[str, np.ndarray] = {}
        if "labels" in writers:
            results["labels"] = labels_from_probabilities(
                probabilities, task=info.task, config=job.post_config, roi=roi
            )
            probabilities = classes_only(probabilities, model)  # the classes from here on
            labels = results["labels"]
            objects = max(objects, int(labels.max()) if labels.size else 0)
            if table is not None:
                table.add(index, labels, plane, probabilities)
        for name, levels in writers.items():
            key = position if name == "labels" else (slice(None), *position)  # channels first
            value = results.get(name, probabilities).astype(levels[0].dtype, copy=False)
            try:
                write_plane(levels, key, value, labels=name == "labels")
            except OSError as err:
                raise write_error(targets[name], err) from None
    return objects


def _position(layout: Any, index: int) -> tuple:
    from napari_unet.core.io.lazy import stack_index

    return (*stack_index(layout, index), slice(None), slice(None))


def _writers(
    job: Any, layout: Any, targets: dict[str, Path], info: Any, physical: Any
) -> dict[str, list[Any]]:
    """The output arrays (every pyramid level, full resolution first) of this run by kind
    (``labels``, ``probabilities`` or ``restored``)."""
    from napari_unet.core.io.marks import zarr_attributes, zarr_output_attributes
    from napari_unet.core.io.ome_pyramid import create_pyramid_output
    from napari_unet.core.postprocess.ops import semantic_label_dtype

    channels = int(job.loaded.model.out_channels)
    spatial, axes = layout.spatial_shape, layout.spatial_axes
    writers: dict[str, Any] = {}
    for kind, target in targets.items():
        if kind == "labels":
            if job.post_config.output == "instances":
                dtype = np.dtype(np.uint32)
            else:
                dtype = semantic_label_dtype(2 if info.task == "binary" else channels)
            shape, kind_axes, attributes = spatial, axes, zarr_attributes(job.mark)
        else:  # channels first: (K, *stack, Y, X)
            dtype = np.dtype(np.float32 if kind == "restored" else np.float16)
            shape, kind_axes = (channels, *spatial), "C" + axes
            attributes = zarr_output_attributes(kind, job.mark.model)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            writers[kind] = create_pyramid_output(
                target,
                shape=shape,
                axes=kind_axes,
                dtype=dtype,
                physical=physical,
                labels=kind == "labels",
                attributes=attributes,
            )
        except OSError as err:
            from napari_unet.core.io.images import write_error

            raise write_error(target, err) from None
    return writers


def _remove_store(target: Path, *, tries: int = 50, pause_s: float = 0.02) -> None:
    """Remove a store this run created, also when writes still in flight recreate parts of it.

    zarr writes chunks from a pool of threads: when one write fails (a full disk), others may
    still create chunk folders for a moment after a first ``rmtree``, so it is repeated until the
    store is gone (a bounded wait, about a second at most).
    """
    for _ in range(tries):
        shutil.rmtree(target, ignore_errors=True)
        if not (target.exists() or target.is_symlink()):
            return
        time.sleep(pause_s)
    logger.warning("could not remove %s completely; delete it by hand", target)
