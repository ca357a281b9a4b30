"""What a worker runs: measure slices, predict one block, rewrite one block's instance ids.

Every task takes a :class:`RunSpec` (paths and settings, small and picklable) and opens the
stores itself, so it runs on any worker that sees the same file system. A block writes its own
region of the outputs (chunks aligned to blocks) and only then its completion marker.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unet.core.inference.normalization import NormalizationConfig, NormalizationParams
from napari_unet.core.inference.prediction import PredictConfig
from napari_unet.core.io.axes import StackLayout, to_stack
from napari_unet.core.io.lazy import slice_axes, stack_index
from napari_unet.core.postprocess.labels import PostprocessConfig
from napari_unet.distributed.bookkeeping import BlockBook
from napari_unet.distributed.grid import DIRECTIONS, Block, BlockGrid
from napari_unet.distributed.stitch import BlockFaces, compact_ids

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """Everything a task needs (sent to the workers with every task; no arrays inside).

    Attributes:
        input_path: the Zarr image. axes: its axes. shape: its shape.
        checkpoint: the checkpoint file (the workers load it once each). device: per worker.
        task: the model's task. predict_config, normalization: as for ``iter_predict``.
        labels: ``"semantic"``, ``"instances"`` or None (no label output).
        post_config: how probabilities become labels (None without labels).
        outputs: output kind (``labels``, ``probabilities``, ``restored``) -> Zarr path.
        book: the marker folder (:mod:`.bookkeeping`). grid: the block grid.
    """

    input_path: str
    axes: str
    shape: tuple[int, ...]
    checkpoint: str
    device: str
    task: str
    predict_config: PredictConfig
    normalization: NormalizationConfig
    labels: str | None
    post_config: PostprocessConfig | None
    outputs: dict[str, str]
    book: str
    grid: BlockGrid

    @property
    def layout(self) -> StackLayout:
        return StackLayout(axes=self.axes, shape=self.shape)


def _input(run: RunSpec):
    from napari_unet.core.io.zarr_io import open_zarr

    return open_zarr(run.input_path).array


#: Slices with more pixels than this are measured on a strided subsample read from the store.
WHOLE_SLICE_PIXELS = 1 << 26


def slice_params(run: RunSpec, first: int, stop: int) -> list[NormalizationParams]:
    """Normalisation of slices ``first..stop-1``, as the single-process path measures them.

    A slice up to :data:`WHOLE_SLICE_PIXELS` is read whole. A bigger one (a large 2-D mosaic)
    is read as the regular strided subsample that :mod:`napari_unet.core.inference.normalization`
    takes of it anyway (every ``step``-th pixel in Y and X), so memory stays bounded and the
    percentiles are the same values; only a slice whose percentiles coincide then falls back to the
    subsample's range instead of the whole slice's.
    """
    from napari_unet.core.inference.normalization import (
        MAX_PERCENTILE_SAMPLES,
        normalization_params,
    )

    array, layout = _input(run), run.layout
    (size_y, size_x), step = layout.yx_shape, 1
    if size_y * size_x > WHOLE_SLICE_PIXELS:
        step = math.ceil((size_y * size_x / MAX_PERCENTILE_SAMPLES) ** 0.5)
        if -(-size_y // step) * -(-size_x // step) > MAX_PERCENTILE_SAMPLES:
            step = 1  # the core would subsample the subsample again: read it whole
    params = []
    for index in range(first, stop):
        read = _window_reader(array, layout, index, step=step)
        params.append(normalization_params(read((0, None), (0, None)), run.normalization))
    return params


def _window_reader(array, layout: StackLayout, index: int, *, step: int = 1):
    """``read((y0, y1), (x0, x1)) -> (C, h, w)`` pixels of slice ``index`` (every ``step``-th)."""
    position = dict(zip(layout.stack_axes, stack_index(layout, index), strict=True))
    per_slice = slice_axes(layout.axes)

    def read(ys: tuple[int, int | None], xs: tuple[int, int | None]) -> np.ndarray:
        spans = {"Y": slice(ys[0], ys[1], step), "X": slice(xs[0], xs[1], step)}
        key = tuple(position.get(a, spans.get(a, slice(None))) for a in layout.axes)
        return to_stack(np.asarray(array[key]), per_slice)[0][0]

    return read


def _position(layout: StackLayout, index: int, block: Block) -> tuple:
    return (*stack_index(layout, index), slice(*block.y), slice(*block.x))


def predict_block(
    run: RunSpec, block: Block, params: list[NormalizationParams], roi: np.ndarray | None
) -> BlockFaces | None:
    """Predict ``block``, write its outputs, mark it done; its face report (instances only).

    Args:
        params: normalisation of each of the block's slices (from :func:`slice_params`).
        roi: the (Y, X) region-of-interest crop of the block's padded region, or None.
    """
    from napari_unet.core.models.aux import labelling_net
    from napari_unet.distributed.block_predict import predict_region
    from napari_unet.distributed.model_cache import get_model
    from napari_unet.distributed.store import open_output

    book = BlockBook(run.book)
    if book.is_predicted(block.key):  # a retried task whose first run finished after all
        return book.load_predicted(block.key)
    cached = get_model(run.checkpoint, run.device, channels_last=run.predict_config.channels_last)
    # distance seeds: the distance channel rides along (K + 1) until the labels are made
    post = run.post_config if run.labels else None
    net, model = labelling_net(cached.net, post), labelling_net(cached.loaded.model, post)
    array, layout, grid = _input(run), run.layout, run.grid
    yx_shape = layout.yx_shape
    (py0, py1), (px0, px1) = grid.padded(block, yx_shape)
    core = (slice(block.y[0] - py0, block.y[1] - py0), slice(block.x[0] - px0, block.x[1] - px0))
    outputs = {name: open_output(path) for name, path in run.outputs.items()}
    instances = []
    for k, index in enumerate(range(*block.z)):
        probabilities = predict_region(
            net,
            model,
            _window_reader(array, layout, index),
            params[k],
            yx_shape=yx_shape,
            region=((py0, py1), (px0, px1)),
            task=run.task,
            config=run.predict_config,
            device=cached.device,
        )
        position = _position(layout, index, block)
        _write_slice(run, outputs, probabilities, position, core, roi, instances)
    faces = None
    if instances:
        faces = _write_instances(run, block, np.stack(instances), core)
    book.save_predicted(block.key, faces)
    return faces


def _write_slice(
    run: RunSpec,
    outputs: dict,
    probabilities: np.ndarray,
    position: tuple,
    core: tuple[slice, slice],
    roi: np.ndarray | None,
    instances: list[np.ndarray],
) -> None:
    """Write one slice's (K, h, w) ``probabilities`` (core crop) and semantic labels into
    ``outputs``; append its instance labels (ids after the previous slice's) to ``instances``."""
    from napari_unet.core.postprocess.blocks import stitched_instances
    from napari_unet.core.postprocess.labels import labels_from_probabilities
    from napari_unet.core.postprocess.ops import fill_holes_labels

    for name in ("probabilities", "restored"):
        if name in outputs:
            target = outputs[name]  # its channels: the classes (a distance channel dropped)
            crop = probabilities[(slice(0, target.shape[0]), *core)]
            target[(slice(None), *position)] = crop.astype(target.dtype, copy=False)
    if run.labels == "semantic":
        labels = labels_from_probabilities(
            probabilities, task=run.task, config=run.post_config, roi=roi
        )
        outputs["labels"][position] = labels[core]
    elif run.labels == "instances":
        labels = stitched_instances(probabilities, task=run.task, config=run.post_config)
        if run.post_config.fill_holes:
            fill_holes_labels(labels)
        if roi is not None:
            labels[~roi] = 0
        if instances:
            labels[labels > 0] += max(int(instances[-1].max()), 0)
        instances.append(labels)


def _write_instances(
    run: RunSpec, block: Block, labels: np.ndarray, core: tuple[slice, slice]
) -> BlockFaces:
    """Compact the block's ids, write its core to the scratch store, report its faces."""
    from napari_unet.distributed.store import open_output

    grid = run.grid
    full_core = (slice(None), *core)
    labels, n_ids = compact_ids(labels, full_core)
    core_labels = labels[full_core]
    counts = np.bincount(core_labels.ravel(), minlength=n_ids + 1)[: n_ids + 1].astype(np.int64)
    py0 = block.y[0] - core[0].start
    px0 = block.x[0] - core[1].start
    outer, inner = {}, {}
    for direction in DIRECTIONS:
        other = grid.neighbour(block, direction)
        if other is None:
            continue
        back = (-direction[0], -direction[1])
        (ay0, ay1), (ax0, ax1) = grid.face_band(other, back)
        outer[direction] = labels[:, ay0 - py0 : ay1 - py0, ax0 - px0 : ax1 - px0].copy()
        (by0, by1), (bx0, bx1) = grid.face_band(block, direction)
        inner[direction] = labels[:, by0 - py0 : by1 - py0, bx0 - px0 : bx1 - px0].copy()
    scratch = open_output(Path(run.book) / "scratch.zarr")
    scratch[block.z[0] : block.z[1], block.y[0] : block.y[1], block.x[0] : block.x[1]] = core_labels
    return BlockFaces(n_ids=n_ids, counts=counts, outer=outer, inner=inner)


def relabel_block(run: RunSpec, block: Block, lut: np.ndarray, tag: str) -> int:
    """Write ``lut[provisional ids]`` of ``block`` into the labels output; mark it; its objects."""
    from napari_unet.distributed.store import open_output

    book = BlockBook(run.book)
    if not book.is_relabelled(block.key, tag):
        scratch = open_output(Path(run.book) / "scratch.zarr")
        target = open_output(run.outputs["labels"])
        provisional = np.asarray(
            scratch[block.z[0] : block.z[1], block.y[0] : block.y[1], block.x[0] : block.x[1]]
        )
        final = lut[provisional]
        for k, index in enumerate(range(*block.z)):
            target[_position(run.layout, index, block)] = final[k]
        book.mark_relabelled(block.key, tag)
    return int(np.count_nonzero(lut))
