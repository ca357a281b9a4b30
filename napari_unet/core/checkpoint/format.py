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

import dataclasses
import datetime
import logging
import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_unet.core.atomic import atomic_write_with
from napari_unet.core.config import Config, check_task
from napari_unet.core.errors import CheckpointError, DeviceError

if TYPE_CHECKING:
    import torch

    from napari_unet.core.inference.normalization import NormalizationConfig
    from napari_unet.core.models import SegmentationNet

if TYPE_CHECKING:
    from napari_unet.core.postprocess.config import PostprocessConfig

logger = logging.getLogger(__name__)

FORMAT = "napari-unet-loop checkpoint"
FORMAT_VERSION = 1
#: Folder of the checkpoints shipped with the package (``<name>.pt``).
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "builtin_models"
_WEIGHT_DTYPES = ("float32", "float16")


def default_class_names(task: str, out_channels: int) -> tuple[str, ...]:
    """Class names used when none are given: one per class the labels can hold."""
    if task == "binary":
        return ("background", "foreground")
    if task == "instances":
        return ("background", "interior", "boundary")
    if task == "semantic":
        return ("background", *(f"class {k}" for k in range(1, out_channels)))
    return ()


@dataclasses.dataclass(frozen=True)
class CheckpointInfo(Config):
    """Everything a checkpoint says about its model, as plain data.

    Attributes:
        arch: registry name (``build_model(arch, **model_config)`` rebuilds the network).
        model_config: the network's constructor settings.
        task: ``binary`` (1 channel), ``semantic`` (K >= 2), ``instances`` (3) or ``restoration``.
        in_channels, out_channels: the network's input and logit channels.
        class_names: one name per class of the labels (binary: background and foreground).
        normalization: ``NormalizationConfig.to_dict()``; empty means the default.
        tile_shape: preferred tile (Y, X) for prediction, or None for the predictor's default.
        overlap: preferred tile overlap in pixels, or None.
        provenance: where it came from: created, parent, data, steps, metrics, software, card...
        name, description: shown in model lists.
        format_version: the file format version it was read from or will be written with.
    """

    arch: str
    model_config: dict
    task: str
    in_channels: int
    out_channels: int
    class_names: tuple[str, ...] = ()
    normalization: dict = dataclasses.field(default_factory=dict)
    tile_shape: tuple[int, int] | None = None
    overlap: int | None = None
    provenance: dict = dataclasses.field(default_factory=dict)
    name: str = ""
    description: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        try:
            check_task(self.task)
        except ValueError as err:
            raise CheckpointError(f"{err}.") from None
        for field in ("in_channels", "out_channels"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(f"{field} must be a positive integer, got {value!r}.")
        needed = {"binary": "1", "instances": "3"}.get(self.task)
        if (needed and self.out_channels != int(needed)) or (
            self.task == "semantic" and self.out_channels < 2
        ):
            needed = needed or "at least 2"
            raise CheckpointError(
                f"a {self.task} model needs {needed} output channel(s) but this one has "
                f"{self.out_channels}; build the model with out_channels={needed} or pick the "
                "task that matches its output."
            )
        names = tuple(str(n) for n in (self.class_names or ()))
        names = names or default_class_names(self.task, self.out_channels)
        expected = len(default_class_names(self.task, self.out_channels))
        if self.task != "restoration" and len(names) != expected:
            raise CheckpointError(
                f"a {self.task} model with {self.out_channels} output channel(s) needs {expected} "
                f"class names, got {len(names)} ({', '.join(names)})."
            )
        object.__setattr__(self, "class_names", names)
        if self.tile_shape is not None:
            object.__setattr__(self, "tile_shape", tuple(int(s) for s in self.tile_shape))
        if not isinstance(self.model_config, dict) or not isinstance(self.provenance, dict):
            raise CheckpointError("model_config and provenance must be dicts.")

    @property
    def spatial_dims(self) -> int:
        """2 for an image model, 3 for a volume model (from the architecture; 2 if unknown)."""
        from napari_unet.core.models import architecture_spatial_dims

        try:
            return architecture_spatial_dims(self.arch)
        except ValueError:
            return 2

    def normalization_config(self) -> NormalizationConfig:
        """The stored normalisation as a
        :class:`napari_unet.core.inference.normalization.NormalizationConfig`."""
        from napari_unet.core.inference.normalization import NormalizationConfig

        return NormalizationConfig.from_dict(dict(self.normalization))

    def postprocess_config(self, **overrides: object) -> PostprocessConfig:
        """The model's post-processing defaults (``provenance["postprocess"]``) with overrides.

        Built-in models store tuned values there (e.g. ``foreground_class`` for EM neurite
        regions, a threshold and minimum size for nuclei); ``None`` overrides are ignored, so a
        CLI flag or GUI field the user left alone keeps the model's value. ``output`` defaults to
        instances for an instance model.
        """
        from napari_unet.core.postprocess.labels import postprocess_with_defaults

        defaults = dict(self.provenance.get("postprocess") or {})
        defaults.setdefault("output", "instances" if self.task == "instances" else "semantic")
        return postprocess_with_defaults(defaults, **overrides)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """A loaded checkpoint: ``model`` (eval mode, float32), its ``info`` and ``training_state``."""

    model: SegmentationNet
    info: CheckpointInfo
    training_state: Any = None


def _plain(value: Any, where: str) -> Any:
    """Check/convert ``value`` to what ``torch.load(weights_only=True)`` rebuilds (no objects)."""
    import numpy as np
    import torch

    if value is None or isinstance(value, torch.Tensor):
        return value
    for kind in (bool, int, float, str):  # subclasses (TorchVersion, IntEnum) are objects to pickle
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (os.PathLike, datetime.datetime)):
        return str(value)
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(
        f"{where} holds a {type(value).__name__}; a checkpoint stores only tensors and plain data "
        "(dict, list, str, numbers)"
    )


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

    from napari_unet import __version__

    weights_dtype = weights_dtype or "float32"
    if weights_dtype not in _WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype must be one of {_WEIGHT_DTYPES}, got {weights_dtype!r}")
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
        provenance=_plain(provenance, "provenance"),
        name=name,
        description=description,
    )
    info.normalization_config()  # validates the stored normalisation now, not at load time
    state_dict = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu", copy=True).contiguous()  # no shared/oversized storage
        if weights_dtype == "float16" and tensor.is_floating_point():
            half = tensor.half()
            if torch.isfinite(half).all() or not torch.isfinite(tensor).all():
                tensor = half
        state_dict[key] = tensor
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "info": info.to_dict(),
        "weights_dtype": weights_dtype,
        "state_dict": state_dict,
        "training_state": _plain(training_state, "training_state"),
    }
    atomic_write_with(path, lambda handle: torch.save(payload, handle))
    logger.info("saved %s checkpoint %s (%s, %s)", task, path, info.arch, weights_dtype)
    return Path(path)


def _describe_foreign(path: Path, payload: Any) -> str:
    """The message for a file that loads but is not one of our checkpoints."""
    import torch

    if (
        isinstance(payload, dict)
        and payload
        and all(isinstance(v, torch.Tensor) for v in payload.values())
    ):
        example = next(iter(payload))
        return (
            f"{path} is not a napari-unet-loop checkpoint: this looks like a bare PyTorch "
            f"state_dict ({len(payload)} tensors, e.g. {example!r}) that does not say which "
            "architecture or task it belongs to; build the matching model with "
            "napari_unet.core.models.build_model, load the state_dict into it and save it with "
            "napari_unet.core.checkpoint.format.save_checkpoint."
        )
    if isinstance(payload, dict):
        keys = ", ".join(repr(k) for k in list(payload)[:6])
        return (
            f"{path} is not a napari-unet-loop checkpoint (a file from another tool, top-level "
            f"keys {keys}); rebuild the model with napari_unet.core.models.build_model, load its "
            "weights and save it with save_checkpoint, or ask the sender for a napari-unet-loop "
            "checkpoint."
        )
    return (
        f"{path} is not a napari-unet-loop checkpoint (it holds a {type(payload).__name__}); "
        "pass a .pt file saved by napari-unet-loop."
    )


def _check_crcs(path: Path) -> None:
    """Read every member of the zip once and compare its CRC (the member's name stays inside).

    Raises:
        CheckpointError: a checksum does not match or a member cannot be read.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        logger.info("%s cannot be read: %s", path, err)
        raise CheckpointError(
            f"{path} is damaged (its data cannot be read): copy it again or pick another "
            "checkpoint."
        ) from None
    if bad is not None:
        logger.info("%s: the CRC of %s does not match", path, bad)
        raise CheckpointError(
            f"{path} is damaged (a checksum does not match): copy it again or pick another "
            "checkpoint."
        )


def _load_payload(
    path: str | os.PathLike, *, map_location: Any, mmap: bool = False, verify: bool | None = None
) -> dict:
    """``torch.load(weights_only=True)`` with every failure turned into a CheckpointError.

    ``verify`` (default: when not ``mmap``) checks every stored CRC first, reading the file once.
    """
    import torch

    path = Path(path)
    if isinstance(map_location, (str, torch.device)):
        wanted = torch.device(map_location)
        if wanted.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(
                f"cannot load {path} onto {wanted}: CUDA is not available on this machine; "
                "load it onto the CPU (map_location='cpu')."
            )
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}; pass the path of a .pt checkpoint file.")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head.startswith(b"PK"):
            reason = "it is truncated or damaged (an interrupted download or copy?)"
        else:
            reason = "it is not a PyTorch checkpoint file"
        raise CheckpointError(f"cannot load {path}: {reason}; copy or download it again.")
    if verify is None:
        verify = not mmap
    if verify:  # torch does not check the CRCs: a flipped byte in the weights would load
        _check_crcs(path)
    from napari_unet.core.checkpoint.bioimageio_import import is_package, package_payload

    if is_package(path):  # a bioimage.io package that napari-unet-loop exported
        payload = package_payload(path, map_location=map_location)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "global" in str(err).lower():  # the unpickler met a class or function: refused unrun
            raise CheckpointError(
                f"loading {path} was refused: it contains Python objects, not just tensors and "
                "plain data; it may execute code when loaded, so napari-unet-loop does not open "
                "it. Re-save it with napari-unet-loop (save_checkpoint) in a trusted environment, "
                "or ask the sender for a napari-unet-loop checkpoint."
            ) from None
        raise CheckpointError(
            f"cannot load {path}: it is damaged ({err}); copy it again."
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"cannot load {path}: it is truncated or damaged ({type(err).__name__}: {err}); "
            "copy or download it again."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(_describe_foreign(path, payload))
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path} has an invalid format version {version!r}; it is damaged.")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer napari-unet-loop (checkpoint format {version}; this "
            f"version reads up to {FORMAT_VERSION}); upgrade napari-unet-loop to load it."
        )
    return payload


def _info_from_payload(path: Path, payload: dict) -> CheckpointInfo:
    try:
        return CheckpointInfo.from_dict(payload["info"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has an invalid model description ({err}).") from None


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
    payload = _load_payload(path, map_location="cpu", mmap=True, verify=verify)
    return _info_from_payload(Path(path), payload)


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
    payload = _load_payload(path, map_location=map_location)
    info = _info_from_payload(path, payload)
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


def builtin_checkpoints() -> dict[str, Path]:
    """Checkpoints shipped with the package: ``{name: path}`` from ``builtin_models/*.pt``."""
    if not BUILTIN_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.pt"))}


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint file from a path or the name of a built-in checkpoint.

    Raises:
        CheckpointError: neither an existing file nor a built-in name (lists the built-ins).
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    builtins = builtin_checkpoints()
    if str(name_or_path) in builtins:
        return builtins[str(name_or_path)]
    known = ", ".join(builtins) if builtins else "none are installed"
    raise CheckpointError(
        f"no checkpoint file or built-in model named {str(name_or_path)!r} (built-in models: "
        f"{known}); pass the path of a .pt checkpoint file, e.g. --model path/to/model.pt."
    )
