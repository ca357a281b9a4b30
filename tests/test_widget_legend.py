"""The Segment dock's class legend (issue 18, point 2): a semantic prediction shows its model's
class names in the labels layer's colours; instance labels show none. Run under Xvfb."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui
TIMEOUT = 20_000
NAMES = ("background", "nucleus", "membrane")


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))


def test_semantic_prediction_shows_named_classes_in_layer_colours(
    make_napari_viewer, qtbot, tmp_path
) -> None:
    from napari_unet._widgets import SegmentWidget
    from napari_unet._widgets.class_legend import ClassLegend
    from napari_unet.core.checkpoint.new_model import NewModelConfig, new_checkpoint

    config = NewModelConfig(task="semantic", class_names=NAMES)
    model = new_checkpoint(config, tmp_path / "three.pt")
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="cells")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    (legend,) = [p for p in widget.panels if isinstance(p, ClassLegend)]
    assert not legend.isVisibleTo(widget)  # nothing predicted yet
    panel = widget.segment
    panel.form.model.add_checkpoint(str(model))
    qtbot.waitUntil(lambda: panel.form.output.currentText() == "Semantic labels", timeout=TIMEOUT)
    panel.run_button.click()
    qtbot.waitUntil(
        lambda: panel.worker is None and "Predicted" in panel.status.text(), timeout=TIMEOUT
    )
    labels = viewer.layers["cells labels"]
    assert legend.isVisibleTo(widget)
    text = legend.text.text()
    assert all(f"{k}: {name}" in text for k, name in enumerate(NAMES))
    red, green, blue = (int(255 * c) for c in labels.get_color(1)[:3])
    assert f"#{red:02x}{green:02x}{blue:02x}" in text
    labels.metadata["napari_unet"]["output"] = "instances"
    legend.show_layer(labels)
    assert not legend.isVisibleTo(widget)
