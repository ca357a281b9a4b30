"""Adding an image to a session: check what the user gave, then insert it into the index.

:meth:`napari_unet.session.session.Session.add_image` resolves the input with
:func:`image_input`, checks it with :func:`image_geometry` and runs :meth:`NewImage.insert` as one
transaction under the session's writer lock.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.io.axes import check_axes
from napari_unet.session.errors import SessionError
from napari_unet.session.index import now
from napari_unet.session.paths import check_inside, check_source, is_zarr_source

__all__ = ["NewImage", "image_geometry", "image_input"]


def image_input(name: str, source: str | os.PathLike | None, image: Any) -> tuple[Path | None, Any]:
    """``(absolute source path or None, the image array)`` from what the user gave.

    A Zarr source opens lazily (never loaded whole); a TIFF/PNG source without ``image`` is read.

    Raises:
        SessionError: neither given, the file does not exist, or the Zarr folder is unreadable.
    """
    from napari_unet.core.io.images import read_image

    path = None
    if source is not None:
        path = Path(source).expanduser().absolute()
        check_source(str(path), what=f"image {name!r}")
        if is_zarr_source(path):
            image = open_zarr_source(path, name)
        elif not path.is_file():
            raise SessionError(f"image file {path} does not exist; check the path.")
        elif image is None:
            image = read_image(path).image
    elif image is None:
        raise SessionError(f"image {name!r} has no file and no data; give one of them.")
    return path, image


def image_geometry(name: str, image: Any, axes: str) -> tuple[tuple[int, ...], np.dtype, str]:
    """``(shape, dtype, checked axes)`` of ``image``; :class:`SessionError` when unusable."""
    shape = tuple(int(s) for s in np.shape(image))
    dtype = np.dtype(image.dtype) if hasattr(image, "dtype") else np.asarray(image).dtype
    check_image(name, shape, dtype)
    try:
        axes = check_axes(axes, shape)
    except ValueError as err:
        raise SessionError(f"image {name!r}: {err}") from None
    return shape, dtype, axes


def open_zarr_source(path: Path, name: str) -> Any:
    """The lazy full-resolution array of a Zarr source; :class:`SessionError` if unreadable."""
    from napari_unet.core.errors import ImageReadError
    from napari_unet.core.io.zarr_io import open_zarr

    try:
        return open_zarr(path).array
    except (ImageReadError, OSError) as err:
        raise SessionError(f"image {name!r}: {err}") from None


def check_image(name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse an image the session could never predict or train on."""
    if not shape or 0 in shape:
        raise SessionError(
            f"image {name!r} is empty (shape {shape}); add an image with at least one pixel."
        )
    if dtype.kind not in "biuf":
        raise SessionError(
            f"image {name!r} has {dtype} pixels, which cannot be segmented; give a real-valued "
            "image (integer or floating point), e.g. the magnitude of a complex image."
        )


def same_source(index: dict, path: Path | None, shape: tuple[int, ...]) -> str | None:
    """Id of the image in ``index`` with source file ``path`` and this shape, else None."""
    if path is None:
        return None
    for image_id, raw in index["images"].items():
        if raw.get("source") == str(path) and tuple(raw["shape"]) == shape:
            return image_id
    return None


@dataclasses.dataclass(frozen=True, eq=False)
class NewImage:
    """A checked image to add: the source path (None: a copy is stored), the array and its
    geometry, the task and class names."""

    root: Path
    name: str
    path: Path | None
    image: Any
    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    task: str | None
    class_names: tuple[str, ...] | list[str]

    def insert(self, index: dict, written: list[str]) -> tuple[str, list[str] | None]:
        """A ``Session._mutate`` change: add the image to ``index`` (writing its copy when it has
        no source file); returns ``(image id, superseded files)``, ``None`` when already there."""
        from napari_unet.core.io.images import write_tiff

        # under the lock, on the index just read: another program may have added it a moment ago
        existing = same_source(index, self.path, self.shape)
        if existing is not None:
            return existing, None  # nothing to write
        index["counter"] += 1
        image_id = f"img{index['counter']:04d}"
        copy_path = None
        if self.path is None:
            copy_path = f"images/{image_id}.tif"
            target = check_inside(
                self.root, copy_path, what=f"image {self.name!r}", folder="images"
            )
            write_tiff(target, np.asarray(self.image), axes=self.axes)
            written.append(copy_path)
        index["images"][image_id] = {
            "name": str(self.name),
            "source": str(self.path) if self.path else None,
            "copy": copy_path,
            "axes": self.axes,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "task": self.task,
            "class_names": [str(c) for c in self.class_names],
            "created": now(),
            "slices": {},
        }
        return image_id, []
