"""Where a session's images come from and where a new session goes (no Qt).

Used by the session panel: the file an image layer was read from, reading a referenced image
back (:func:`restore_image`) with its stored labels (:func:`stored_labels`), a free folder for a
new session, and "saved 3 s ago".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_unet._widgets import layers as L
from napari_unet._widgets import reviewed as rv
from napari_unet.core.errors import UserInputError
from napari_unet.session.paths import SESSION_SUFFIX


def image_source(layer: Any) -> str | None:
    """The file an image layer was read from (``source.path`` or the plugin tag), or None.

    A layer that is one channel of a multi-channel file (the reader's tag has ``"channel"``) has
    no file of its own: None, so the session stores a copy of the layer's data instead of
    pointing every channel at the same (C, Y, X) file.
    """
    tag = layer.metadata.get(L.TAG) if isinstance(layer.metadata, dict) else None
    if isinstance(tag, dict) and tag.get("channel") is not None:
        return None
    path = getattr(getattr(layer, "source", None), "path", None)
    if not path:
        path = tag.get("source") if isinstance(tag, dict) else None
    return str(path) if path else None


def read_source(path: str | Path) -> Any:
    """An image file read whole, or a Zarr folder opened lazily (a dask array, as the reader)."""
    from napari_unet.core.io.images import read_image
    from napari_unet.session.paths import is_zarr_source

    if is_zarr_source(path):
        import dask.array as da

        from napari_unet.core.io.zarr_io import open_zarr

        return da.from_zarr(open_zarr(path).array)
    return read_image(path).image


def free_folder(folder: Path) -> Path:
    """``folder`` if it holds no session yet, else ``<name>-2``, ``-3``... beside it."""
    candidate, n = folder, 1
    stem = folder.name.removesuffix(SESSION_SUFFIX)
    while (candidate / "session.json").exists() or (
        candidate.exists() and any(candidate.iterdir())
    ):
        n += 1
        candidate = folder.with_name(f"{stem}-{n}{SESSION_SUFFIX}")
    return candidate


def ago(seconds: float) -> str:
    """``"just now"``, ``"3 s ago"``, ``"2 min ago"``."""
    if seconds < 1:
        return "just now"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


def restore_image(viewer: Any, entry: Any) -> Any:
    """The image layer of session image ``entry``: the open one of that name and shape, else
    read from its source (or the session's copy) and added.

    Raises:
        UserInputError: the file now has another shape than the session recorded.
    """
    image = next((la for la in viewer.layers if la.name == entry.name), None)
    if image is not None and tuple(np.shape(image.data)) == entry.shape:
        return image
    path = entry.source or entry.copy
    data = read_source(path)
    if tuple(data.shape) != entry.shape:
        raise UserInputError(
            f"The image {path} now has shape {tuple(data.shape)}, not "
            f"{entry.shape} as in the session; restore the original."
        )
    return viewer.add_image(
        data,
        name=entry.name,
        rgb=entry.axes.endswith("C") and data.shape[-1] in (3, 4),
        metadata={L.TAG: {"axes": entry.axes, "source": str(path)}},
    )


def stored_labels(session: Any, entry: Any, image_name: str) -> tuple[np.ndarray, dict]:
    """The labels volume of ``entry`` (``entry.labels_shape``) and its plugin tag (snapshot,
    predicted slices, reviewed mask) from what ``session`` stores."""
    shape, statuses = entry.labels_shape, session.statuses(entry.id)
    stored = {
        s: session.load_slice(entry.id, s)
        for s, status in enumerate(statuses)
        if status != "unlabelled"
    }
    arrays = [a for d in stored.values() for a in (d.labels, d.snapshot) if a is not None]
    dtype = np.result_type(*arrays) if arrays else np.uint16
    tag = L.labels_metadata(
        image_name,
        shape,
        task=entry.task or "semantic",
        output="instances" if entry.kind == "instances" else "semantic",
        model="session",
        dtype=dtype,
    )
    volume = np.zeros(shape, dtype=dtype)
    for s, data in stored.items():
        key = rv.slice_key(shape, s)
        if data.labels is not None:
            volume[key] = data.labels
        if data.snapshot is not None:
            tag["snapshot"][key] = data.snapshot
            tag["predicted"].append(s)
        if data.reviewed is not None:
            tag["reviewed"][key] = data.reviewed
    return volume, tag
