"""The Fine-tune dock's "New model" section (issue 18, point 2): input channels from the image
layer, named classes, the new model becomes the start model; a bad choice gets one sentence and
writes nothing. Run under Xvfb."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(
        "napari.utils.notifications.show_error", lambda message: shown.append(str(message))
    )
    return shown


def test_new_model_from_the_dock_becomes_the_start(make_napari_viewer, tmp_path, errors) -> None:
    from napari_unet._widgets import FinetuneWidget
    from napari_unet.core.checkpoint.format import load_checkpoint

    viewer = make_napari_viewer()
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget)
    section = widget.finetune.new_model
    cyx = np.zeros((2, 64, 64), np.uint16)
    viewer.add_image(cyx, name="two", metadata={"napari_unet": {"axes": "CYX"}})
    assert section.channels.value() == 2  # from the selected image layer's channel axis

    section.task.setCurrentText("semantic")
    section.classes.setText("background")  # one class only: refused
    section.create_button.click()
    assert len(errors) == 1 and "two class names" in errors[0]
    assert not list((tmp_path / "config").rglob("*.pt"))

    section.classes.setText("background, nucleus, membrane")
    section.arch.setCurrentIndex(section.arch.findData("unetpp"))
    section.create_button.click()
    assert len(errors) == 1
    (path,) = list((tmp_path / "config" / "new-models").glob("*.pt"))
    assert widget.finetune.form.start_key() == f"file:{path}"
    assert float(widget.finetune.form.lr.text()) == pytest.approx(1e-3)  # untrained: scratch rate
    info = load_checkpoint(path).info
    assert info.arch == "unetpp" and info.in_channels == 2 and info.out_channels == 3
    assert info.class_names == ("background", "nucleus", "membrane")
