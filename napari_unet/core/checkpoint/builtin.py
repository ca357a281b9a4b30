"""The checkpoints shipped with the package (``builtin_models/<name>.pt``), found by name."""

from __future__ import annotations

import os
from pathlib import Path

from napari_unet.core.errors import CheckpointError

__all__ = ["BUILTIN_DIR", "builtin_checkpoints", "resolve_checkpoint"]

#: Folder of the checkpoints shipped with the package (``<name>.pt``).
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "builtin_models"


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
