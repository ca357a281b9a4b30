"""Issue 17 (isbi-recipe): a new U-Net for thin, region-enclosing class 1 (membranes) is small.

At a few CPU-minutes the default base 32 made ~64 steps on ISBI 2012 and left membrane gaps that
merge cells; base 16 makes ~3x the steps (docs/learning_ablation.md, "ISBI: why the recipe
loses the Rand error"). The rule is read from the labels, not the data set's name.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.simulation.parts import new_model_for
from napari_unet.core.training.fingerprint import (
    THIN_CLASS_BASE_CHANNELS,
    new_model_settings,
    thin_enclosing_class,
)
from napari_unet.core.training.items import TrainingItem


def _membrane_item(side: int = 96, cell: int = 16, name: str = "em") -> TrainingItem:
    """(1, side, side) image of a grid of cells; labels 0 = 2-px membrane, 255 = cell (ISBI)."""
    labels = np.full((side, side), 255, np.uint8)
    for start in range(0, side, cell):
        labels[start : start + 2, :] = 0
        labels[:, start : start + 2] = 0
    image = (labels == 0).astype(np.float32)[None]
    return TrainingItem(image=image, labels=labels, name=name)


def _disc_item(side: int = 96, radius: int = 10) -> TrainingItem:
    """(1, side, side) image of four round nuclei (instance ids 1..4)."""
    yy, xx = np.mgrid[:side, :side]
    labels = np.zeros((side, side), np.int32)
    for k, (cy, cx) in enumerate([(24, 24), (24, 72), (72, 24), (72, 72)]):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k + 1
    return TrainingItem(image=(labels > 0).astype(np.float32)[None], labels=labels, name="nuc")


MEMBRANES = {0: 1, 255: 0}


def test_thin_enclosing_class_tells_membranes_from_nuclei_and_cells():
    membranes = [_membrane_item()]
    assert thin_enclosing_class(membranes, "semantic", MEMBRANES)
    assert thin_enclosing_class(membranes, "binary", {0: 1, 255: 0})
    assert not thin_enclosing_class(membranes, "semantic", {0: 0, 255: 1}), "cells are class 1"
    assert not thin_enclosing_class(membranes, "instances", MEMBRANES), "instances: never"
    discs = [_disc_item()]
    assert not thin_enclosing_class(discs, "binary")
    assert not thin_enclosing_class(discs, "semantic", {1: 1, 2: 1, 3: 1, 4: 1})


def test_a_new_unet_for_membranes_is_small_and_explicit_settings_win():
    membranes = [_membrane_item(name=f"em{i}") for i in range(2)]
    model = new_model_for("unet", membranes, "semantic", label_map=MEMBRANES)
    assert model.config["base_channels"] == THIN_CLASS_BASE_CHANNELS == 16  # old default: 32
    assert model.config["depth"] == 4, "only the width changes"
    given = new_model_for("unet", membranes, "semantic", label_map=MEMBRANES, base_channels=32)
    assert given.config["base_channels"] == 32, "an explicit setting wins"
    nuclei = new_model_for("unet", [_disc_item()], "instances")
    assert nuclei.config["base_channels"] == 32, "instances keep the default"
    assert new_model_settings("unetpp", membranes, "semantic", MEMBRANES) == {}


def test_real_isbi_membranes_are_thin_and_dsb_nuclei_are_not(shared_data):
    from napari_unet.cli.train import load_pairs

    folder = shared_data / "isbi2012"
    isbi = load_pairs(folder / "images", folder / "labels", task="semantic")[:3]
    assert thin_enclosing_class(isbi, "semantic", MEMBRANES)
    folder = shared_data / "dsb2018_fluo"
    nuclei = load_pairs(folder / "images", folder / "labels", task="instances")[:5]
    assert not thin_enclosing_class(nuclei, "binary")
    assert not thin_enclosing_class(nuclei, "instances")
