"""npe2 reader: TIFF (multi-page, OME/ImageJ axes), PNG, and OME-Zarr / Zarr folders.

A TIFF or PNG opens with its ``<name>_labels.tif`` sibling as a Labels layer. A Zarr image opens
lazily (a dask array over its full-resolution level): napari loads the slices on screen, and the
Segment dock reads only the slices it predicts. A ``<name>_labels.zarr`` (what ``napari-unet-loop
predict`` writes for ``<name>.ome.zarr``) opens as a Labels layer, beside its image when that is
opened: in memory, so it can be corrected, up to :data:`ZARR_LABELS_IN_MEMORY` bytes, lazily (view
only) above that.

No torch and no Qt at import: napari calls this for every file a user drops on the canvas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import ImageReadError
from napari_unet.core.io.images import IMAGE_SUFFIXES, image_stem, read_image
from napari_unet.core.io.marks import read_mark
from napari_unet.core.io.zarr_io import is_zarr, open_zarr

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]
LABELS_SUFFIX = "_labels"
#: Largest Zarr labels volume loaded into memory (an editable Labels layer); a bigger one opens
#: lazily, which napari shows but cannot paint into.
ZARR_LABELS_IN_MEMORY = 2 * 1024**3


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader for TIFF/PNG files or Zarr folders (or a list of them), else ``None``."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_handles(p) for p in paths):
        return None
    return read_layers


def _handles(path: str | Path) -> bool:
    candidate = Path(path)
    if candidate.is_dir():
        return is_zarr(candidate)
    return candidate.suffix.lower() in IMAGE_SUFFIXES


def _labels_sibling(path: Path) -> Path | None:
    """``name_labels.<ext>`` beside ``name.<ext>`` or ``name.ome.tif`` (any supported extension)."""
    for suffix in (path.suffix, *IMAGE_SUFFIXES):
        sibling = path.with_name(f"{image_stem(path)}{LABELS_SUFFIX}{suffix}")
        if sibling.is_file():
            return sibling
    return None


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read each path into napari layer data; a labels sibling opens as a Labels layer too.

    Raises:
        ImageReadError: A file is missing, corrupt or unsupported (napari shows the message).
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[LayerData] = []
    for item in paths:
        source = Path(item)
        if is_zarr(source):
            if image_stem(source).endswith(LABELS_SUFFIX) or _inside_labels(source):
                layers.append(_zarr_labels_layer(source))
                continue
            layers.append(_zarr_layer(source))
            sibling = source.with_name(f"{image_stem(source)}{LABELS_SUFFIX}.zarr")
            if is_zarr(sibling) and str(sibling) not in {str(p) for p in paths}:
                layers.append(_zarr_labels_layer(sibling))
            for inside in _predicted_labels_inside(source):
                if str(inside) not in {str(p) for p in paths}:
                    layers.append(_zarr_labels_layer(inside))
            continue
        if source.stem.endswith(LABELS_SUFFIX):
            layers.append(_labels_layer(source))
            continue
        layers.append(_image_layer(source))
        sibling = _labels_sibling(source)
        if sibling is not None and str(sibling) not in {str(p) for p in paths}:
            layers.append(_labels_layer(sibling))
    return layers


def _inside_labels(path: Path) -> bool:
    """True for a label image of an OME-Zarr image: ``IMAGE.zarr/labels/NAME``."""
    return path.parent.name == "labels" and is_zarr(path.parent.parent)


def _predicted_labels_inside(image: Path) -> list[Path]:
    """The label images in ``image/labels`` that ``predict --labels-in-image`` wrote (marked)."""
    folder = image / "labels"
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if is_zarr(p) and read_mark(p) is not None]


def _zarr_layer(path: Path) -> LayerData:
    """A lazy image layer over the full-resolution level of a Zarr image."""
    import dask.array as da

    lazy = open_zarr(path)
    return _image_layer_data(da.from_zarr(lazy.array), lazy.axes, path, image_stem(path))


def _zarr_labels_layer(path: Path) -> LayerData:
    """A Labels layer from a Zarr labels volume: in memory when it fits, else lazy (view only)."""
    import dask.array as da

    lazy = open_zarr(path)
    dtype = np.dtype(lazy.array.dtype)
    if dtype.kind not in "iu":
        raise ImageReadError(
            f"{path} holds {dtype} values, so it cannot open as labels; labels are integers."
        )
    size = int(np.prod(lazy.shape)) * dtype.itemsize
    if size <= ZARR_LABELS_IN_MEMORY:
        labels = np.asarray(lazy.array[...])
    else:
        logger.warning(
            "%s is %.1f GB: opened lazily, so napari shows it but cannot paint into it",
            path,
            size / 1e9,
        )
        labels = da.from_zarr(lazy.array)
    if _inside_labels(path):  # IMAGE.zarr/labels/NAME: named and tagged after its image
        name = f"{image_stem(path.parent.parent)} {path.name}{LABELS_SUFFIX}"
    else:
        name = image_stem(path)
    return labels, _labels_kwargs(labels, lazy.axes, path, name), "labels"


def _labels_kwargs(labels: Any, axes: str | None, path: Path, name: str) -> dict[str, Any]:
    """Layer kwargs of a labels file; a marked prediction gets the plugin's predicted-labels tag.

    The tag (DEVELOPERS.md, GUI contracts) makes the file its own snapshot with every slice
    predicted and nothing reviewed, so only what the user changes counts as a correction. An
    unmarked file is the user's annotation. A lazy (too big) volume is never tagged: it is view
    only.
    """
    tag: dict[str, Any] = {"axes": axes, "source": str(path.resolve())}
    mark = read_mark(path)
    if mark is not None and isinstance(labels, np.ndarray):
        image_name = name[: -len(LABELS_SUFFIX)] if name.endswith(LABELS_SUFFIX) else name
        if _inside_labels(path):
            image_name = image_stem(path.parent.parent)
        tag.update(
            role="labels",
            image_layer=image_name,
            task=mark.task,
            output=mark.output,
            model=mark.model,
            snapshot=labels.copy(),
            predicted=list(range(int(np.prod(labels.shape[:-2], dtype=np.int64)))),
            reviewed=np.zeros(labels.shape, dtype=bool),
            session_image_id=None,
        )
    return {"name": name, "metadata": {"napari_unet": tag}}


def _image_layer(path: Path) -> LayerData:
    data = read_image(path)
    return _image_layer_data(data.image, data.axes, path, image_stem(path))


def _image_layer_data(image: Any, axes: str | None, path: Path, name: str) -> LayerData:
    meta: dict[str, Any] = {"napari_unet": {"axes": axes, "source": str(path.resolve())}}
    kwargs: dict[str, Any] = {"name": name, "metadata": meta}
    # a multichannel image stays one layer with its channel axis (a slider in napari), named in
    # the tag's axes, so a multichannel model gets every channel; 8-bit RGB(A) shows as colour
    rgb = axes is not None and axes.endswith("C") and image.shape[-1] in (3, 4)
    if rgb and image.dtype == np.uint8:
        kwargs["rgb"] = True
    return image, kwargs, "image"


def _labels_layer(path: Path) -> LayerData:
    data = read_image(path)
    labels = data.image
    if labels.dtype.kind == "f" and (
        not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
    ):
        raise ImageReadError(
            f"{path} holds non-integer values, so it cannot open as labels; save the labels "
            "as an integer image."
        )
    if labels.dtype.kind not in "iu":
        labels = labels.astype(np.int32 if labels.min(initial=0) < 0 else np.uint32)
    if labels.dtype.kind == "i" and labels.min(initial=0) >= 0:
        labels = labels.astype(np.uint32 if labels.dtype.itemsize > 2 else np.uint16)
    return labels, _labels_kwargs(labels, data.axes, path, image_stem(path)), "labels"
