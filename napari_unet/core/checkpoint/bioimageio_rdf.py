"""The model description (``rdf.yaml``) of a bioimage.io package, as plain data.

:func:`description` describes the tensors (axes, test and sample files, preprocessing), the
weights (PyTorch state dict of :class:`~napari_unet.core.models.export.ProbabilityNet`, plus the
TorchScript and ONNX files when they were written) and keeps what napari-unet-loop needs to open
the package again in ``config.napari-unet-loop``
(:mod:`napari_unet.core.checkpoint.bioimageio_import`). Used by
:mod:`napari_unet.core.checkpoint.bioimageio_export`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from napari_unet import __version__
from napari_unet.core.checkpoint.bioimageio_docs import plain
from napari_unet.core.checkpoint.bioimageio_weights import ONNX_OPSET
from napari_unet.core.checkpoint.format import LoadedModel

__all__ = ["CITATIONS", "FORMAT_VERSION", "description"]

#: The bioimage.io model description format written (accepted by bioimageio.spec >= 0.5.4).
FORMAT_VERSION = "0.5.4"
CITATIONS = (
    {
        "text": "Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical "
        "Image Segmentation. MICCAI 2015.",
        "doi": "10.1007/978-3-319-24574-4_28",
    },
)


def _identifier(text: str, fallback: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    return cleaned if cleaned and not cleaned[0].isdigit() else fallback


def _channel_names(loaded: LoadedModel) -> list[str]:
    info = loaded.info
    if info.task == "binary":
        names = [info.class_names[-1] if info.class_names else "foreground"]
    elif info.task == "restoration":
        names = [f"c{k}" for k in range(info.out_channels)]
    else:
        names = list(info.class_names)
    out = [_identifier(name, f"c{k}") for k, name in enumerate(names)]
    return out if len(set(out)) == len(out) else [f"c{k}" for k in range(len(out))]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file(files: dict[str, bytes], member: str) -> dict[str, str]:
    return {"source": member, "sha256": _sha256(files[member])}


class PackageText(Protocol):
    """What :func:`description` reads of a
    :class:`~napari_unet.core.checkpoint.bioimageio_export.BioimageioExportConfig`."""

    description: str
    authors: tuple[str, ...]
    license: str


def description(
    loaded: LoadedModel,
    name: str,
    config: PackageText,
    files: dict[str, bytes],
    preprocessing: list[dict],
    geometry: tuple[int, int, int],
    lineage: Sequence[dict],
) -> dict[str, Any]:
    """The model description (``rdf.yaml``) as plain data.

    Args:
        loaded: the exported checkpoint.
        name: the package's model name.
        config: names, authors, licence.
        files: the package's members so far (checksums are taken from them).
        preprocessing: the input's preprocessing steps.
        geometry: (smallest input side, step between accepted sides, pixels lost per side).
        lineage: the chain of versions, newest first.
    """
    info = loaded.info
    return {
        "format_version": FORMAT_VERSION,
        "type": "model",
        "name": name,
        "description": config.description or info.description or f"U-Net ({info.task})",
        "authors": [{"name": author} for author in config.authors],
        "cite": list(CITATIONS),
        "license": config.license,
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["napari-unet-loop", "unet", "pytorch", "2d", info.task, "segmentation"],
        "inputs": [_input_tensor(info.in_channels, files, preprocessing, geometry)],
        "outputs": [_output_tensor(loaded, files, geometry)],
        "weights": _weights(loaded, files),
        "config": plain({"napari-unet-loop": _our_config(loaded, lineage)}),
    }


def _input_tensor(
    in_channels: int,
    files: dict[str, bytes],
    preprocessing: list[dict],
    geometry: tuple[int, int, int],
) -> dict[str, Any]:
    smallest, step, _ = geometry
    in_names = [f"c{k}" for k in range(in_channels)]
    space_in = [
        {"type": "space", "id": axis, "size": {"min": smallest, "step": step}} for axis in "yx"
    ]
    return {
        "id": "input",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": in_names},
            *space_in,
        ],
        "test_tensor": _file(files, "test_input.npy"),
        "sample_tensor": _file(files, "sample_input.tif"),
        "data": {"type": "float32"},
        "preprocessing": preprocessing,
    }


def _output_tensor(
    loaded: LoadedModel, files: dict[str, bytes], geometry: tuple[int, int, int]
) -> dict[str, Any]:
    info = loaded.info
    margin = geometry[2]
    space_out = [
        {
            "type": "space",
            "id": axis,
            "size": {"tensor_id": "input", "axis_id": axis, "offset": -2 * margin},
        }
        for axis in "yx"
    ]
    output_id = "restored" if info.task == "restoration" else "probabilities"
    output_data = {"type": "float32"}
    if info.task != "restoration":
        output_data["range"] = [0.0, 1.0]
    return {
        "id": output_id,
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": _channel_names(loaded)},
            *space_out,
        ],
        "test_tensor": _file(files, "test_output.npy"),
        "sample_tensor": _file(files, "sample_output.tif"),
        "data": output_data,
    }


def _weights(loaded: LoadedModel, files: dict[str, bytes]) -> dict[str, Any]:
    info = loaded.info
    torch_version = torch.__version__.split("+")[0]
    weights: dict[str, Any] = {
        "pytorch_state_dict": {
            "source": "weights.pt",
            "sha256": _sha256(files["weights.pt"]),
            "architecture": {
                "callable": "ProbabilityNet",
                "import_from": "napari_unet.core.models.export",
                "kwargs": plain(
                    {"arch": info.arch, "model_config": dict(info.model_config), "task": info.task}
                ),
            },
            "pytorch_version": torch_version,
        }
    }
    if "weights.onnx" in files:
        weights["onnx"] = {
            "source": "weights.onnx",
            "sha256": _sha256(files["weights.onnx"]),
            "opset_version": ONNX_OPSET,
            "parent": "pytorch_state_dict",
        }
    if "weights_torchscript.pt" in files:
        weights["torchscript"] = {
            "source": "weights_torchscript.pt",
            "sha256": _sha256(files["weights_torchscript.pt"]),
            "pytorch_version": torch_version,
            "parent": "pytorch_state_dict",
        }
    return weights


def _our_config(loaded: LoadedModel, lineage: Sequence[dict]) -> dict[str, Any]:
    """``config.napari-unet-loop``: what opening the package restores."""
    info = loaded.info
    provenance = dict(info.provenance)
    return {
        "version": __version__,
        "arch": info.arch,
        "model_config": dict(info.model_config),
        "task": info.task,
        "class_names": list(info.class_names),
        "normalization": dict(info.normalization),
        "tile_shape": info.tile_shape,
        "overlap": info.overlap,
        "postprocess": provenance.get("postprocess") or {},
        "parent": provenance.get("parent"),
        "lineage": [dict(entry) for entry in lineage],
        "provenance": provenance,  # what opening the package restores
    }
