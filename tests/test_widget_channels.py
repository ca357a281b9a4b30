"""A multichannel file is one layer with its channel axis, and a multichannel model predicts on
it from the Segment dock; a model with another channel count gets one sentence and changes
nothing (issue 18, point 2). Run under Xvfb."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L
from napari_unet.core.io.images import write_tiff

pytestmark = pytest.mark.gui
TIMEOUT = 20_000


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))


def checkpoint(folder, in_channels: int):
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=in_channels, out_channels=3)
    path = folder / f"c{in_channels}.pt"
    return save_checkpoint(path, model, task="semantic", tile_shape=(64, 64), overlap=8)


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(
        "napari.utils.notifications.show_error", lambda message: shown.append(str(message))
    )
    return shown


def test_two_channel_file_is_one_layer_a_two_channel_model_predicts(
    make_napari_viewer, qtbot, tmp_path, errors
) -> None:
    from napari_unet._widgets import SegmentWidget

    cyx = np.random.default_rng(0).integers(0, 4000, (2, 80, 72), dtype=np.uint16)
    write_tiff(tmp_path / "two.tif", cyx, axes="CYX")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "two.tif"), plugin="napari-unet-loop")
    assert layer.data.shape == (2, 80, 72) and len(viewer.layers) == 1
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    panel = widget.segment
    for channels in (1, 2):  # the wrong model first: a sentence, nothing written
        panel.form.model.add_checkpoint(checkpoint(tmp_path, channels))
        qtbot.waitUntil(lambda: panel.form.tile.value() == 64, timeout=TIMEOUT)
        panel.run_button.click()
        qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)
        if channels == 1:
            assert len(errors) == 1 and "channel" in errors[0] and "\n" not in errors[0]
            assert "Traceback" not in errors[0] and len(viewer.layers) == 1
            np.testing.assert_array_equal(layer.data, cyx)
            panel.form.tile.setValue(32)
    assert len(errors) == 1, errors
    labels = L.find_plugin_layer(viewer, role="labels", image_layer="two")
    assert labels is not None and labels.data.shape == (80, 72)
    np.testing.assert_array_equal(layer.data, cyx)
