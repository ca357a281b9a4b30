"""``predict --measure`` on a volume streamed block by block by a 3-D model.

Once every block's labels hold their global instance ids, the labels store is read back block by
block with the input voxels under each block, and
:class:`~napari_unet.core.postprocess.measure_stream.BlockMeasurements` keeps per-object sums,
so an object that spans several blocks is one row, and memory grows with one block and the
number of objects. The table (``STEM_measurements.csv``) has the columns and values of the
in-memory ``--measure`` of the same volume: volumes in voxels, and with ``--pixel-size`` (else
the voxel size the OME-Zarr store states) in physical units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import UserInputError

__all__ = ["check_stream_measure", "measure_stream", "stream_measurements_target"]


def check_stream_measure(job: Any, name: str) -> None:
    """Refuse ``--measure`` where a streamed table would need more than the instance ids.

    Raises:
        UserInputError: semantic labels (connected regions would need stitching) or instances of
            a multi-class model (their class needs the probabilities).
    """
    if not getattr(job.args, "measure", False):
        return
    info, post = job.loaded.info, job.post_config
    multi = info.task == "semantic" and info.out_channels > 2 and not post.foreground_class
    if post.output != "instances" or multi:
        raise UserInputError(
            f"--measure on a volume streamed block by block measures instances of one class; "
            f"{name} makes {'classes of objects' if multi else 'semantic labels'} here: use "
            "--labels instances (with --foreground-class for a multi-class model) or measure "
            "the labels store afterwards."
        )


def stream_measurements_target(job: Any, stem: str) -> Path | None:
    """``--out/STEM_measurements.csv`` (checked: never the user's own CSV), or None."""
    from napari_unet.cli.predict_measure import measurements_target
    from napari_unet.core.io.marks import check_overwritable

    target = measurements_target(job, stem)
    if target is not None:
        check_overwritable(target)
    return target


def _spacing(job: Any, physical: Any) -> tuple[float, ...] | None:
    """``--pixel-size`` (one or Z,Y,X values), else the store's stated voxel size, else None."""
    from napari_unet.cli.predict_measure import _spacing as pixel_size

    given = pixel_size(job, 3)
    if given is not None:
        return (float(given),) * 3 if np.isscalar(given) else tuple(given)
    if "Z" in physical.scale:
        return tuple(float(physical.scale.get(a, 1.0)) for a in "ZYX")
    return None


def measure_stream(job: Any, spec: Any, physical: Any, target: Path) -> str:
    """Measure the streamed labels of ``spec`` block by block into ``target``; its name."""
    from napari_unet.cli.predict_measure import _write
    from napari_unet.core.postprocess.measure_stream import BlockMeasurements
    from napari_unet.distributed.volume_tasks import _open, open_volume, read_window

    layout = spec.layout
    table = BlockMeasurements(
        layout.n_channels if "C" in layout.axes else 0,
        stack=any(a != "Z" for a in layout.stack_axes),
        spacing=_spacing(job, physical),
    )
    labels = _open(spec.outputs["labels"])
    array = open_volume(Path(spec.input_path))[0]
    readers: dict[int, Any] = {}
    for block in spec.grid.blocks():
        read = readers.setdefault(block.volume, read_window(spec, block.volume, array))
        block_labels = np.asarray(labels[spec.key(block.volume, block.spans)])
        origin = [a for a, _ in block.spans]
        table.add(block_labels, origin, read(block.spans), volume=block.volume)
    return _write(target, table.table(), job)
