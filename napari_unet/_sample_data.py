"""npe2 sample data: synthetic images generated on the fly, and two real images (see _datasets).

Each function returns napari layer data tuples: the image, then its ground truth as a Labels layer
that is shown switched off and named "... ground truth". Both carry the plugin's tag
(``metadata["napari_unet"]``):

- the image: ``axes``, ``source`` and ``model``, the built-in model that fits its modality (the
  Segment dock proposes it);
- the ground truth: ``role = "ground_truth"``, so the correction tools never pick it as the layer
  to correct (the user's corrections go to the prediction).
"""

from __future__ import annotations

from typing import Any

from napari_unet._datasets import load_dsb_nuclei, load_isbi_slice
from napari_unet.core.synthetic import synthetic_em, synthetic_nuclei

LayerData = tuple[Any, dict[str, Any], str]

#: Role of a sample's ground-truth Labels layer (never a correction target).
GROUND_TRUTH_ROLE = "ground_truth"
NUCLEI_MODEL, EM_MODEL = "fluo-nuclei", "em-membranes"


def _image(data: Any, name: str, source: str, model: str) -> LayerData:
    # "origin", not "source": the session reads "source" as the image file, and a sample has none
    meta = {"napari_unet": {"axes": "YX", "origin": source, "model": model}}
    return (data, {"name": name, "metadata": meta}, "image")


def _truth(data: Any, name: str, image_name: str) -> LayerData:
    meta = {"napari_unet": {"role": GROUND_TRUTH_ROLE, "image_layer": image_name}}
    return (data, {"name": name, "visible": False, "opacity": 0.5, "metadata": meta}, "labels")


def synthetic_nuclei_sample() -> list[LayerData]:
    """A 512x512 synthetic fluorescent-nuclei image (uint16) and its instance labels."""
    image, labels = synthetic_nuclei((512, 512), n_nuclei=160, seed=7)
    return [
        _image(image, "nuclei", "synthetic", NUCLEI_MODEL),
        _truth(labels, "nuclei ground truth", "nuclei"),
    ]


def synthetic_em_sample() -> list[LayerData]:
    """A 512x512 synthetic EM-like image (uint8), membrane labels (1 = membrane) and the cells."""
    image, membranes, cells = synthetic_em((512, 512), n_cells=120, seed=7)
    return [
        _image(image, "em", "synthetic", EM_MODEL),
        _truth(membranes, "em membranes ground truth", "em"),
        _truth(cells, "em cells ground truth", "em"),
    ]


def isbi2012_sample() -> list[LayerData]:
    """Slice 0 of the ISBI 2012 EM training stack with its membrane labels (1 = membrane)."""
    sample = load_isbi_slice()
    name = "isbi2012 slice 0"
    return [
        _image(sample.image, name, sample.source, EM_MODEL),
        _truth(sample.labels, "isbi2012 membranes ground truth", name),
    ]


def dsb2018_sample() -> list[LayerData]:
    """A DSB2018 fluorescence-nuclei image (a ``fluo-nuclei`` validation image) and its labels."""
    sample = load_dsb_nuclei()
    name = "dsb2018 nuclei"
    return [
        _image(sample.image, name, sample.source, NUCLEI_MODEL),
        _truth(sample.labels, "dsb2018 nuclei ground truth", name),
    ]
