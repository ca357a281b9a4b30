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
import io
import logging
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from napari_unet.core.atomic import atomic_write_with
from napari_unet.core.checkpoint.bioimageio_docs import cover_png, readme_text
from napari_unet.core.checkpoint.bioimageio_rdf import CITATIONS, FORMAT_VERSION, description
from napari_unet.core.checkpoint.bioimageio_tensors import (
    EPS,
    _finite,
    _geometry,
    _preprocess,
    _tensor_files,
    _test_input,
    scale_range,
)
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
    "CITATIONS",
    "EPS",
    "FORMAT_VERSION",
    "ONNX_OPSET",
    "BioimageioExportConfig",
    "export_bioimageio",
    "model_name",
    "sample_slice",
    "scale_range",
]

logger = logging.getLogger(__name__)


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


def model_name(text: str) -> str:
    """``text`` as a bioimage.io model name: letters, digits, ``_+- ()``, 5 to 64 characters."""
    name = " ".join(re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", text).split())[:64].strip()
    return name if len(name) >= 5 else f"{name} U-Net".strip()


def sample_slice(image: np.ndarray, axes: str, in_channels: int) -> np.ndarray:
    """The middle 2-D slice of ``image`` as (C, Y, X), checked against the model's channels.

    Raises:
        AxesError, ChannelMismatchError: ``axes`` do not fit, or the channels differ.
    """
    from napari_unet.core.io.axes import check_channels, to_stack

    stack, layout = to_stack(np.asarray(image), axes)
    check_channels(layout.n_channels, in_channels, shape=layout.shape, axes=layout.axes)
    return np.asarray(stack[layout.n_slices // 2])


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
        UserInputError: the sample does not have the model's channels or is not 3-D; a 2.5-D
            model (its neighbour slices as channels: a package's tensors cannot say so).
    """
    info = loaded.info
    if info.context_slices:
        raise UserInputError(
            f"this is a 2.5-D model (each slice with {info.context_slices} neighbour slice(s) on "
            "each side as channels), which a bioimage.io package cannot describe; share the .pt "
            "checkpoint instead, or train a 2-D model (no --context-slices) to export."
        )
    target = Path(path).expanduser()
    if target.suffix.lower() != ".zip":
        target = target.with_name(target.name + ".zip")
    sample = _checked_sample(sample, info.in_channels, config.test_size)
    net = ProbabilityNet(info.arch, dict(info.model_config), info.task)
    net.net.load_state_dict(loaded.model.state_dict())
    net.eval()
    files = _package_files(loaded, net, sample, lineage, config, target.stem)
    _write_zip(target, files)
    logger.info("bioimage.io package %s (%d files)", target, len(files))
    return target


def _checked_sample(sample: np.ndarray | None, in_channels: int, test_size: int) -> np.ndarray:
    """``sample`` (C, Y, X) checked against the model's channels; a synthetic one when None."""
    if sample is None:
        from napari_unet.core.synthetic import synthetic_em

        sample = np.repeat(synthetic_em((test_size,) * 2)[0][None], in_channels, 0)
    sample = np.asarray(sample)
    if sample.ndim != 3 or sample.shape[0] != in_channels:
        raise UserInputError(
            f"the test sample must be (C, Y, X) with C = {in_channels} (the model's input "
            f"channels); got shape {sample.shape}."
        )
    return sample


def _package_files(
    loaded: LoadedModel,
    net: ProbabilityNet,
    sample: np.ndarray,
    lineage: Sequence[dict],
    config: BioimageioExportConfig,
    stem: str,
) -> dict[str, bytes]:
    """Every member of the package by name, in the order they are zipped."""
    info = loaded.info
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
    files.update(_traced_weights(net, torch.from_numpy(normalized), other, config))
    name = model_name(config.name or info.name or stem)
    files["README.md"] = readme_text(loaded, name, lineage).encode()
    files["cover.png"] = cover_png(normalized[0], output[0], info.task)
    rdf = description(loaded, name, config, files, preprocessing, (smallest, step, margin), lineage)
    import yaml

    files["rdf.yaml"] = yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True).encode()
    return files


def _traced_weights(
    net: ProbabilityNet, example: torch.Tensor, other: torch.Tensor, config: BioimageioExportConfig
) -> dict[str, bytes]:
    """The TorchScript and ONNX weights asked for and reproducing the net at both sizes."""
    extra = {
        "weights_torchscript.pt": torchscript_weights if config.torchscript else None,
        "weights.onnx": onnx_weights if config.onnx else None,
    }
    files = {}
    for member, make in extra.items():
        data = None if make is None else make(net, example, other)
        if data is not None:
            files[member] = data
    return files


def _write_zip(target: Path, files: dict[str, bytes]) -> None:
    """Zip ``files`` into ``target`` atomically; a failure is one sentence naming it."""

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
