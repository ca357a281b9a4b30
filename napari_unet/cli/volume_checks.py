"""Checks of 3-D training data that need no pixels or only the masks: memory and annotation.

- :func:`check_memory`: refuse before reading when the volumes (with their float32 copy, targets
  and weights) would not fit in the free memory; the sentence says to crop to the annotated region.
- :func:`check_sparse_annotation`: refuse annotation that lies in one plane (a single Z, Y or X
  slice), from which a 3-D model learns nothing across slices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Share of the free memory the volumes of one run may take.
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of free memory (psutil, else ``/proc/meminfo``), None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _file_shape(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of a TIFF's first series without reading its pixels (None: not a TIFF)."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return tuple(series.shape), np.dtype(series.dtype)
    except (OSError, ValueError, IndexError, tifffile.TiffFileError):
        return None  # read_image says what is wrong with the file


def check_memory(paths: list[Path]) -> None:
    """Refuse before reading when the volumes, their targets and weights would not fit in memory.

    Raises:
        UserInputError: The estimate exceeds :data:`MEMORY_SHARE` of the free memory.
    """
    from napari_unet.core.errors import UserInputError

    free = available_memory()
    if free is None:
        return
    needed = 0
    for path in paths:
        found = _file_shape(path)
        if found is not None:
            shape, dtype = found
            # raw + float32 copy of the image, labels, int64 classes, float32 weights, mask
            needed += int(np.prod(shape, dtype=np.int64)) * (dtype.itemsize + 4 + 8 + 8 + 4 + 1)
    if needed > MEMORY_SHARE * free:
        raise UserInputError(
            f"training on these volumes needs about {needed / 2**30:.1f} GiB of memory but only "
            f"{free / 2**30:.1f} GiB is free; crop the volumes to the annotated region (training "
            "only learns near annotated voxels) or train on a machine with more memory."
        )


def annotated_planes(mask: np.ndarray) -> list[int]:
    """Per axis (Z, Y, X), how many distinct planes hold annotated voxels."""
    return [
        int(np.count_nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))))
        for axis in range(3)
    ]


def check_sparse_annotation(items: list, ignore_value: int | None) -> None:
    """Refuse annotation that lies in one plane: a 3-D model learns nothing across it.

    Raises:
        TrainingDataError: every annotated voxel of every volume lies in a single Z, Y or X plane.
    """
    from napari_unet.core.errors import TrainingDataError

    planes = []
    for item in items:
        mask = item.mask
        if ignore_value is not None:
            mask = mask & (np.asarray(item.labels) != ignore_value)
        if mask.any():
            planes.append(annotated_planes(mask))
    if planes and all(min(p) == 1 for p in planes):
        axis = "ZYX"[int(np.argmin(planes[0]))]
        raise TrainingDataError(
            f"the annotation lies in one slice only (a single {axis} plane), so a 3-D model "
            "cannot learn across slices; annotate a few more slices (e.g. 3 spread through the "
            "volume, any orientation) or train a 2-D model (--model unet) on this slice."
        )


def predict_memory(path: Path, out_channels: int) -> tuple[int, int] | None:
    """``(bytes needed, bytes free)`` to predict a TIFF volume in memory (None: unknown)."""
    free, found = available_memory(), _file_shape(Path(path))
    if free is None or found is None:
        return None
    shape, dtype = found
    return int(np.prod(shape, dtype=np.int64)) * (dtype.itemsize + 4 * out_channels + 4), free


def stream_if_too_large(path: Path, out_channels: int) -> bool:
    """True when a TIFF volume's 3-D prediction would not fit in memory: it is then streamed
    block by block through tifffile's Zarr interface (outputs as OME-Zarr), never read whole."""
    import logging

    found = predict_memory(path, out_channels)
    if found is None or found[0] <= MEMORY_SHARE * found[1]:
        return False
    needed, free = found
    logging.getLogger(__name__).warning(
        "%s: predicting it in memory needs about %.1f GiB but %.1f GiB is free; streaming it "
        "block by block instead (outputs as OME-Zarr)",
        Path(path).name,
        needed / 2**30,
        free / 2**30,
    )
    return True


def check_predict_memory(path: Path, out_channels: int, *, model_name: str) -> None:
    """Refuse, before reading, a TIFF volume whose 3-D prediction would not fit in memory.

    (``predict`` streams such a volume instead, see :func:`stream_if_too_large`; kept for
    callers that need the whole volume in memory.)

    Raises:
        UserInputError: The estimate exceeds :data:`MEMORY_SHARE` of the free memory.
    """
    from napari_unet.core.errors import UserInputError

    found = predict_memory(path, out_channels)
    if found is None or found[0] <= MEMORY_SHARE * found[1]:
        return
    needed, free = found
    raise UserInputError(
        f"predicting {Path(path).name} with the 3-D model {model_name} needs about "
        f"{needed / 2**30:.1f} GiB of memory but only {free / 2**30:.1f} GiB is free; "
        f"predict it streamed from disk instead: napari-unet-loop predict {Path(path).name} "
        "--model MODEL (a TIFF this large, or a Zarr store, is predicted block by block)."
    )
