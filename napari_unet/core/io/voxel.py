"""The voxel size ``(z, y, x)`` a TIFF states in its metadata (OME-TIFF or ImageJ), in µm.

3-D models use it twice: ``unet3d_aniso`` chooses which axes to pool from it
(:mod:`napari_unet.core.models.pooling`), and the 3-D watershed measures distances with it
(:func:`napari_unet.core.postprocess.volume.instances_3d`). OME-TIFF gives ``PhysicalSizeZ/Y/X``
(with their units; µm when none is given); an ImageJ hyperstack gives the Z ``spacing`` in its
description and Y/X as the ``YResolution``/``XResolution`` tags (pixels per ``unit``). A file that
states fewer than all three sides gives ``None``: the caller asks for ``--voxel-size``. Only the
metadata is read, never the pixels.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["UNIT_IN_UM", "parse_voxel_size", "read_voxel_size"]

#: Length units (as OME and ImageJ spell them) in micrometres.
UNIT_IN_UM = {
    "nm": 1e-3,
    "nanometer": 1e-3,
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "\\u00B5m": 1.0,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "Å": 1e-4,
}

Voxel = tuple[float, float, float]


def parse_voxel_size(text: str) -> Voxel:
    """``"Z,Y,X"`` (three numbers) as a tuple of floats; checked later by the model rule.

    Raises:
        ValueError: Not three comma-separated numbers (argparse turns it into a usage error).
    """
    parts = [p for p in str(text).replace("x", ",").split(",") if p.strip()]
    if len(parts) != 3:
        raise ValueError(f"expected three numbers Z,Y,X (e.g. 50,4,4), got {text!r}")
    return tuple(float(p) for p in parts)  # type: ignore[return-value]


def _unit(name: str | None) -> float | None:
    if not name:
        return 1.0
    return UNIT_IN_UM.get(str(name).strip())


def _from_ome(xml: str) -> Voxel | None:
    """``PhysicalSizeZ/Y/X`` of the first ``Pixels`` element, in µm (None if one is missing)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        scale = _unit(pixels.get(f"PhysicalSize{axis}Unit"))
        if value is None or scale is None:
            return None
        sizes.append(float(value) * scale)
    return tuple(sizes)  # type: ignore[return-value]


def _from_imagej(metadata: dict, page: object) -> Voxel | None:
    """Z ``spacing`` and the Y/X resolution tags of an ImageJ file, in µm."""
    spacing = metadata.get("spacing")
    scale = _unit(metadata.get("unit"))
    tags = getattr(page, "tags", {})
    if spacing is None or scale is None or "XResolution" not in tags:
        return None
    y_tag = tags["YResolution"] if "YResolution" in tags else tags["XResolution"]
    sides = []
    for tag in (y_tag, tags["XResolution"]):
        numerator, denominator = tag.value
        if not numerator:
            return None
        sides.append(denominator / numerator * scale)
    return (float(spacing) * scale, *sides)  # type: ignore[return-value]


def read_voxel_size(path: str | os.PathLike) -> Voxel | None:
    """The ``(z, y, x)`` voxel size in µm that ``path`` states, or ``None``.

    Non-TIFF files (PNG, Zarr) and TIFFs without a full calibration give ``None``; so does a
    file that cannot be opened (reading the pixels reports that).
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                found = _from_ome(tif.ome_metadata)
            elif tif.is_imagej and tif.imagej_metadata:
                found = _from_imagej(tif.imagej_metadata, tif.pages[0])
            else:
                found = None
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        logger.debug("no voxel size read from %s: %s", path, err)
        return None
    if found is not None:
        logger.info("%s: voxel size (z, y, x) %s µm from its metadata", path.name, found)
    return found
