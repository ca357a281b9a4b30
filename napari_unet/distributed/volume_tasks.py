"""One block of a 3-D model's streamed prediction: predict, post-process, write, report faces.

The same functions run in the ``predict`` process (a Zarr volume streamed block by block) and
on dask workers (``--dask``): every task takes a :class:`VolumeRunSpec` (paths and settings,
small and picklable) and opens the stores itself. A block writes its core into the outputs
(chunks never shared by two blocks); instance ids are written block-local (``1..n``) and
rewritten with global ids by :func:`relabel_volume_block` once the faces are linked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.inference.normalization import NormalizationConfig, NormalizationParams
from napari_unet.core.inference.prediction import PredictConfig
from napari_unet.core.io.axes import StackLayout, to_stack
from napari_unet.core.postprocess.config import PostprocessConfig
from napari_unet.distributed.bookkeeping import BlockBook
from napari_unet.distributed.stitch import BlockFaces, compact_ids
from napari_unet.distributed.volume_grid import DIRECTIONS_3D, VolumeBlock, VolumeGrid


@dataclass(frozen=True)
class VolumeRunSpec:
    """Everything a block needs (no arrays inside).

    Attributes:
        input_path, axes, shape: the Zarr image. checkpoint, device: the model (dask workers).
        task, predict_config, normalization: as for ``iter_predict``.
        labels: ``"semantic"``, ``"instances"`` or None. post_config: how labels are made.
        spacing: voxel size ``(z, y, x)`` of 3-D instances. outputs: kind -> Zarr path.
        grid: the block grid. book: the resume folder (:class:`.bookkeeping.BlockBook`): a
            block is marked there once written, instance ids go to its scratch store until
            relabelled; None: no resume (ids rewritten in place).
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
    spacing: tuple[float, float, float]
    outputs: dict[str, str]
    grid: VolumeGrid
    book: str | None = None

    @property
    def layout(self) -> StackLayout:
        return StackLayout(axes=self.axes, shape=self.shape)

    def position(self, volume: int, spans) -> dict[str, object]:
        """Index per stack axis letter of ``volume``'s Z/Y/X ``spans`` (slices)."""
        layout = self.layout
        others = [a for a in layout.stack_axes if a != "Z"]
        sizes = [layout.shape[layout.axes.index(a)] for a in others]
        index = np.unravel_index(volume, sizes) if others else ()
        found: dict[str, object] = {a: int(i) for a, i in zip(others, index)}
        found.update(zip("ZYX", (slice(*s) for s in spans)))
        return found

    def key(self, volume: int, spans, *, channels: bool = False) -> tuple:
        """The index of a block's spans in an output (``channels``: ``C`` first)."""
        position = self.position(volume, spans)
        key = tuple(position[a] for a in self.layout.spatial_axes)
        return (slice(None), *key) if channels else key


def open_volume(path: Path) -> tuple[Any, str | None, Any]:
    """``(array, stated axes or None, Physical)`` of a Zarr store or a TIFF, without reading it."""
    from napari_unet.core.io.tiff import _map_tiff_axes
    from napari_unet.core.io.zarr_io import Physical, is_zarr, open_zarr

    if is_zarr(path):
        lazy = open_zarr(path)
        return lazy.array, lazy.axes, lazy.physical
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tif:
        axes = _map_tiff_axes(tif.series[0].axes)
    array = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    if axes is not None and len(axes) != array.ndim:
        axes = None
    return array, axes, Physical.none()


def _open(path: str):
    from napari_unet.core.io.zarr_io import _zarr

    return _zarr().open_group(store=str(path), mode="r+")["0"]


def read_window(run: VolumeRunSpec, volume: int, array=None):
    """``read(((z0, z1), (y0, y1), (x0, x1))) -> (C, d, h, w)`` raw voxels of ``volume``."""
    array = open_volume(Path(run.input_path))[0] if array is None else array
    layout = run.layout
    kept = "".join(a for a in layout.axes if a in "ZCYX")

    def read(spans) -> np.ndarray:
        position = run.position(volume, spans)
        key = tuple(position.get(a, slice(None)) for a in layout.axes)
        stack, _ = to_stack(np.asarray(array[key]), kept)  # (Z, C, Y, X)
        return stack.transpose(1, 0, 2, 3)

    return read


def volume_params(run: VolumeRunSpec, volume: int) -> NormalizationParams:
    """The normalisation of ``volume``, measured as the in-memory path does (bounded reads)."""
    from napari_unet.core.inference.volume_blocks import lazy_volume_params

    read = read_window(run, volume)
    depth, height, width = run.grid.volume_shape

    def plane(z: int, ys: slice, xs: slice) -> np.ndarray:
        spans = ((z, z + 1), (0, height), (0, width))
        return read(spans)[:, 0, ys, xs]

    channels = run.layout.n_channels
    return lazy_volume_params(plane, (channels, depth, height, width), run.normalization)


def predict_volume_block(
    run: VolumeRunSpec,
    block: VolumeBlock,
    predictor,
    model,
    params: NormalizationParams,
    roi: np.ndarray | None = None,
) -> BlockFaces | None:
    """Predict ``block`` (core plus halo), write its core into the outputs; its faces.

    Args:
        predictor: the activated tile predictor of ``model``; params: the volume's normalisation.
        roi: ``(Y, X)`` crop of the region of interest over the block's padded Y/X, or None.
    """
    from napari_unet.core.inference.volume_blocks import predict_volume_region

    grid = run.grid
    padded = grid.padded(block)
    probabilities = predict_volume_region(
        predictor,
        model,
        read_window(run, block.volume),
        params,
        volume_shape=grid.volume_shape,
        region=padded,
        config=run.predict_config,
    )
    core = tuple(slice(a - p, b - p) for (a, b), (p, _) in zip(block.spans, padded))
    for name in ("probabilities", "restored"):
        if name in run.outputs:
            target = _open(run.outputs[name])
            crop = probabilities[(slice(None), *core)].astype(target.dtype, copy=False)
            target[run.key(block.volume, block.spans, channels=True)] = crop
    faces = _write_labels(run, block, probabilities, roi, core, padded) if run.labels else None
    if run.book is not None:  # the block is complete: a rerun skips it
        BlockBook(run.book).save_predicted(block.key, faces)
    return faces


def _write_labels(run, block, probabilities, roi, core, padded) -> BlockFaces | None:
    labels = _block_labels(run, probabilities, roi)
    if run.labels == "semantic":
        _open(run.outputs["labels"])[run.key(block.volume, block.spans)] = labels[core]
        return None
    return _instance_faces(run, block, labels, core, padded)


def _block_labels(run: VolumeRunSpec, probabilities: np.ndarray, roi) -> np.ndarray:
    """Semantic labels (3-D ``min_size`` within the halo) or raw 3-D instance ids."""
    from napari_unet.core.postprocess.volume import instances_3d, volume_labels

    config = run.post_config
    if run.labels == "semantic":
        return volume_labels(probabilities, task=run.task, config=config, roi=roi)
    return instances_3d(
        probabilities,
        spacing=run.spacing,
        config=config.replace(min_size=0),  # applied to stitched objects
        task=run.task,
        roi=roi,
    ).astype(np.uint32)


def _instance_faces(run, block, labels, core, padded) -> BlockFaces:
    """Compact the block's ids, write its core (block-local ids), report its faces."""
    grid = run.grid
    labels, n_ids = compact_ids(labels, core)
    core_labels = labels[core]
    counts = np.bincount(core_labels.ravel(), minlength=n_ids + 1)[: n_ids + 1].astype(np.int64)
    origin = [p for p, _ in padded]

    def cut(spans) -> np.ndarray:
        return labels[tuple(slice(a - o, b - o) for (a, b), o in zip(spans, origin))].copy()

    outer, inner = {}, {}
    for direction in DIRECTIONS_3D:
        other = grid.neighbour(block, direction)
        if other is not None:
            outer[direction] = cut(grid.face_band(other, tuple(-d for d in direction)))
            inner[direction] = cut(grid.face_band(block, direction))
    provisional = run.outputs["labels"] if run.book is None else BlockBook(run.book).scratch
    _open(provisional)[run.key(block.volume, block.spans)] = core_labels
    return BlockFaces(n_ids=n_ids, counts=counts, outer=outer, inner=inner)


def relabel_volume_block(
    run: VolumeRunSpec, block: VolumeBlock, lut: np.ndarray, tag: str = ""
) -> None:
    """Write ``lut[block-local ids]`` (global ids) of ``block`` into the labels output.

    With a resume folder the block-local ids are read from its scratch store and the block is
    marked relabelled with ``tag`` (the look-up tables' digest), so a rerun never applies a
    table twice; without one they are rewritten in place."""
    target = _open(run.outputs["labels"])
    key = run.key(block.volume, block.spans)
    if run.book is None:
        target[key] = lut[np.asarray(target[key])]
        return
    book = BlockBook(run.book)
    if not book.is_relabelled(block.key, tag):
        target[key] = lut[np.asarray(_open(book.scratch)[key])]
        book.mark_relabelled(block.key, tag)
