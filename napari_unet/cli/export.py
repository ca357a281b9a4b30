"""``napari-unet-loop export MODEL --out PACKAGE.zip``: a bioimage.io model package.

MODEL is a built-in name or a checkpoint file (e.g. a session version exported from the
Fine-tune dock). ``--sample IMAGE`` gives the test input (its middle slice, cut to
``--test-size``); without it a synthetic EM-like image is used. See
:mod:`napari_unet.core.checkpoint.bioimageio_export` for what the package holds.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _test_size(text: str) -> int:
    if not text.isdigit() or int(text) < 16:
        raise argparse.ArgumentTypeError(f"expected an integer >= 16, got {text!r}")
    return int(text)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export``."""
    parser = subparsers.add_parser(
        "export",
        help="write a model as a bioimage.io package (.zip)",
        description="Write a built-in model or a checkpoint as a bioimage.io model package "
        "(model description 0.5: PyTorch state dict + TorchScript weights, preprocessing, test "
        "tensors, README with the model card and lineage).",
    )
    parser.add_argument("model", help="built-in model name or checkpoint file (.pt)")
    parser.add_argument("--out", required=True, type=Path, help="the package file (.zip)")
    parser.add_argument("--sample", type=Path, help="image for the test tensors and the cover")
    parser.add_argument("--axes", help="axes of --sample when the file does not state them")
    parser.add_argument("--name", default="", help="model name (default: the checkpoint's)")
    parser.add_argument(
        "--author", action="append", default=[], help="author name (repeat for several)"
    )
    parser.add_argument("--license", default="CC-BY-4.0", help="SPDX licence id of the weights")
    parser.add_argument(
        "--test-size", type=_test_size, default=256, help="side of the test input (>= 16; 256)"
    )
    parser.add_argument(
        "--no-torchscript", action="store_true", help="leave out the TorchScript weights"
    )
    parser.add_argument("--no-onnx", action="store_true", help="leave out the ONNX weights")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Export; prints the package path."""
    from napari_unet.cli._output import check_output_file
    from napari_unet.core.checkpoint.bioimageio_export import (
        BioimageioExportConfig,
        export_bioimageio,
        sample_slice,
    )
    from napari_unet.core.checkpoint.format import load_checkpoint, resolve_checkpoint
    from napari_unet.core.errors import UserInputError
    from napari_unet.core.io.axes import guess_axes
    from napari_unet.core.io.images import read_image

    checkpoint = resolve_checkpoint(args.model)
    # the package holds the weights up to three times (state dict, TorchScript, ONNX)
    needed = (1 + (not args.no_torchscript) + (not args.no_onnx)) * checkpoint.stat().st_size
    check_output_file(args.out, what="the package", needed_bytes=needed, suffix=".zip")
    loaded = load_checkpoint(checkpoint)
    sample = None
    if args.sample is not None:
        data = read_image(args.sample)
        axes = args.axes or guess_axes(data.image.shape, metadata_axes=data.axes)
        sample = sample_slice(data.image, axes, loaded.info.in_channels)
    try:
        config = BioimageioExportConfig(
            name=args.name,
            authors=tuple(args.author) or BioimageioExportConfig().authors,
            license=args.license,
            test_size=args.test_size,
            torchscript=not args.no_torchscript,
            onnx=not args.no_onnx,
        )
    except ValueError as err:
        raise UserInputError(str(err)) from None
    path = export_bioimageio(loaded, args.out, sample=sample, config=config)
    print(path)
    return 0
