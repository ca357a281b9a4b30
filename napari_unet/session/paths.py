"""Path safety and default locations of session folders.

Every path stored in a session index is checked before it is used:

- data paths (labels, masks, snapshots, image copies, model files) are relative POSIX paths under
  their expected sub-folder, with no ``..``, no drive or absolute part, no backslash, and they must
  still lie inside the session once symbolic links are resolved;
- an image ``source`` is an absolute path to an image file (:data:`SOURCE_SUFFIXES`) or a Zarr
  folder (:data:`ZARR_SUFFIX`) that the session only ever reads.

So a session folder received from someone else cannot make napari read or write elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from napari_unet.core.io.images import image_stem
from napari_unet.session.errors import SessionError

#: Image files an index may point at as a ``source`` (only ever read; ``.ome.tif`` included).
SOURCE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png")
#: Suffix of a Zarr / OME-Zarr folder an index may point at as a ``source`` (read lazily, so a
#: volume larger than memory is referenced, never copied into the session).
ZARR_SUFFIX = ".zarr"
#: Suffix of the default session folder created next to an image file.
SESSION_SUFFIX = ".unet-session"
#: Environment variable overriding the folder of sessions for images without a file.
SESSIONS_DIR_ENV = "NAPARI_UNET_SESSIONS_DIR"

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def check_id(value: object, *, what: str) -> str:
    """Return ``value`` if it is a safe identifier (letters, digits, ``_``, ``-``; <= 64 chars)."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise SessionError(
            f"{what} has an invalid id {value!r}; the session index is damaged or was edited by "
            "hand — restore session.json from a backup or create a new session."
        )
    return value


def check_inside(root: Path, relative: object, *, what: str, folder: str | tuple[str, ...]) -> Path:
    """Resolve a stored relative path and make sure it stays inside ``root / folder``.

    Args:
        root: the session folder.
        relative: the path as stored in the index, e.g. ``"labels/img0001/00000-000003.npz"``.
        what: the index entry, named in the error (e.g. ``"image 'img0001' slice 3 labels"``).
        folder: the sub-folder(s) the path may lie in (``"labels"``, ``"models"``...).

    Returns:
        The absolute path (not resolved, so a later unlink removes a link, not its target).

    Raises:
        SessionError: the path is not a string, absolute, has ``..``, a drive or a backslash, is
            outside ``folder``, or leads outside the session through a symbolic link.
    """
    refuse = (
        f"{what} points at {relative!r}, outside the session folder {root}; the session was "
        "damaged or crafted to reach other files, so it is not used — open only sessions you "
        "trust, or create a new one."
    )
    if not isinstance(relative, str) or not relative or "\\" in relative or "\x00" in relative:
        raise SessionError(refuse)
    posix = PurePosixPath(relative)
    folders = (folder,) if isinstance(folder, str) else folder
    if (
        posix.is_absolute()
        or PureWindowsPath(relative).drive
        or any(part in ("..", ".", "") for part in relative.split("/"))
        or posix.parts[0] not in folders
        or len(posix.parts) < 2
    ):
        raise SessionError(refuse)
    path = root.joinpath(*posix.parts)
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(real_root / posix.parts[0]):
        raise SessionError(refuse)
    return path


def check_source(source: object, *, what: str) -> Path:
    """Check an image ``source``: an absolute path to a TIFF/PNG file or a ``.zarr`` folder."""
    if not isinstance(source, str) or not source or "\x00" in source:
        raise SessionError(f"{what} has an invalid image path {source!r}; re-add the image.")
    path = Path(source)
    name = path.name.lower()
    if not path.is_absolute() or not name.endswith((*SOURCE_SUFFIXES, ZARR_SUFFIX)):
        raise SessionError(
            f"{what} points at {source!r}, which is not an absolute path to a TIFF, PNG or Zarr "
            "image; the session was damaged or crafted, so it is not used — open only sessions "
            "you trust."
        )
    return path


def is_zarr_source(path: str | os.PathLike) -> bool:
    """True when an image ``source`` names a Zarr folder (read lazily, slice by slice)."""
    return Path(path).name.lower().endswith(ZARR_SUFFIX)


def sanitize_name(name: str, *, default: str = "session") -> str:
    """A file-name-safe version of a layer name: ``[A-Za-z0-9._-]``, no leading dot, <= 64 chars."""
    cleaned = _UNSAFE_CHARS.sub("_", str(name)).strip("._")[:64].strip("._")
    return cleaned or default


def user_sessions_dir() -> Path:
    """Folder of sessions for images without a file.

    ``$NAPARI_UNET_SESSIONS_DIR`` if set, else ``$XDG_DATA_HOME/napari-unet-loop/sessions``
    (``~/.local/share`` when unset; ``%LOCALAPPDATA%`` on Windows).
    """
    override = os.environ.get(SESSIONS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_DATA_HOME")
    if not base and os.name == "nt":
        base = os.environ.get("LOCALAPPDATA")
    data_home = Path(base).expanduser() if base else Path.home() / ".local" / "share"
    return data_home / "napari-unet-loop" / "sessions"


def default_session_folder(image_path: str | os.PathLike | None, layer_name: str) -> Path:
    """Where a new session for an image goes by default.

    Next to the image file as ``<image stem>.unet-session/`` when the image has a file in a
    writable folder; otherwise under :func:`user_sessions_dir`, named after the image stem or the
    sanitised layer name (reopening the same layer finds its session again).
    """
    if image_path is not None:
        image_path = Path(image_path).expanduser().absolute()
        stem = image_stem(image_path)
        if os.access(image_path.parent, os.W_OK):
            return image_path.parent / f"{stem}{SESSION_SUFFIX}"
        return user_sessions_dir() / sanitize_name(stem)
    return user_sessions_dir() / sanitize_name(layer_name)
