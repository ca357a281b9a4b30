"""``predict ... --measure``: a per-object table ``<stem>_measurements.csv`` beside the labels.

One row per object (:func:`napari_unet.core.postprocess.measure.measure_objects`): id, class,
area (physical with ``--pixel-size``), centroid, bounding box, mean/min/max intensity per channel
of the input image. A TIFF/PNG input is measured whole (a Z stack as a volume, T/S stacks per
slice); a Zarr input is measured slice by slice while it streams (its instance ids are per slice),
with a ``slice`` column; a volume streamed by a 3-D model is measured block by block as one
volume (:mod:`napari_unet.cli.predict_volume_measure`). The CSV starts with the comment line
that marks it as written by ``predict`` (:data:`napari_unet.core.io.marks.CSV_PREFIX`): a rerun
replaces it, but a CSV of the same name without it (the user's) is never overwritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import UserInputError

__all__ = [
    "SliceMeasurements",
    "add_measure_arguments",
    "check_measure",
    "measure_labels",
    "measurements_target",
]


def _pixel_size(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2, 3) or min(values) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected N, Y,X or Z,Y,X (positive sizes, e.g. 0.65 or 2,0.65,0.65), got {text!r}"
        )
    return values


def add_measure_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--measure`` and ``--pixel-size`` to the ``predict`` parser."""
    parser.add_argument(
        "--measure",
        action="store_true",
        help="also write STEM_measurements.csv: one row per object (area, centroid, bounding box, "
        "mean/min/max intensity per channel, class)",
    )
    parser.add_argument(
        "--pixel-size",
        type=_pixel_size,
        metavar="N|Y,X|Z,Y,X",
        help="pixel (voxel) size: physical area/volume and centroids for --measure, and the "
        "voxel size a 3-D model's instance watershed uses (default: the model's, else 1)",
    )


def check_measure(args: argparse.Namespace, task: str, *, volumetric: bool = False) -> None:
    """Refuse ``--measure`` where there are no labels to measure (before any file is predicted);
    ``volumetric``: a 3-D model, whose ``--dask`` labels are measured block by block."""
    if not getattr(args, "measure", False):
        return
    if task == "restoration":
        raise UserInputError("--measure needs labels, but a restoration model makes none.")
    if args.output == "probabilities":
        raise UserInputError("--measure needs labels: use --output labels or both.")
    if getattr(args, "dask", None) and not volumetric:
        raise UserInputError(
            "--measure is not available with --dask; predict without --dask (Zarr inputs are "
            "measured slice by slice) or measure the labels afterwards."
        )


def measurements_target(job: Any, stem: str) -> Path | None:
    """``--out/<stem>_measurements.csv`` (``..._<start>-<stop>.csv`` for ``--slices``), or None."""
    if not getattr(job.args, "measure", False):
        return None
    bounds = job.args.slices
    if bounds is None:
        return job.args.out / f"{stem}_measurements.csv"
    start, stop = ("" if b is None else str(b) for b in bounds)
    return job.args.out / f"{stem}_measurements_{start}-{stop}.csv"


def _spacing(job: Any, n_measured: int) -> float | tuple[float, ...] | None:
    """``--pixel-size`` for the measured axes (a Z value is dropped when slices are measured)."""
    size = getattr(job.args, "pixel_size", None)
    if size is None or len(size) == 1:
        return None if size is None else size[0]
    if len(size) < n_measured:
        raise UserInputError(
            f"--pixel-size has {len(size)} values but the objects have {n_measured} axes; give "
            f"{n_measured} values (Z,Y,X) or one for all."
        )
    return tuple(size[-n_measured:])


def _class_info(job: Any, probabilities: np.ndarray | None) -> dict[str, Any]:
    """``output``, ``class_names`` and (instances of a multi-class model) the class map."""
    from napari_unet.core.postprocess.labels import semantic_labels

    info, post = job.loaded.info, job.post_config
    if post.output == "semantic":
        return {"output": "semantic", "class_names": list(info.class_names)}
    multi = info.task == "semantic" and info.out_channels > 2 and not post.foreground_class
    if multi and probabilities is not None:
        semantic = semantic_labels(
            probabilities, task=info.task, config=post.replace(output="semantic", min_size=0)
        )
        return {"semantic": semantic, "class_names": list(info.class_names)}
    return {}


def measure_labels(
    job: Any, target: Path, labels: np.ndarray, image: np.ndarray, axes: str, probabilities: Any
) -> str:
    """Measure a whole TIFF/PNG prediction and write ``target``; the written file name.

    Args:
        labels: (*spatial) labels as written.
        image: the input image with ``axes`` (channels anywhere).
        axes: the image's axes; the labels' are its stack axes then ``YX``.
        probabilities: (K, *spatial), for the class of instances of a multi-class model.
    """
    from napari_unet.core.postprocess.measure import PER_SLICE_AXES, measure_objects

    spatial_axes = "".join(a for a in axes if a in "TZS") + "YX"
    order = [axes.index(a) for a in spatial_axes] + ([axes.index("C")] if "C" in axes else [])
    n_measured = len([a for a in spatial_axes if a not in PER_SLICE_AXES])
    table = measure_objects(
        labels,
        np.transpose(image, order),
        axes=spatial_axes,
        spacing=_spacing(job, n_measured),
        **_class_info(job, probabilities),
    )
    return _write(target, table, job)


def _write(target: Path, table: dict[str, np.ndarray], job: Any) -> str:
    """Write the CSV atomically; its name (a full or read-only disk -> one sentence)."""
    from napari_unet.core.io.images import write_error
    from napari_unet.core.postprocess.measure import write_measurements_csv

    source = {"model": job.mark.model, "output": job.post_config.output}
    try:
        write_measurements_csv(target, table, source=source)
    except OSError as err:
        raise write_error(target, err) from None
    return target.name


class SliceMeasurements:
    """The rows of a Zarr prediction, gathered slice by slice (only the table stays in memory)."""

    def __init__(self, job: Any, target: Path, per_slice_axes: str) -> None:
        self.job, self.target, self.axes = job, target, per_slice_axes
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, index: int, labels: np.ndarray, plane: np.ndarray, probabilities: Any) -> None:
        """Measure slice ``index``: ``labels`` (Y, X), ``plane`` with :attr:`axes` (C?, Y, X)."""
        from napari_unet.core.postprocess.measure import measure_objects

        order = [self.axes.index("Y"), self.axes.index("X")]
        order += [self.axes.index("C")] if "C" in self.axes else []
        table = measure_objects(
            labels,
            np.transpose(np.asarray(plane), order),
            axes="YX",
            spacing=_spacing(self.job, 2),
            **_class_info(self.job, probabilities),
        )
        n = len(table["label"])
        self.parts.append({"slice": np.full(n, index, dtype=np.int64), **table})

    def write(self) -> str:
        """Write the CSV (atomically); its name."""
        names = list(self.parts[0]) if self.parts else ["slice", "label"]
        table = {
            name: np.concatenate([p[name] for p in self.parts])
            if self.parts
            else np.zeros(0, dtype=np.int64)
            for name in names
        }
        return _write(self.target, table, self.job)
