"""npe2 sample data: synthetic images generated on the fly, and two real images (see _datasets).

Each function returns napari layer data tuples: the image and its ground truth as a Labels layer.
"""

from __future__ import annotations

from typing import Any

from napari_unet._datasets import load_dsb_nuclei, load_isbi_slice
from napari_unet.core.synthetic import synthetic_em, synthetic_nuclei

LayerData = tuple[Any, dict[str, Any], str]


def _meta(source: str) -> dict[str, Any]:
    return {"napari_unet": {"axes": "YX", "source": source}}


def synthetic_nuclei_sample() -> list[LayerData]:
    """A 512x512 synthetic fluorescent-nuclei image (uint16) and its instance labels."""
    image, labels = synthetic_nuclei((512, 512), n_nuclei=160, seed=7)
    return [
        (image, {"name": "nuclei", "metadata": _meta("synthetic")}, "image"),
        (labels, {"name": "nuclei ground truth", "visible": False}, "labels"),
    ]


def synthetic_em_sample() -> list[LayerData]:
    """A 512x512 synthetic EM-like image (uint8), membrane labels (1 = membrane) and the cells."""
    image, membranes, cells = synthetic_em((512, 512), n_cells=120, seed=7)
    return [
        (image, {"name": "em", "metadata": _meta("synthetic")}, "image"),
        (membranes, {"name": "em membranes (ground truth)", "visible": False}, "labels"),
        (cells, {"name": "em cells (ground truth)", "visible": False}, "labels"),
    ]


def isbi2012_sample() -> list[LayerData]:
    """Slice 0 of the ISBI 2012 EM training stack with its membrane labels (1 = membrane)."""
    sample = load_isbi_slice()
    return [
        (sample.image, {"name": "isbi2012 slice 0", "metadata": _meta(sample.source)}, "image"),
        (sample.labels, {"name": "isbi2012 membranes (ground truth)", "visible": False}, "labels"),
    ]


def dsb2018_sample() -> list[LayerData]:
    """A DSB2018 fluorescence-nuclei image with its instance labels."""
    sample = load_dsb_nuclei()
    return [
        (sample.image, {"name": "dsb2018 nuclei", "metadata": _meta(sample.source)}, "image"),
        (sample.labels, {"name": "dsb2018 nuclei (ground truth)", "visible": False}, "labels"),
    ]
