"""Reading a checkpoint file safely: the zip's CRCs, ``torch.load(weights_only=True)`` and the
format checks, every failure turned into one :class:`~napari_unet.core.errors.CheckpointError`.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

from napari_unet.core.checkpoint.info import FORMAT, FORMAT_VERSION, CheckpointInfo
from napari_unet.core.errors import CheckpointError, DeviceError

__all__ = ["check_crcs", "describe_foreign", "info_from_payload", "load_payload"]

logger = logging.getLogger(__name__)


def describe_foreign(path: Path, payload: Any) -> str:
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


def check_crcs(path: Path) -> None:
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


def load_payload(
    path: str | os.PathLike, *, map_location: Any, mmap: bool = False, verify: bool | None = None
) -> dict:
    """``torch.load(weights_only=True)`` with every failure turned into a CheckpointError.

    ``verify`` (default: when not ``mmap``) checks every stored CRC first, reading the file once.
    """
    path = Path(path)
    _check_readable(path, map_location)
    if verify is None:
        verify = not mmap
    if verify:  # torch does not check the CRCs: a flipped byte in the weights would load
        check_crcs(path)
    from napari_unet.core.checkpoint.bioimageio_import import is_package, package_payload

    if is_package(path):  # a bioimage.io package that napari-unet-loop exported
        payload = package_payload(path, map_location=map_location)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    payload = _torch_load(path, map_location, mmap)
    _check_format(path, payload)
    return payload


def info_from_payload(path: Path, payload: dict) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of a loaded payload; CheckpointError when it is invalid."""
    try:
        return CheckpointInfo.from_dict(payload["info"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has an invalid model description ({err}).") from None


def _check_readable(path: Path, map_location: Any) -> None:
    """CheckpointError/DeviceError unless ``path`` is a zip file loadable onto ``map_location``."""
    import torch

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


def _torch_load(path: Path, map_location: Any, mmap: bool) -> Any:
    """``torch.load(weights_only=True)``; an unsafe or damaged file raises CheckpointError."""
    import torch

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
    return payload


def _check_format(path: Path, payload: Any) -> None:
    """CheckpointError unless ``payload`` is one of our checkpoints of a readable version."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(describe_foreign(path, payload))
    version = payload.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path} has an invalid format version {version!r}; it is damaged.")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer napari-unet-loop (checkpoint format {version}; this "
            f"version reads up to {FORMAT_VERSION}); upgrade napari-unet-loop to load it."
        )
