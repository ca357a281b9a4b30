"""scripts/builtin_pool.py: ``nuclei-generalist``'s pooled data never holds a benchmark test image
nor any stained RGB tile, and its EM slices become neurite-region instances."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_UNET_DATA_DIR", ROOT.parent / "shared" / "data"))
pytestmark = pytest.mark.skipif(
    not (DATA / "dsb2018_stained_bf" / "index.csv").exists(), reason="shared data not found"
)


def _script(name: str):
    for folder in (ROOT / "scripts", ROOT / "benchmarks"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """``(pool folder, training files, validation files)`` built from the shared data."""
    build_pool = _script("builtin_pool").build_pool
    split_files = _script("builtin_training").split_files
    root = build_pool(DATA, tmp_path_factory.mktemp("pool"))
    train, val = split_files("nuclei-generalist", root)
    return root / "nuclei_generalist_pool", train, val


def test_no_benchmark_test_image_and_no_stained_rgb_is_trained_on(pool, tmp_path):
    from _learn_data import shared_sets, stained_grey_set

    _, train, val = pool
    assert not set(train) & set(val)
    sets = shared_sets(DATA)
    tests = {f"fluo_{s}.png" for s in sets["dsb2018_fluo"].test}
    tests |= {f"isbi_{s}.png" for s in sets["isbi2012"].test}
    tests |= {f"grey_{s}.png" for s in stained_grey_set(DATA, tmp_path).test}
    assert tests <= set(val)
    rgb = {
        f"grey_{s}.png" for s in sets["dsb2018_stained_bf"].pool + sets["dsb2018_stained_bf"].test
    }
    assert not rgb & set(train + val)  # the stained RGB modality stays unseen
    assert {name.split("_")[0] for name in train} == {"fluo", "grey", "isbi"}
    assert len(train) == 85 and len(val) == 21


def test_images_are_one_channel_and_em_regions_are_instances(pool):
    folder = pool[0]
    grey = iio.imread(folder / "images" / "grey_110.png")
    assert grey.ndim == 2  # the RGB file's three equal channels become one
    raw = iio.imread(DATA / "isbi2012" / "labels" / "00.png")
    regions = iio.imread(folder / "labels" / "isbi_00.png")
    assert regions.dtype == np.uint16 and regions.max() > 50  # one id per neurite region
    assert np.array_equal(regions > 0, raw == 255)  # membranes are background
    fluo = iio.imread(folder / "labels" / "fluo_000.png")
    assert np.array_equal(fluo, iio.imread(DATA / "dsb2018_fluo" / "labels" / "000.png"))
