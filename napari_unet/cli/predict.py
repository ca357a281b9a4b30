"""``napari-unet-loop predict IMAGE... --model NAME_OR_CHECKPOINT --out DIR``: segment image files.

Per input ``<stem>`` it writes ``<stem>_labels.tif`` and/or ``<stem>_probabilities.tif`` (float16,
channel axis first) into ``--out``; a restoration model writes ``<stem>_restored.tif``. A failing
file gets one ``FAILED <file>: <reason>`` line on stderr and the others are still processed; the
exit status is 1 if any file failed. Folders given as IMAGE are expanded to their TIFF/PNG files
and Zarr sub-folders. A Zarr / OME-Zarr image is predicted slice by slice into ``<stem>_*.zarr``
outputs with bounded memory (:mod:`napari_unet.cli.predict_zarr`; ``--slices`` for cluster jobs).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from napari_unet.cli._progress import FileProgress, bar_safe_logging
from napari_unet.cli.predict_args import OUTPUTS, add_predict_arguments
from napari_unet.cli.predict_dask import add_dask_arguments
from napari_unet.cli.predict_job import _Job, info_arch
from napari_unet.cli.predict_measure import add_measure_arguments, check_measure

__all__ = ["COMPANION_SUFFIXES", "OUTPUTS", "_Job", "add_parser", "info_arch", "run"]

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``predict``."""
    parser = subparsers.add_parser(
        "predict",
        help="segment image files with a model",
        description=(
            "Segment image files. Per input STEM it writes STEM_labels.tif and/or "
            "STEM_probabilities.tif (float16, channel axis first) into --out; a restoration "
            "model writes STEM_restored.tif. A Zarr / OME-Zarr input is predicted slice by slice "
            "into STEM_labels.zarr (etc.) with bounded memory. A failing file gets one "
            "'FAILED FILE: reason' line on stderr, the others are still processed, and the exit "
            "status is then 1."
        ),
    )
    add_predict_arguments(parser)
    add_dask_arguments(parser)
    add_measure_arguments(parser)
    parser.set_defaults(run=run)
    return parser


#: Name endings (after the image's stem) of files that belong to an image rather than being one.
COMPANION_SUFFIXES: tuple[str, ...] = ("_labels", "_probabilities")


def _companion_of(path: Path, stems: set[str]) -> str | None:
    """The stem of the image ``path`` (``<stem>_labels.*``, ...) belongs to, if in ``stems``."""
    from napari_unet.core.io.images import image_stem

    stem = image_stem(path)
    for suffix in COMPANION_SUFFIXES:
        if stem.endswith(suffix) and stem[: -len(suffix)] in stems:
            return stem[: -len(suffix)]
    return None


def _expand_inputs(images: list[str]) -> list[Path]:
    """Files and Zarr folders as given; other folders -> their images and Zarr sub-folders.

    In a folder, a ``<stem>_labels.*`` or ``<stem>_probabilities.*`` file whose ``<stem>`` image
    is in the same folder is an annotation or an output, not an image: it is never predicted
    (marked or not). Outputs an earlier ``predict`` wrote there (they carry its mark, see
    :mod:`napari_unet.core.io.marks`) are skipped too, so writing the outputs next to the images and
    running again does not predict them as if they were images. Both are logged at INFO.
    """
    from napari_unet.core.io.images import image_stem, list_images
    from napari_unet.core.io.marks import written_by_predict
    from napari_unet.core.io.zarr_io import is_zarr

    paths: list[Path] = []
    for name in images:
        path = Path(name)
        if is_zarr(path) or not path.is_dir():
            paths.append(path)
            continue
        zarrs = [p for p in path.iterdir() if not p.name.startswith(".") and is_zarr(p)]
        found = sorted([*list_images(path), *zarrs])
        stems = {image_stem(p) for p in found}
        for candidate in found:
            owner = _companion_of(candidate, stems)
            if owner is not None:
                logger.info("not predicting %s: it belongs to the image %r", candidate, owner)
            elif written_by_predict(candidate):
                logger.info("not predicting %s: an output of an earlier predict", candidate)
            else:
                paths.append(candidate)
    return paths


def _check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file or lies in a folder that cannot be written to."""
    import errno
    import os

    from napari_unet.core.errors import UserInputError
    from napari_unet.core.io.images import write_error

    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file; pass a folder for the outputs.")
    existing = out
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise write_error(out, OSError(errno.EACCES, "not writable")) from None


def _read_roi(path: Path) -> Any:
    import numpy as np

    from napari_unet.core.io.images import read_image

    data = read_image(path)
    mask = data.image != 0
    if data.axes and data.axes.endswith("C") and mask.ndim == 3:
        mask = mask.any(axis=-1)
    return np.ascontiguousarray(mask)


def run(args: argparse.Namespace) -> int:
    """Predict every input; 0 if all succeeded, 1 if any failed."""
    from napari_unet.core.checkpoint.format import load_checkpoint, resolve_checkpoint
    from napari_unet.core.device import get_device

    start = time.perf_counter()
    loaded = load_checkpoint(resolve_checkpoint(args.model))
    device = get_device(args.device)  # an unavailable device stops here, before any file
    _check_out_folder(args.out)
    made_out = not args.out.exists()
    try:
        return _run_inputs(args, loaded, device, start)
    finally:
        if made_out and args.out.is_dir() and not any(args.out.iterdir()):
            args.out.rmdir()  # nothing was written (e.g. a full disk): leave no empty folder


def _run_inputs(args: argparse.Namespace, loaded: Any, device: Any, start: float) -> int:
    """Predict every input of ``args`` with ``loaded``; 0 if all succeeded, 1 if any failed."""
    from napari_unet.core.errors import UserInputError
    from napari_unet.core.inference.prediction import PredictConfig

    info = loaded.info
    inputs = _expand_inputs(args.images)
    if not inputs:
        raise UserInputError("no TIFF, PNG or Zarr images found in the given folder(s).")
    check_measure(args, info.task, volumetric=getattr(info, "spatial_dims", 2) == 3)
    tile = args.tile if args.tile is not None else info.tile_shape
    overlap = args.overlap if args.overlap is not None else info.overlap
    if overlap is not None:
        side = min(tile) if isinstance(tile, tuple) else tile
        if side is not None and overlap >= side:
            raise UserInputError(
                f"--overlap {overlap} must be smaller than the tile side ({side} pixels); "
                "give a smaller --overlap or a larger --tile."
            )
    try:
        predict_config = PredictConfig(
            tile_shape=tile if tile is not None else PredictConfig().tile_shape,
            overlap=overlap,
            batch_size=args.batch_size,
            device=str(device),
            precision=args.precision,
            probability_dtype="float16" if args.output == "probabilities" else "float32",
            tta=args.tta,
            z_flip=args.z_flip,
        )
        # the model's tuned post-processing (e.g. EM neurite regions), then the user's flags
        post_config = info.postprocess_config(
            output=args.labels,
            threshold=args.threshold,
            min_size=args.min_size,
            unseeded=args.unseeded,
        )
    except UserInputError:
        raise
    except ValueError as err:
        raise UserInputError(f"invalid setting: {err}.") from None
    roi = _read_roi(args.roi) if args.roi is not None else None
    job = _Job(args, loaded, predict_config, post_config, roi)
    bar = FileProgress(len(inputs))
    with bar_safe_logging():
        failed = _predict_all(job, inputs, bar)
    elapsed = time.perf_counter() - start
    print(f"{len(inputs) - len(failed)} ok, {len(failed)} failed, {elapsed:.1f} s")
    return 1 if failed else 0


def _predict_all(job: _Job, inputs: list[Path], bar: FileProgress) -> list[Path]:
    """Predict ``inputs`` one by one (one line per file); returns the files that failed."""
    from napari_unet.core.errors import UserInputError
    from napari_unet.core.io.images import image_stem

    failed: list[Path] = []
    seen: dict[str, Path] = {}
    for index, path in enumerate(inputs, start=1):
        bar.start(index)
        stem = image_stem(path)
        try:
            if stem in seen:
                raise UserInputError(
                    f"its outputs would overwrite those of {seen[stem]} (same name {stem!r}); "
                    "rename one of them or run them separately."
                )
            seen[stem] = path
            line = job.process(path, stem, bar)
        except (UserInputError, OSError, MemoryError, RuntimeError, ValueError) as err:
            bar.close()
            failed.append(path)
            reason = str(err) if isinstance(err, UserInputError) else f"{type(err).__name__}: {err}"
            if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
                reason += " (try a smaller --tile or --batch-size)"
            print(f"FAILED {path}: {reason}", file=sys.stderr)
            logger.debug("failure details for %s", path, exc_info=True)
            continue
        bar.close()
        print(line, flush=True)
    return failed
