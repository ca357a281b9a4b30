"""Open a bioimage.io package that napari-unet-loop exported, as if it were a checkpoint.

A lab shares a fine-tuned model on bioimage.io (or by e-mail) as the ``.zip`` that
:func:`napari_unet.core.checkpoint.bioimageio_export.export_bioimageio` writes; another lab opens
that ``.zip`` wherever a checkpoint is accepted (``--model``, the Segment dock's *Load…*, *Start
from* in the Fine-tune dock) and predicts with it or fine-tunes it further. :func:`package_payload`
turns the package into the payload :func:`napari_unet.core.checkpoint.format.load_checkpoint` reads:
the network's state dict (without the built-in activation) and the description kept in
``config.napari-unet-loop``. Packages made by other tools are refused with a message saying what
runs them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from pathlib import Path
from typing import Any

from napari_unet.core.errors import CheckpointError

__all__ = ["DESCRIPTION_FILES", "is_package", "package_payload"]

logger = logging.getLogger(__name__)

#: Names of the model description at the root of a bioimage.io package.
DESCRIPTION_FILES = ("rdf.yaml", "bioimageio.yaml")
#: Where :class:`~napari_unet.core.models.export.ProbabilityNet` is imported from.
OUR_ARCHITECTURE = "napari_unet.core.models.export"


def _description_name(archive: zipfile.ZipFile) -> str | None:
    names = set(archive.namelist())
    return next((name for name in DESCRIPTION_FILES if name in names), None)


def is_package(path: str | Path) -> bool:
    """True for a zip file with a bioimage.io model description at its root."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _description_name(archive) is not None
    except (OSError, zipfile.BadZipFile):
        return False


def package_payload(path: str | Path, *, map_location: Any = "cpu") -> dict:
    """The checkpoint payload (``info``, ``state_dict``) of a package we exported; the caller,
    :func:`~napari_unet.core.checkpoint.format._load_payload`, adds the format stamp (so this
    module does not import the one that imports it).

    Raises:
        CheckpointError: another tool's package, a damaged one (checksum, missing file), or
            weights that are not plain tensors.
    """
    path = Path(path)
    rdf, ours, weights, data = _read_package(path)
    state = _load_state(path, weights, data, map_location)
    info = _payload_info(path, rdf, ours)
    state_dict = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    logger.info("opened bioimage.io package %s (%s, %s)", path, info["arch"], info["task"])
    return {
        "info": info,
        "state_dict": state_dict,
        "training_state": None,
    }


def _read_package(path: Path) -> tuple[dict, dict, dict, bytes]:
    """``(rdf, config.napari-unet-loop, the state-dict weights entry, the weights' bytes)``.

    Raises:
        CheckpointError: an unreadable description, another tool's package, missing weights.
    """
    import yaml

    with zipfile.ZipFile(path) as archive:
        try:
            rdf = yaml.safe_load(archive.read(_description_name(archive) or DESCRIPTION_FILES[0]))
        except (KeyError, yaml.YAMLError) as err:
            raise CheckpointError(
                f"{path}: its model description cannot be read ({err})."
            ) from None
        rdf = rdf if isinstance(rdf, dict) else {}
        ours = (rdf.get("config") or {}).get("napari-unet-loop")
        weights = (rdf.get("weights") or {}).get("pytorch_state_dict") or {}
        source = (weights.get("architecture") or {}).get("import_from")
        if not isinstance(ours, dict) or source != OUR_ARCHITECTURE:
            raise CheckpointError(
                f"{path} is a bioimage.io model ({rdf.get('name', 'unnamed')!r}) from another "
                "tool; napari-unet-loop opens only the packages it exported. Run this one with "
                "bioimageio.core (bioimageio predict), deepImageJ or ilastik."
            )
        try:
            data = archive.read(weights["source"])
        except KeyError:
            raise CheckpointError(
                f"{path} lacks its weights file {weights.get('source')!r}; it is damaged."
            ) from None
    return rdf, ours, weights, data


def _load_state(path: Path, weights: dict, data: bytes, map_location: Any) -> dict:
    """The state dict in ``data``, checksum checked, loaded with ``weights_only=True``.

    Raises:
        CheckpointError: a failed checksum, damaged weights or weights that hold Python objects.
    """
    import torch

    if weights.get("sha256") and hashlib.sha256(data).hexdigest() != weights["sha256"]:
        raise CheckpointError(f"{path}: its weights fail their checksum; download it again.")
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling refusals and damage alike: never run its code
        raise CheckpointError(
            f"cannot load the weights in {path} ({type(err).__name__}); the package is damaged or "
            "holds Python objects, which napari-unet-loop does not open."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its weights are not a state dict; it is damaged.")
    return state


def _payload_info(path: Path, rdf: dict, ours: dict) -> dict[str, Any]:
    """The checkpoint ``info`` kept in ``config.napari-unet-loop`` (plus the package's name)."""
    model_config = dict(ours.get("model_config") or {})
    provenance = dict(ours.get("provenance") or {})
    provenance.setdefault("parent", ours.get("parent"))
    provenance.setdefault("postprocess", ours.get("postprocess") or {})
    provenance["bioimageio_package"] = {"file": str(path), "name": rdf.get("name")}
    return {
        "arch": ours.get("arch"),
        "model_config": model_config,
        "task": ours.get("task"),
        "in_channels": model_config.get("in_channels"),
        "out_channels": model_config.get("out_channels"),
        "class_names": list(ours.get("class_names") or ()),
        "normalization": dict(ours.get("normalization") or {}),
        "tile_shape": ours.get("tile_shape"),
        "overlap": ours.get("overlap"),
        "provenance": provenance,
        "name": str(rdf.get("name") or path.stem),
        "description": str(rdf.get("description") or ""),
    }
