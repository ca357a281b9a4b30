"""The flags of ``napari-unet-loop predict``: what to read and write, tiling, labels, Zarr.

:func:`add_predict_arguments` adds them to the ``predict`` parser in the order ``--help`` lists
them; the ``--dask`` and measurement flags come from :mod:`napari_unet.cli.predict_dask` and
:mod:`napari_unet.cli.predict_measure`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_unet.cli.predict_zarr import parse_slices

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


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``predict``'s own flags to ``parser``, in ``--help`` order."""
    _add_io_arguments(parser)
    _add_tiling_arguments(parser)
    _add_label_arguments(parser)
    _add_zarr_arguments(parser)


def _add_io_arguments(parser: argparse.ArgumentParser) -> None:
    """The images, the model, the output folder, the axes and the device."""
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


def _add_tiling_arguments(parser: argparse.ArgumentParser) -> None:
    """How the network is run: tiles, overlap, batch, precision, test-time augmentation."""
    from napari_unet.core.inference.config import Z_FLIP_DEFAULT

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
        "--z-flip",
        action=argparse.BooleanOptionalAction,
        default=Z_FLIP_DEFAULT,
        help="2.5-D and 3-D models: also predict with Z reversed (the neighbour slices swapped) "
        "and average, 2x the time (default off); no effect on 2-D models",
    )


def _add_label_arguments(parser: argparse.ArgumentParser) -> None:
    """What is written and how probabilities become labels."""
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
        help="foreground probability cut; also class 1 of a 2-class semantic model, e.g. "
        "membranes (default: the model's, else 0.5)",
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


def _add_zarr_arguments(parser: argparse.ArgumentParser) -> None:
    """Zarr inputs: a share of the slices, labels inside the image."""
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
