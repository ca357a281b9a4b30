"""Qt-free widget decisions, on ``napari.components.ViewerModel`` (no window, no Qt)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_unet._widgets.layers import TAG
from napari_unet._widgets.logic import (
    correctable_labels,
    default_labels,
    labels_to_follow,
    refresh_runs,
    session_protected,
)
from napari_unet._widgets.model_cache import ModelCache

napari = pytest.importorskip("napari")


@pytest.fixture
def viewer():
    from napari.components import ViewerModel

    return ViewerModel()


def _labels(viewer, name, role=None, *, visible=True, data=None):
    metadata = {} if role is None else {TAG: {"role": role, "image_layer": "image"}}
    data = np.zeros((8, 8), np.uint8) if data is None else data
    return viewer.add_labels(data, name=name, metadata=metadata, visible=visible)


def test_the_correction_tools_follow_predictions_then_visible_user_layers(viewer):
    viewer.add_image(np.zeros((8, 8)), name="image")
    hidden = _labels(viewer, "mine (hidden)", visible=False)
    assert labels_to_follow(viewer.layers, None) is hidden  # the only one
    mine = _labels(viewer, "mine")
    assert labels_to_follow(viewer.layers, None) is mine  # the newest visible user layer
    truth = _labels(viewer, "truth", "ground_truth")
    _labels(viewer, "compare v001", "compare")
    assert truth not in correctable_labels(viewer.layers)  # never corrected
    prediction = _labels(viewer, "image labels", "labels")
    assert default_labels(correctable_labels(viewer.layers)) is prediction
    assert labels_to_follow(viewer.layers, mine) is mine  # the user's choice is kept
    viewer.layers.remove(mine)
    assert labels_to_follow(viewer.layers, mine) is prediction
    lazy = _labels(viewer, "lazy", data=np.zeros((8, 8), np.uint8))
    lazy.data = _LazyArray(lazy.data)  # a Zarr/dask volume is view only
    assert lazy not in correctable_labels(viewer.layers)


class _LazyArray:
    """Enough of an array for a Labels layer, but not an ``ndarray`` (as dask/Zarr)."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        return self._data[key]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._data, dtype=dtype)


def test_a_refresh_replaces_the_slice_on_screen_first_and_keeps_corrections():
    assert refresh_runs(2, [0, 1, 2, 3], {1}) == [(2,), (0, 3)]
    assert refresh_runs(2, [0, 1, 2], {2}) == [(0, 1)]  # the slice on screen was corrected
    assert refresh_runs(5, [], set()) == [(5,)]  # the slice on screen is predicted anyway
    assert refresh_runs(2, [0, 1, 2], set(), huge=True) == [(2,)]  # huge: only what is shown
    assert refresh_runs(2, [0, 1, 2], {2}, huge=True) == []


def test_the_session_leaves_out_wholly_reviewed_slices_only():
    class Session:
        def statuses(self, image_id):
            if image_id != "img0001":
                raise KeyError(image_id)
            return ["predicted", "edited", "unseen", "reviewed"]

    # an edited slice is refreshed around the user's pixels; a reviewed one is left alone
    assert session_protected(Session(), "img0001") == {3}
    assert session_protected(Session(), "img0002") == set()  # left the session: layer only
    assert session_protected(None, "img0001") == set()
    assert session_protected(Session(), None) == set()


def test_the_model_cache_finds_a_model_by_source_device_and_file_time(tmp_path):
    import os

    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    first.write_bytes(b"1")
    second.write_bytes(b"2")
    cache = ModelCache(capacity=2)
    cache.put(str(first), "cpu", "model A")
    assert cache.get(str(first)) == "model A"
    assert cache.get(str(first), "cuda") is None  # loaded for another device
    assert cache.get(str(tmp_path / "missing.pt")) is None
    os.utime(first, (1, 1))  # rewritten in place (a newer latest.pt): loaded afresh
    assert cache.get(str(first)) is None
    cache.put(str(first), "cpu", "model A2")
    assert len(cache) == 1  # the stale entry of the same file is gone
    cache.put(str(second), "cpu", "model B")
    cache.put(str(tmp_path / "c.pt"), "cpu", "model C")  # missing file: mtime -1
    assert len(cache) == 2 and cache.get(str(first)) is None  # the least recently used left
    assert cache.get_many([str(second), str(first)]) == {str(second): "model B"}


def test_widget_logic_imports_no_qt() -> None:
    code = (
        "import sys, napari_unet._widgets.logic, napari_unet._widgets.model_cache; "
        "print(sorted(m for m in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_slice_statuses_are_counted_and_recomputed_only_when_dirty(viewer):
    from napari_unet._widgets import reviewed as rv
    from napari_unet._widgets.logic import SliceStatusCache, summary_text

    data = np.zeros((3, 8, 8), np.uint16)
    data[:2, 2:5, 2:5] = 1
    tag = {"role": "labels", "snapshot": data.copy(), "reviewed": np.zeros(data.shape, bool)}
    layer = viewer.add_labels(data, name="labels", metadata={TAG: tag})
    cache = SliceStatusCache()
    cache.reset(layer)
    assert summary_text(3, cache.counts()) == "3 slices: 3 predicted"  # an empty one too
    layer.data[0, 0, 0] = 4  # an edit the cache has not been told about yet
    assert cache.status(0) == "predicted"
    cache.mark_dirty({0})
    assert cache.status(0) == "edited"
    rv.mark_reviewed(layer, 1)
    cache.mark_dirty(None)
    assert summary_text(3, cache.counts()) == "3 slices: 1 reviewed, 1 edited, 1 predicted"


def test_a_session_links_the_corrected_layer_and_finds_its_image(viewer):
    from napari_unet._widgets.logic import image_of, labels_to_link

    image = viewer.add_image(np.zeros((8, 8)), name="image")
    viewer.add_image(np.zeros((8, 8, 3)), name="rgb", rgb=True)
    mine = _labels(viewer, "mine")
    prediction = _labels(viewer, "image labels", "labels")
    _labels(viewer, "mine 2")
    assert labels_to_link(viewer.layers, None, None) is prediction  # the newest prediction
    assert labels_to_link(viewer.layers, mine, None) is mine  # the active one
    assert labels_to_link(viewer.layers, mine, prediction) is prediction  # being corrected
    viewer.layers.remove(prediction)
    assert labels_to_link(viewer.layers, None, prediction).name == "mine 2"
    assert image_of(viewer.layers, prediction) is image  # named in its tag
    assert image_of(viewer.layers, mine) is image  # the first user image of its shape
    odd = viewer.add_labels(np.zeros((5, 5), np.uint8), name="odd")
    assert image_of(viewer.layers, odd) is None


def test_guidance_measures_with_the_active_model_and_reuses_probabilities(viewer, tmp_path):
    from napari_unet._widgets.layers import layout_of
    from napari_unet._widgets.logic import models_to_measure, reusable_probability
    from napari_unet.core.errors import UserInputError

    class Version:
        def __init__(self, version_id):
            self.id = version_id

    class Session:
        def versions(self):
            return [Version("v001"), Version("v002"), Version("v003")]

        def version_path(self, version_id):
            return tmp_path / f"{version_id}.pt"

    checkpoint = tmp_path / "mine.pt"
    checkpoint.write_bytes(b"x")
    image = viewer.add_image(np.zeros((2, 8, 8), np.float32), name="image")
    tag = {"role": "labels", "image_layer": "image", "model": str(checkpoint), "predicted": [1]}
    viewer.add_labels(np.zeros((2, 8, 8), np.uint8), name="labels", metadata={TAG: tag})
    session = Session()
    path = str(tmp_path / "v002.pt")
    assert models_to_measure(viewer, session, "v002", "entropy", "image") == (path,)
    assert models_to_measure(viewer, None, None, "entropy", "image") == (str(checkpoint),)
    assert models_to_measure(viewer, session, None, "disagreement", "image") == (
        str(tmp_path / "v003.pt"),
        str(tmp_path / "v002.pt"),
    )
    with pytest.raises(UserInputError, match="two model versions"):
        models_to_measure(viewer, None, None, "disagreement", "image")
    with pytest.raises(UserInputError, match="No model to measure with"):
        models_to_measure(viewer, None, None, "entropy", "other image")

    layout = layout_of(image, "ZYX")
    assert reusable_probability(viewer, "image", layout, 1) is None  # no probability layer
    probabilities = np.full((2, 8, 8), 0.25, np.float32)
    viewer.add_image(
        probabilities, metadata={TAG: {"role": "probabilities", "image_layer": "image"}}
    )
    assert reusable_probability(viewer, "image", layout, 0) is None  # slice 0 never predicted
    np.testing.assert_array_equal(reusable_probability(viewer, "image", layout, 1), 0.25)
