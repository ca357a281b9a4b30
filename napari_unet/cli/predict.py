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
from napari_unet.cli.predict_dask import add_dask_arguments, predict_dask
from napari_unet.cli.predict_measure import (
    add_measure_arguments,
    check_measure,
    measure_labels,
    measurements_target,
)
from napari_unet.cli.predict_zarr import parse_slices, predict_zarr, write_output

logger = logging.getLogger(__name__)

OUTPUTS = ("labels", "probabilities", "both")


def _tile(text: str) -> int | tuple[int, ...]:
    try:
        sides = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2, 3) or min(sides) < 1:
        raise argparse.ArgumentTypeError(
            f"expected N, Y,X or Z,Y,X (positive pixels), got {text!r}"
        )
    return sides[0] if len(sides) == 1 else tuple(sides)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


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
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="TIFF/PNG files, OME-Zarr/Zarr folders, or folders",
    )
    parser.add_argument("--model", required=True, help="checkpoint file or built-in model name")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument(
        "--axes",
        help="axes of every image, e.g. YX, YXC, ZYX, CYX (default: "
        "from the file's metadata, or guessed when unambiguous)",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--tile", type=_tile, help="tile size N, Y,X or (3-D models) Z,Y,X (default: the model's)"
    )
    parser.add_argument("--overlap", type=_non_negative, help="tile overlap in pixels")
    parser.add_argument("--batch-size", type=_positive, default=4, help="tiles per batch (4)")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="auto (default): fp16 on a CUDA GPU, bf16 on a CPU with native bf16 units "
        "(AVX512-BF16 or AMX), fp32 elsewhere; fp32 for full precision",
    )
    parser.add_argument(
        "--tta",
        default="none",
        choices=("none", "flips", "dihedral"),
        help="test-time augmentation: average over the 4 flips (4x the time) or the 8 flips and "
        "rotations (8x); default none",
    )
    parser.add_argument(
        "--labels",
        choices=("semantic", "instances"),
        help="label type (default: instances for instance models, else semantic)",
    )
    parser.add_argument("--output", choices=OUTPUTS, default="labels", help="what to write")
    parser.add_argument("--roi", type=Path, help="mask image; labels outside it are set to 0")
    parser.add_argument(
        "--threshold",
        type=_probability,
        help="foreground probability cut (default: the model's, else 0.5)",
    )
    parser.add_argument(
        "--min-size",
        type=_non_negative,
        default=None,
        help="remove objects smaller than this many pixels (default: the model's, else 0)",
    )
    parser.add_argument(
        "--unseeded",
        choices=("object", "drop"),
        default=None,
        help="instance labels: foreground no interior seed reaches becomes an object of its own "
        "('object') or stays background ('drop') (default: the model's, else object)",
    )
    parser.add_argument(
        "--slices",
        type=parse_slices,
        help="Zarr inputs only: predict slices START:STOP of the Z/T stack (flat index), e.g. "
        "one share of a volume per cluster job; all jobs write into the same STEM_labels.zarr",
    )
    parser.add_argument(
        "--labels-in-image",
        action="store_true",
        help="OME-Zarr inputs: write the labels inside the image, as IMAGE.zarr/labels/MODEL "
        "(the OME-NGFF layout napari-ome-zarr, MoBIE and BigDataViewer show with the image) "
        "instead of STEM_labels.zarr in --out",
    )
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


def info_arch(loaded: Any) -> str:
    """The architecture name of a loaded checkpoint, for messages."""
    return getattr(loaded.model, "arch", "") or "this model"


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
    check_measure(args, info.task)
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


class _Job:
    """Everything shared by the files of one run; ``process`` does one file."""

    def __init__(self, args, loaded, predict_config, post_config, roi) -> None:
        from napari_unet.core.io.marks import PredictionMark

        self.args, self.loaded = args, loaded
        self.predict_config, self.post_config, self.roi = predict_config, post_config, roi
        #: what marks the labels written as this model's prediction (see core.io.marks)
        self.mark = PredictionMark(
            model=loaded.info.name or Path(str(args.model)).stem,
            task=loaded.info.task,
            output=post_config.output,
        )

    def targets(self, stem: str, suffix: str) -> dict[str, Path]:
        """The output paths this run writes for ``stem`` by kind (``.tif`` or ``.zarr``)."""
        out, output = self.args.out, self.args.output
        if self.loaded.info.task == "restoration":
            kinds = ["restored"]
        else:
            kinds = [k for k in ("labels", "probabilities") if output in (k, "both")]
        return {kind: out / f"{stem}_{kind}{suffix}" for kind in kinds}

    def labels(self, probabilities: Any, path: Path | None = None) -> Any:
        """Labels of ``probabilities``: plane by plane for 2-D models, in 3-D (with the
        model's voxel size) for 3-D ones."""
        from napari_unet.core.postprocess.labels import labels_from_probabilities
        from napari_unet.core.postprocess.volume import volume_labels

        model, task = self.loaded.model, self.loaded.info.task
        if getattr(model, "spatial_dims", 2) != 3:
            return labels_from_probabilities(
                probabilities, task=task, config=self.post_config, roi=self.roi
            )
        spacing = self.voxel_size(path)
        return volume_labels(
            probabilities, task=task, config=self.post_config, spacing=spacing, roi=self.roi
        )

    def voxel_size(self, path: Path | None = None) -> tuple[float, ...]:
        """The voxel size of 3-D instances: ``--pixel-size`` (one or Z,Y,X values), else the
        input's OME/ImageJ metadata, else the model's ``voxel_size`` (``unet3d_aniso``), else
        isotropic."""
        from napari_unet.core.io.voxel import read_voxel_size

        size = getattr(self.args, "pixel_size", None)
        if size is not None and len(size) in (1, 3):
            return tuple(size) * (3 if len(size) == 1 else 1)
        found = read_voxel_size(path) if path is not None else None
        if found is not None:
            return found
        config = dict(getattr(self.loaded.model, "config", {}) or {})
        return tuple(config.get("voxel_size") or (1.0, 1.0, 1.0))

    def process(self, path: Path, stem: str, bar: FileProgress) -> str:
        """Predict one file, write its outputs and return its summary line."""
        import numpy as np

        from napari_unet.core.errors import UserInputError
        from napari_unet.core.generators import run_to_end
        from napari_unet.core.inference.prediction import iter_predict
        from napari_unet.core.io.axes import check_axes, guess_axes
        from napari_unet.core.io.images import read_image, write_labels, write_tiff
        from napari_unet.core.io.marks import check_overwritable, output_tag, software_tag
        from napari_unet.core.io.zarr_io import is_zarr

        volumetric = getattr(self.loaded.model, "spatial_dims", 2) == 3
        if volumetric and (getattr(self.args, "dask", None) or is_zarr(path)):
            raise UserInputError(
                f"{info_arch(self.loaded)} is a 3-D model: it predicts TIFF volumes read into "
                "memory for now, not Zarr stores or --dask; save the volume as a TIFF."
            )
        if getattr(self.args, "dask", None):
            return predict_dask(self, path, stem, bar)
        if is_zarr(path):
            return predict_zarr(self, path, stem, bar)
        if self.args.slices is not None:
            raise UserInputError("--slices applies to Zarr inputs only; this is a single file.")
        if volumetric:
            from napari_unet.cli.volume_checks import check_predict_memory

            channels, name = int(self.loaded.model.out_channels), info_arch(self.loaded)
            check_predict_memory(path, channels, model_name=name)
        tic = time.perf_counter()
        info = self.loaded.info
        targets = self.targets(stem, ".tif")
        measurements = measurements_target(self, stem)
        for target in [*targets.values(), measurements]:  # the user's files are never replaced
            if target is not None:
                check_overwritable(target)
        data = read_image(path)
        if self.args.axes:
            axes = check_axes(self.args.axes, data.image.shape)
        else:
            axes = guess_axes(data.image.shape, metadata_axes=data.axes)
        spatial_axes = "".join(a for a in axes if a in "TZS") + "YX"
        generator = iter_predict(
            self.loaded.model,
            data.image,
            axes,
            task=info.task,
            normalization=info.normalization_config(),
            config=self.predict_config,
        )
        probabilities = run_to_end(generator, lambda p: bar.update(path.name, p.fraction))
        written: list[str] = []
        model = self.mark.model
        if "restored" in targets:
            restored = probabilities.astype(np.float32, copy=False)
            restored_axes = "C" + spatial_axes
            if restored.shape[0] == 1:
                restored, restored_axes = restored[0], spatial_axes
            tag = output_tag("restored", model)
            written.append(
                write_output(
                    targets["restored"],
                    lambda t: write_tiff(t, restored, axes=restored_axes, software=tag),
                )
            )
            detail = f"restored {restored.shape}"
        else:
            detail = f"probabilities {probabilities.shape}"
            if "labels" in targets:
                labels = self.labels(probabilities, path)
                software = software_tag(self.mark)
                written.append(
                    write_output(
                        targets["labels"],
                        lambda t: write_labels(t, labels, axes=spatial_axes, software=software),
                    )
                )
                count = int(labels.max()) if labels.size else 0
                kind = "objects" if self.post_config.output == "instances" else "max class"
                detail = f"labels {labels.shape} {labels.dtype}, {kind} {count}"
                if measurements is not None:
                    written.append(
                        measure_labels(self, measurements, labels, data.image, axes, probabilities)
                    )
            if "probabilities" in targets:
                halves = probabilities.astype(np.float16, copy=False)
                tag = output_tag("probabilities", model)
                written.append(
                    write_output(
                        targets["probabilities"],
                        lambda t: write_tiff(t, halves, axes="C" + spatial_axes, software=tag),
                    )
                )
        seconds = time.perf_counter() - tic
        return f"ok {path} -> {', '.join(written)} ({detail}, {seconds:.1f} s)"
