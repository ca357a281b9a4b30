"""npe2 reader: TIFF (multi-page, OME/ImageJ axes), PNG, and OME-Zarr / Zarr folders.

A TIFF or PNG opens with its ``<name>_labels.tif`` sibling as a Labels layer. A Zarr image opens
lazily (a dask array over its full-resolution level): napari loads the slices on screen, and the
Segment dock reads only the slices it predicts.

No torch and no Qt at import: napari calls this for every file a user drops on the canvas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.core.errors import ImageReadError
from napari_unet.core.io import IMAGE_SUFFIXES, read_image
from napari_unet.core.zarr_io import is_zarr, open_zarr

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]
LABELS_SUFFIX = "_labels"


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
    """``name_labels.<ext>`` beside ``name.<ext>`` (any of the supported extensions)."""
    for suffix in (path.suffix, *IMAGE_SUFFIXES):
        sibling = path.with_name(f"{path.stem}{LABELS_SUFFIX}{suffix}")
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
            layers.append(_zarr_layer(source))
            continue
        if source.stem.endswith(LABELS_SUFFIX):
            layers.append(_labels_layer(source))
            continue
        layers.append(_image_layer(source))
        sibling = _labels_sibling(source)
        if sibling is not None and str(sibling) not in {str(p) for p in paths}:
            layers.append(_labels_layer(sibling))
    return layers


def _zarr_layer(path: Path) -> LayerData:
    """A lazy image layer over the full-resolution level of a Zarr image."""
    import dask.array as da

    lazy = open_zarr(path)
    name = path.name[: -len(".zarr")] if path.suffix.lower() == ".zarr" else path.name
    name = name[:-4] if name.lower().endswith(".ome") else name
    return _image_layer_data(da.from_zarr(lazy.array), lazy.axes, path, name)


def _image_layer(path: Path) -> LayerData:
    data = read_image(path)
    return _image_layer_data(data.image, data.axes, path, path.stem)


def _image_layer_data(image: Any, axes: str | None, path: Path, name: str) -> LayerData:
    meta: dict[str, Any] = {"napari_unet": {"axes": axes, "source": str(path.resolve())}}
    kwargs: dict[str, Any] = {"name": name, "metadata": meta}
    if axes is not None and "C" in axes:
        channel_axis = axes.index("C")
        n_channels = image.shape[channel_axis]
        if axes.endswith("C") and n_channels in (3, 4) and image.dtype == np.uint8:
            kwargs["rgb"] = True
        else:
            kwargs["channel_axis"] = channel_axis
            kwargs["name"] = [f"{name} [{c}]" for c in range(n_channels)]
            # napari splits the channels into layers without the C axis: one metadata each
            channel_axes = axes.replace("C", "")
            kwargs["metadata"] = [
                {"napari_unet": {"axes": channel_axes, "source": str(path.resolve()), "channel": c}}
                for c in range(n_channels)
            ]
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
    name = path.stem
    meta = {"napari_unet": {"axes": data.axes, "source": str(path.resolve())}}
    return labels, {"name": name, "metadata": meta}, "labels"
