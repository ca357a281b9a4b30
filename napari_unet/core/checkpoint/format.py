"""Self-describing model checkpoints that never execute code when loaded.

A checkpoint is one file written atomically by ``torch.save``, holding only plain data and tensors::

    {"format": FORMAT, "format_version": 1, "info": CheckpointInfo.to_dict(),
     "weights_dtype": "float32" | "float16", "state_dict": {name: tensor},
     "training_state": None | plain data and tensors}

It is read back with ``torch.load(weights_only=True)``, whose unpickler rebuilds only tensors and
plain containers: a file that needs any other Python object (which is how a pickle runs code) is
refused with :class:`~napari_unet.core.errors.CheckpointError` before anything in it runs. Models
are shared between labs; a checkpoint must be as safe to open as an image.

Example:
    >>> from napari_unet.core.models import build_model
    >>> model = build_model("unet", depth=2, base_channels=4, out_channels=1)
    >>> path = save_checkpoint(folder / "nuclei.pt", model, task="binary")  # doctest: +SKIP
    >>> load_checkpoint(path).info.task  # doctest: +SKIP
    'binary'
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_unet.core.atomic import atomic_write_with
from napari_unet.core.checkpoint.builtin import BUILTIN_DIR, builtin_checkpoints, resolve_checkpoint
from napari_unet.core.checkpoint.info import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointInfo,
    LoadedModel,
    default_class_names,
    plain_data,
)
from napari_unet.core.checkpoint.integrity import info_from_payload, load_payload
from napari_unet.core.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.models import SegmentationNet

__all__ = [
    "BUILTIN_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointInfo",
    "LoadedModel",
    "builtin_checkpoints",
    "default_class_names",
    "load_checkpoint",
    "read_checkpoint_info",
    "resolve_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

_WEIGHT_DTYPES = ("float32", "float16")


def save_checkpoint(
    path: str | os.PathLike,
    model: SegmentationNet,
    *,
    task: str,
    class_names: tuple[str, ...] | list[str] | None = None,
    normalization: NormalizationConfig | dict | None = None,
    tile_shape: tuple[int, int] | None = None,
    overlap: int | None = None,
    provenance: dict | None = None,
    training_state: Any = None,
    weights_dtype: str | None = None,
    name: str = "",
    description: str = "",
) -> Path:
    """Write ``model`` and its description to one checkpoint file, atomically.

    Args:
        path: target file (``.pt`` by convention); its folder is created.
        model: a :class:`~napari_unet.core.models.SegmentationNet` from ``build_model``.
        task: what the output means (checked against ``model.out_channels``).
        class_names: names of the label classes (default: generic names).
        normalization: input normalisation the model was trained with (default: percentile).
        tile_shape, overlap: preferred prediction tiling.
        provenance: plain data (parent, data, steps, metrics, card...); ``created`` and
            ``software`` are filled in when absent. numpy scalars/arrays are converted.
        training_state: optimizer/scheduler state etc. (tensors and plain data only), or None.
        weights_dtype: ``"float16"`` stores floating-point weights in half precision (half the
            file; tensors that do not fit stay float32); None or ``"float32"`` stores them as is.
        name, description: shown in model lists.

    Raises:
        CheckpointError: ``task`` does not match the model's output channels.
        TypeError: provenance or training_state holds objects that are not plain data.
        OSError: the file cannot be written (the old file, if any, is left as it was).
    """
    import torch

    weights_dtype = weights_dtype or "float32"
    if weights_dtype not in _WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype must be one of {_WEIGHT_DTYPES}, got {weights_dtype!r}")
    info = _checkpoint_info(
        model, task, class_names, normalization, tile_shape, overlap, provenance, name, description
    )
    state_dict = _cpu_state_dict(model, weights_dtype)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "info": info.to_dict(),
        "weights_dtype": weights_dtype,
        "state_dict": state_dict,
        "training_state": plain_data(training_state, "training_state"),
    }
    atomic_write_with(path, lambda handle: torch.save(payload, handle))
    logger.info("saved %s checkpoint %s (%s, %s)", task, path, info.arch, weights_dtype)
    return Path(path)


def _checkpoint_info(
    model: SegmentationNet,
    task: str,
    class_names: tuple[str, ...] | list[str] | None,
    normalization: NormalizationConfig | dict | None,
    tile_shape: tuple[int, int] | None,
    overlap: int | None,
    provenance: dict | None,
    name: str,
    description: str,
) -> CheckpointInfo:
    """The validated description that :func:`save_checkpoint` stores (with ``created``)."""
    import torch

    from napari_unet import __version__

    if hasattr(normalization, "to_dict"):
        normalization = normalization.to_dict()
    provenance = dict(provenance or {})
    provenance.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat())
    provenance.setdefault("software", {"napari-unet-loop": __version__, "torch": torch.__version__})
    info = CheckpointInfo(
        arch=model.arch,
        model_config=dict(model.config),
        task=task,
        in_channels=int(model.in_channels),
        out_channels=int(model.out_channels),
        class_names=tuple(class_names or ()),
        normalization=dict(normalization or {}),
        tile_shape=tuple(tile_shape) if tile_shape is not None else None,
        overlap=overlap,
        provenance=plain_data(provenance, "provenance"),
        name=name,
        description=description,
    )
    info.normalization_config()  # validates the stored normalisation now, not at load time
    return info


def _cpu_state_dict(model: SegmentationNet, weights_dtype: str) -> dict[str, torch.Tensor]:
    """The weights as contiguous CPU copies; float16 where asked and where they fit."""
    import torch

    state_dict = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu", copy=True).contiguous()  # no shared/oversized storage
        if weights_dtype == "float16" and tensor.is_floating_point():
            half = tensor.half()
            if torch.isfinite(half).all() or not torch.isfinite(tensor).all():
                tensor = half
        state_dict[key] = tensor
    return state_dict


def read_checkpoint_info(path: str | os.PathLike, *, verify: bool = False) -> CheckpointInfo:
    """The description stored in a checkpoint, without building the model (weights memory-mapped).

    Args:
        path: the checkpoint file.
        verify: also check the whole file's integrity as :func:`load_checkpoint` does (every
            CRC of the zip; one read of the file): a flipped byte in the weights is refused.
            Without it only the description is read, so such damage goes unnoticed.

    Raises:
        CheckpointError: missing, damaged, foreign, unsafe or newer file.
    """
    payload = load_payload(path, map_location="cpu", mmap=True, verify=verify)
    return info_from_payload(Path(path), payload)


def load_checkpoint(
    path: str | os.PathLike, *, map_location: Any = "cpu", spatial_dims: int | None = None
) -> LoadedModel:
    """Load a checkpoint: rebuild its network, load the weights, return it in eval mode.

    Args:
        path: a file written by :func:`save_checkpoint`, or a bioimage.io package (``.zip``)
            written by :func:`napari_unet.core.checkpoint.bioimageio_export.export_bioimageio`.
        map_location: device the weights and model go to (``"cpu"``, ``"cuda"``, a torch.device).
        spatial_dims: 2 or 3 to refuse a model of the other kind (a 3-D model where the caller
            runs 2-D models); None accepts both.

    Returns:
        :class:`LoadedModel` with the float32 model in eval mode, its info and training state.

    Raises:
        CheckpointError: the file is missing, truncated, foreign, unsafe (holds Python objects),
            of a newer format, names an unknown architecture, its weights do not fit, or it is a
            model of the other ``spatial_dims``.
        DeviceError: ``map_location`` names CUDA on a machine without it.
    """
    import torch

    from napari_unet.core.models import build_model, list_architectures

    path = Path(path)
    payload = load_payload(path, map_location=map_location)
    info = info_from_payload(path, payload)
    if info.arch not in list_architectures():
        raise CheckpointError(
            f"{path} uses the architecture {info.arch!r}, which this version of napari-unet-loop "
            f"does not know (known: {', '.join(list_architectures())}); upgrade napari-unet-loop."
        )
    if spatial_dims is not None and info.spatial_dims != spatial_dims:
        raise CheckpointError(
            f"{path} is a {info.spatial_dims}-D model ({info.arch}): this step runs "
            f"{spatial_dims}-D models only; pick a {spatial_dims}-D model here."
        )
    try:
        model = build_model(info.arch, **info.model_config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path}: its {info.arch} settings are not accepted ({err}); the file was written by "
            "an incompatible version, re-save it with this one or upgrade napari-unet-loop."
        ) from None
    if (model.in_channels, model.out_channels) != (info.in_channels, info.out_channels):
        raise CheckpointError(
            f"{path} is inconsistent: it says {info.in_channels} -> {info.out_channels} channels "
            f"but its settings build {model.in_channels} -> {model.out_channels}; the file is "
            "damaged."
        )
    _load_weights(path, model, payload.get("state_dict"))
    model.context_slices = info.context_slices  # 2.5-D: neighbour slices as channels (0: none)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    logger.info("loaded %s (%s, %s)", path, info.arch, info.task)
    return LoadedModel(model=model, info=info, training_state=payload.get("training_state"))


def _load_weights(path: Path, model: torch.nn.Module, state_dict: Any) -> None:
    import torch

    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path} holds no weights; the file is damaged.")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(v.shape)} (needs {tuple(expected[k].shape)})"
        for k, v in state_dict.items()
        if k in expected and (not isinstance(v, torch.Tensor) or v.shape != expected[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if items
        ]
        raise CheckpointError(
            f"the weights in {path} do not fit its {model.arch} architecture ({'; '.join(parts)}); "
            "the file is damaged or was edited, re-save the model with save_checkpoint."
        )
    model.load_state_dict(state_dict, strict=True)  # copies and casts fp16 weights to float32
