"""A restoration model in the "U-Net Segment" dock: it predicts an Image layer, not labels
(issue 18, point 5). Run under Xvfb: ``xvfb-run -a``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L

pytestmark = pytest.mark.gui
TIMEOUT = 20_000


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def restoration_checkpoint(tmp_path_factory):
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=1)
    path = tmp_path_factory.mktemp("ckpt") / "denoise.pt"
    return save_checkpoint(path, model, task="restoration", tile_shape=(64, 64), overlap=8)


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(
        "napari.utils.notifications.show_error", lambda message: shown.append(str(message))
    )
    return shown


def roles(viewer) -> list[str]:
    return [(L.plugin_tag(layer) or {}).get("role") for layer in viewer.layers]


def test_restoration_model_predicts_an_image_layer(
    make_napari_viewer, restoration_checkpoint, qtbot, errors
):
    from napari_unet._widgets import SegmentWidget
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.core.inference.prediction import PredictConfig, predict

    viewer = make_napari_viewer()
    image = np.random.default_rng(0).random((5, 96, 80)).astype(np.float32)
    viewer.add_image(image, name="noisy")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="U-Net Segment")
    panel = widget.segment
    panel.form.model.add_checkpoint(restoration_checkpoint)
    qtbot.waitUntil(lambda: panel.form.tile.value() == 64, timeout=TIMEOUT)
    viewer.dims.set_current_step(0, 0)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)

    assert errors == [] and "labels" not in roles(viewer)
    assert not panel.form.output.isEnabled() and not panel.form.probabilities.isEnabled()
    restored = viewer.layers["noisy restored"]
    assert restored.data.shape == image.shape and restored.data.dtype == np.float32
    loaded = load_checkpoint(restoration_checkpoint)
    config = PredictConfig(tile_shape=(64, 64), overlap=8, precision="fp32", device="cpu")
    expected = predict(
        loaded.model,
        image[0],
        "YX",
        task="restoration",
        normalization=loaded.info.normalization_config(),
        config=config,
    )[0]
    np.testing.assert_allclose(restored.data[0], expected, atol=1e-4)
    assert not restored.data[1:].any()  # only the current slice was predicted

    viewer.dims.set_current_step(0, 1)  # the next slice goes into the same layer
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)
    assert errors == [] and roles(viewer).count("restored") == 1
    assert restored.data[1].any() and "Predicted slice 1" in panel.status.text()
