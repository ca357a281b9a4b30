"""Export a checkpoint as a bioimage.io model package (model description format 0.5).

The package is one ``.zip`` that bioimageio.core, deepImageJ, ilastik and the bioimage.io website
can run: ``rdf.yaml`` (the description), the weights three times (``weights.pt``: a PyTorch state
dict of :class:`~napari_unet.core.models.export.ProbabilityNet`, importable from this package;
``weights_torchscript.pt``, which needs nothing but PyTorch; ``weights.onnx``, which needs only an
ONNX runtime -- TorchScript is deprecated in PyTorch), a test input and the output this
model gives for it, a README with the model card and lineage, and a cover picture.

What carries over and what does not:

- Normalisation becomes the package's preprocessing: percentile mode is ``scale_range`` per
  channel over Y and X (the same percentiles), mean/std mode is ``fixed_zero_mean_unit_variance``.
- The network's output is the probabilities (the activation is built in, see ``ProbabilityNet``).
  Label post-processing (argmax, instance watershed, minimum size) is not part of the format; the
  stored defaults are kept in ``config.napari-unet-loop.postprocess`` and in the README.
- Lineage: bioimage.io's ``parent`` field takes only models published on bioimage.io, so the
  parent (built-in name, session version or file) and the whole chain of versions go into
  ``config.napari-unet-loop.lineage`` and the README.

Example:
    >>> loaded = load_checkpoint(resolve_checkpoint("em-membranes"))  # doctest: +SKIP
    >>> export_bioimageio(loaded, "em-membranes.zip")                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_unet import __version__
from napari_unet.core.atomic import atomic_write_with
from napari_unet.core.checkpoint.bioimageio_docs import cover_png, plain, readme_text
from napari_unet.core.checkpoint.bioimageio_weights import (
    ONNX_OPSET,
    onnx_weights,
    torchscript_weights,
)
from napari_unet.core.checkpoint.format import LoadedModel
from napari_unet.core.config import Config
from napari_unet.core.errors import UserInputError
from napari_unet.core.models.export import ProbabilityNet

__all__ = [
    "FORMAT_VERSION",
    "BioimageioExportConfig",
    "export_bioimageio",
    "model_name",
    "sample_slice",
    "scale_range",
]

logger = logging.getLogger(__name__)

#: The bioimage.io model description format written (accepted by bioimageio.spec >= 0.5.4).
FORMAT_VERSION = "0.5.4"
#: ``scale_range``'s epsilon in bioimage.io (added to the denominator).
EPS = 1e-6
CITATIONS = (
    {
        "text": "Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical "
        "Image Segmentation. MICCAI 2015.",
        "doi": "10.1007/978-3-319-24574-4_28",
    },
)


@dataclasses.dataclass(frozen=True)
class BioimageioExportConfig(Config):
    """What the package says about the model.

    Attributes:
        name: the model's name on bioimage.io (default: the checkpoint's name or file stem).
        description: one or two sentences (default: the checkpoint's description).
        authors: who made it (at least one; default ``("napari-unet-loop user",)``).
        license: SPDX id of the weights' licence.
        test_size: largest side of the test input (cut from the middle of the sample).
        torchscript: also write TorchScript weights (left out, with a log line, when tracing
            does not reproduce the network at a second size).
        onnx: also write ONNX weights (opset :data:`ONNX_OPSET`; left out, with a log line, when
            the export fails or, with onnxruntime installed, does not reproduce the network at
            a second size).
    """

    name: str = ""
    description: str = ""
    authors: tuple[str, ...] = ("napari-unet-loop user",)
    license: str = "CC-BY-4.0"
    test_size: int = 256
    torchscript: bool = True
    onnx: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "authors", tuple(str(a) for a in self.authors))
        if not self.authors or not all(a.strip() for a in self.authors):
            raise ValueError("give at least one author name")
        if self.test_size < 16:
            raise ValueError(f"test_size must be >= 16, got {self.test_size}")


def scale_range(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """bioimage.io ``scale_range`` per channel of ``image`` (B, C, Y, X): percentiles over Y, X."""
    image = image.astype(np.float32)
    lo = np.percentile(image, low, axis=(-2, -1), keepdims=True)
    hi = np.percentile(image, high, axis=(-2, -1), keepdims=True)
    return ((image - lo) / (hi - lo + EPS)).astype(np.float32)


def _preprocess(image: np.ndarray, normalization: dict) -> tuple[np.ndarray, list[dict]]:
    """The test input as the package's preprocessing sees it, and that preprocessing."""
    mode = normalization.get("mode", "percentile")
    steps: list[dict] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if mode == "percentile":
        low, high = float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8))
        steps.append(
            {
                "id": "scale_range",
                "kwargs": {"axes": ["y", "x"], "min_percentile": low, "max_percentile": high},
            }
        )
        return scale_range(image, low, high), steps
    if mode == "meanstd":
        channels = image.shape[1]
        mean = [float(v) for v in normalization["mean"]] * (
            channels if len(normalization["mean"]) == 1 else 1
        )
        std = [float(v) for v in normalization["std"]] * (
            channels if len(normalization["std"]) == 1 else 1
        )
        steps.append(
            {
                "id": "fixed_zero_mean_unit_variance",
                "kwargs": {"mean": mean, "std": std, "axis": "channel"},
            }
        )
        m = np.asarray(mean, np.float32)[None, :, None, None]
        s = np.asarray(std, np.float32)[None, :, None, None]
        return ((image.astype(np.float32) - m) / (s + EPS)).astype(np.float32), steps
    return image.astype(np.float32), steps


def _geometry(net: torch.nn.Module) -> tuple[int, int, int]:
    """(smallest input side, step between accepted sides, pixels lost per side)."""
    rule = getattr(net, "valid_input_shape", None)
    smallest = int(rule((1, 1))[0]) if rule else 1
    step = int(rule((smallest + 1, smallest + 1))[0]) - smallest if rule else 1
    return smallest, max(step, 1), int(getattr(net, "margin", 0))


def _test_input(sample: np.ndarray, size: int, smallest: int, step: int) -> np.ndarray:
    """A (1, C, S, S) crop from the middle of ``sample`` (C, Y, X), S an accepted side <= size."""
    side = smallest + step * max(0, (min(size, *sample.shape[-2:]) - smallest) // step)
    if side > min(sample.shape[-2:]):
        reflect = [(0, 0)] + [(0, max(0, side - n)) for n in sample.shape[-2:]]
        sample = np.pad(sample, reflect, mode="reflect")
    top, left = ((n - side) // 2 for n in sample.shape[-2:])
    return np.ascontiguousarray(sample[None, :, top : top + side, left : left + side])


def model_name(text: str) -> str:
    """``text`` as a bioimage.io model name: letters, digits, ``_+- ()``, 5 to 64 characters."""
    name = " ".join(re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", text).split())[:64].strip()
    return name if len(name) >= 5 else f"{name} U-Net".strip()


def _finite(raw: np.ndarray) -> np.ndarray:
    """The test input with NaN/Inf replaced by the median of its finite values.

    Other tools pass NaN through their preprocessing, so a test tensor with NaN would make every
    output NaN and the package's own test meaningless.
    """
    good = np.isfinite(raw)
    if good.all():
        return raw
    fill = float(np.median(raw[good])) if good.any() else 0.0
    logger.info("test input: %d non-finite values replaced by %g", raw.size - good.sum(), fill)
    return np.where(good, raw, np.float32(fill)).astype(np.float32)


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


def sample_slice(image: np.ndarray, axes: str, in_channels: int) -> np.ndarray:
    """The middle 2-D slice of ``image`` as (C, Y, X), checked against the model's channels.

    Raises:
        AxesError, ChannelMismatchError: ``axes`` do not fit, or the channels differ.
    """
    from napari_unet.core.io.axes import check_channels, to_stack

    stack, layout = to_stack(np.asarray(image), axes)
    check_channels(layout.n_channels, in_channels, shape=layout.shape, axes=layout.axes)
    return np.asarray(stack[layout.n_slices // 2])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file(files: dict[str, bytes], member: str) -> dict[str, str]:
    return {"source": member, "sha256": _sha256(files[member])}


def export_bioimageio(
    loaded: LoadedModel,
    path: str | os.PathLike,
    *,
    sample: np.ndarray | None = None,
    lineage: Sequence[dict] = (),
    config: BioimageioExportConfig = BioimageioExportConfig(),
) -> Path:
    """Write ``loaded`` as a bioimage.io model package (a ``.zip``) at ``path``, atomically.

    Args:
        loaded: the checkpoint (any architecture and task of this package).
        path: the package file; ``.zip`` is appended when missing.
        sample: (C, Y, X) raw image for the test tensors and the cover, C = the model's input
            channels; default: a synthetic image (EM-like for one channel).
        lineage: the chain of versions, newest first, e.g. session version records
            (id, name, parent, steps, data, metrics); stored in the config and the README.
        config: names, authors, licence.

    Returns:
        The written package's path.

    Raises:
        UserInputError: the sample does not have the model's channels or is not 3-D.
    """
    info = loaded.info
    target = Path(path).expanduser()
    if target.suffix.lower() != ".zip":
        target = target.with_name(target.name + ".zip")
    if sample is None:
        from napari_unet.core.synthetic import synthetic_em

        sample = np.repeat(synthetic_em((config.test_size,) * 2)[0][None], info.in_channels, 0)
    sample = np.asarray(sample)
    if sample.ndim != 3 or sample.shape[0] != info.in_channels:
        raise UserInputError(
            f"the test sample must be (C, Y, X) with C = {info.in_channels} (the model's input "
            f"channels); got shape {sample.shape}."
        )
    net = ProbabilityNet(info.arch, dict(info.model_config), info.task)
    net.net.load_state_dict(loaded.model.state_dict())
    net.eval()
    smallest, step, margin = _geometry(net.net)
    raw = _finite(_test_input(sample, config.test_size, smallest, step).astype(np.float32))
    normalized, preprocessing = _preprocess(raw, dict(info.normalization))
    with torch.no_grad():
        output = net(torch.from_numpy(normalized)).numpy().astype(np.float32)
    files = _tensor_files(raw, output)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    files["weights.pt"] = buffer.getvalue()
    # a second input size: traced/exported weights must reproduce the net there too
    second = _test_input(sample, smallest + step, smallest, step)
    other = torch.from_numpy(_preprocess(second, dict(info.normalization))[0])
    example = torch.from_numpy(normalized)
    extra = {
        "weights_torchscript.pt": torchscript_weights if config.torchscript else None,
        "weights.onnx": onnx_weights if config.onnx else None,
    }
    for member, make in extra.items():
        data = None if make is None else make(net, example, other)
        if data is not None:
            files[member] = data
    name = model_name(config.name or info.name or target.stem)
    files["README.md"] = readme_text(loaded, name, lineage).encode()
    files["cover.png"] = cover_png(normalized[0], output[0], info.task)
    rdf = _description(
        loaded, name, config, files, preprocessing, (smallest, step, margin), lineage
    )
    import yaml

    files["rdf.yaml"] = yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True).encode()

    def write(handle) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member, data in files.items():
                archive.writestr(member, data)

    try:
        atomic_write_with(target, write)
    except OSError as err:
        raise UserInputError(
            f"could not write {target} ({err.strerror or err}); choose another folder."
        ) from None
    logger.info("bioimage.io package %s (%d files)", target, len(files))
    return target


def _tensor_files(raw: np.ndarray, output: np.ndarray) -> dict[str, bytes]:
    """Test tensors (.npy, exact) and sample tensors (.tif, for viewers), batch axis included."""
    import tifffile

    files = {}
    for stem, array in (("input", raw), ("output", output)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        files[f"test_{stem}.npy"] = buffer.getvalue()
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, array[0], photometric="minisblack")
        files[f"sample_{stem}.tif"] = buffer.getvalue()
    return files


def _description(
    loaded: LoadedModel,
    name: str,
    config: BioimageioExportConfig,
    files: dict[str, bytes],
    preprocessing: list[dict],
    geometry: tuple[int, int, int],
    lineage: Sequence[dict],
) -> dict[str, Any]:
    """The model description (``rdf.yaml``) as plain data."""
    info = loaded.info
    smallest, step, margin = geometry
    torch_version = torch.__version__.split("+")[0]
    in_names = [f"c{k}" for k in range(info.in_channels)]
    space_in = [
        {"type": "space", "id": axis, "size": {"min": smallest, "step": step}} for axis in "yx"
    ]
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
    provenance = dict(info.provenance)
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
        "inputs": [
            {
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
        ],
        "outputs": [
            {
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
        ],
        "weights": weights,
        "config": plain(
            {
                "napari-unet-loop": {
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
            }
        ),
    }
