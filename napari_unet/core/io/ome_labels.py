"""Labels inside an OME-Zarr image: ``IMAGE.zarr/labels/NAME/`` (``predict --labels-in-image``).

The OME-NGFF layout for segmentations of an image: a ``labels`` group inside the image whose
attributes list the label images (``{"labels": ["NAME", ...]}``), each a multiscale image with
``image-label`` metadata (written by :mod:`napari_unet.core.io.ome_pyramid`). napari-ome-zarr,
MoBIE and BigDataViewer then show them with the image.

Only an image this package may add to is used: an OME-NGFF group (``multiscales``) in Zarr
format 2 (OME-NGFF 0.4, like the outputs), writable, whose ``labels/NAME`` is absent or an
earlier prediction (never the user's own labels). The name is listed once the labels are
complete, so a failed run leaves the image's ``labels`` list as it was.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from napari_unet.core.errors import UserInputError
from napari_unet.core.io.marks import written_by_predict

__all__ = ["label_name", "labels_in_image", "register_labels"]

logger = logging.getLogger(__name__)


def label_name(model: str) -> str:
    """A label image name from the model's name: letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", model).strip("_") or "prediction"


def labels_in_image(image: Path, name: str) -> Path | None:
    """``image/labels/name``, once checked that labels may be written there.

    Returns:
        None when ``image`` is not an OME-Zarr image (a plain Zarr array): its labels go to a
        sibling store as usual.

    Raises:
        UserInputError: ``image`` is OME-Zarr in Zarr format 3, is read-only, ``labels/name``
            holds labels this package did not predict, or ome-zarr is not installed.
    """
    import zarr

    from napari_unet.core.io.ome_pyramid import ome_zarr_available
    from napari_unet.core.io.zarr_io import is_zarr

    how = "drop --labels-in-image to write the labels beside it in --out"
    if not ome_zarr_available():
        raise UserInputError(
            'labels inside an OME-Zarr image need ome-zarr: pip install "napari-unet-loop'
            f'[ome-zarr]", or {how}.'
        )
    try:
        group = zarr.open_group(store=str(image), mode="r") if is_zarr(image) else None
    except (ValueError, OSError, KeyError):
        group = None
    attrs = dict(group.attrs) if group is not None else {}
    if group is None or "multiscales" not in attrs.get("ome", attrs):
        logger.info("%s is not an OME-Zarr image: its labels go beside it in --out", image)
        return None
    if group.metadata.zarr_format != 2:
        raise UserInputError(
            f"{image} is OME-Zarr 0.5 (Zarr format 3); labels are written in format 2, so {how}."
        )
    if not os.access(image, os.W_OK):
        raise UserInputError(f"{image} is read-only, so no labels can go inside it; {how}.")
    target = image / "labels" / name
    if target.exists() and not written_by_predict(target):
        raise UserInputError(
            f"{target} holds labels this plugin did not predict (yours?); they were left as "
            f"they are: {how}, or move them."
        )
    return target


def register_labels(image: Path, name: str) -> None:
    """List ``name`` in the ``labels`` attribute of ``image/labels`` (once)."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import add_metadata

    group = zarr.open_group(store=str(image / "labels"), mode="a", zarr_format=2)
    listed = list(group.attrs.get("labels") or [])
    if name not in listed:
        add_metadata(group, {"labels": [*listed, name]}, FormatV04())
