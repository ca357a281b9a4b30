"""The loop in 3-D in a real napari window (``xvfb-run -a``): predict a Z-stack with a 3-D
model, review two slices with the Correct panel, fine-tune the 3-D model in the trainer process
from those slices, and the published version re-predicts the volume around the reviewed slices.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import layers as L
from tests.volume_helpers import balls, trained_checkpoint

pytestmark = pytest.mark.gui
TIMEOUT = 180_000


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr("napari.utils.notifications.show_warning", lambda message: None)


def test_reviewed_slices_fine_tune_a_3d_model_and_the_version_refreshes_the_volume(
    make_napari_viewer, tmp_path, qtbot
):
    from napari_unet._widgets import SegmentWidget
    from napari_unet._widgets.finetune_panel import FinetunePanel
    from napari_unet._widgets.trainer_client import TrainerClient

    errors: list[str] = []
    viewer = make_napari_viewer()
    image, truth = balls()
    viewer.add_image(image, name="vol")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    segment, correct, session_panel = widget.panels[:3]
    segment.form.scope.setCurrentIndex(segment.form.scope.findData("stack"))
    start = trained_checkpoint(tmp_path / "start3d.pt", steps=10)
    segment.form.model.add_checkpoint(start)
    qtbot.waitUntil(lambda: str(start) in segment.model_dims, timeout=TIMEOUT)
    segment.run_button.click()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=TIMEOUT)
    labels = L.find_plugin_layer(viewer, role="labels", image_layer="vol")
    assert labels is not None and labels.data.shape == truth.shape

    # the user fixes slices 6 and 9 (the truth painted in) and marks them reviewed
    session = session_panel.create_session(tmp_path / "loop.unet")
    for z in (6, 9):
        viewer.dims.set_current_step(0, z)
        labels.data[z] = (truth[z] > 0).astype(labels.data.dtype)
        labels.refresh()
        assert correct.mark_slice() > 0
        labels.events.metadata(napari_unet_slices=(z,))
    qtbot.waitUntil(lambda: len(session.annotated_slices()) == 2, timeout=TIMEOUT)
    before = np.array(labels.data)

    # fine-tune the 3-D model from those two slices, in the trainer process
    finetune = FinetunePanel(viewer, client=TrainerClient())
    viewer.window.add_dock_widget(finetune, name="U-Net Fine-tune")
    finetune.client.failed.connect(errors.append)
    form = finetune.form
    form.select_file(str(start))
    # the data summary holds back what the 3-D trainer will: its 64 x 64 planes fit one
    # validation tile, so the volume is split by plane and one of the two slices is held back
    qtbot.waitUntil(lambda: finetune.summary.unit == "slice", timeout=TIMEOUT)
    assert "Validation: 1 slice(s) of 2 = 4096 pixels (50%)" in finetune.data_label.text()
    form.budget_kind.setCurrentIndex(form.budget_kind.findData("steps"))
    form.budget.setValue(4)
    form.patch.setValue(32)
    form.batch.setValue(1)
    form.threads.setValue(1)
    form.device.setCurrentText("cpu")
    versions: list[str] = []
    finetune.loop.version_added.connect(versions.append)
    finetune.start()
    qtbot.waitUntil(lambda: bool(versions) or bool(errors), timeout=TIMEOUT)
    assert not errors, errors
    # the Segment dock follows the new version: the volume is re-predicted in 3-D around
    # the reviewed slices, which stay exactly as the user left them
    repredictor = segment.hot_swap.repredictor
    refreshed: list = []
    repredictor.finished.connect(lambda version, done: refreshed.append((version, done)))
    qtbot.waitUntil(lambda: bool(refreshed), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not finetune.client.running, timeout=TIMEOUT)
    version, done = refreshed[-1]
    assert version == versions[0]
    written = sorted(s for _, s in done)
    assert 6 not in written and 9 not in written and len(written) == truth.shape[0] - 2
    data = np.asarray(labels.data)
    for z in (6, 9):
        np.testing.assert_array_equal(data[z], before[z])
    assert L.plugin_tag(labels)["model"].endswith(".pt")
