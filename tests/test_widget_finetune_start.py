"""The Fine-tune dock's start model in a real napari window (``xvfb-run -a``), issue 17: with no
model of their own, instance labels start from ``fluo-nuclei`` at the recipe's 1e-3 and a line
says which start and why; a one-channel model on RGB images is adapted, at 1e-3 too."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widget_finetune import FakeClient, nuclei_stack, tiny_checkpoint

from napari_unet.session import Session

pytestmark = pytest.mark.gui


def new_session(tmp_path, *, rgb: bool, task: str = "instances") -> Session:
    """One reviewed image (grey ``ZYX`` or RGB ``ZYXC``), no model version."""
    image, labels = nuclei_stack()
    axes = "ZYX"
    if rgb:
        image, axes = np.stack([image, 1 - image, image / 2], axis=-1), "ZYXC"
    session = Session.create(tmp_path / "loop.unet", name="loop")
    image_id = session.add_image("cells", axes=axes, image=image, task=task)
    for s in range(len(labels)):
        session.save_slice(
            image_id,
            s,
            labels=labels[s],
            snapshot=labels[s],
            reviewed=np.ones(labels[s].shape, bool),
        )
    return session


@pytest.fixture
def open_panel(make_napari_viewer):
    from napari_unet._widgets.finetune_panel import FinetunePanel
    from napari_unet._widgets.loop_state import LoopState

    def make(session):
        viewer = make_napari_viewer()
        LoopState.for_viewer(viewer).set_session(session)
        panel = FinetunePanel(viewer, client=FakeClient())
        viewer.window.add_dock_widget(panel, name="U-Net Fine-tune")
        return panel

    return make


def test_instance_labels_without_a_model_start_from_fluo_nuclei(open_panel, tmp_path, qtbot):
    panel = open_panel(new_session(tmp_path, rgb=False))
    assert panel.form.start_key() == "builtin:fluo-nuclei"
    assert panel.form.lr.text() == "0.001"
    assert panel.start_line.text() == (
        "Starts from fluo-nuclei (built-in): your labels are instances and you have no model of "
        "your own yet; learning rate 0.001, the recipe's rate for a new modality."
    )


def test_a_one_channel_file_on_rgb_images_is_adapted_at_the_recipes_rate(
    open_panel, tmp_path, qtbot
):
    panel = open_panel(new_session(tmp_path, rgb=True))
    assert panel.form.start_key() == "builtin:fluo-nuclei"
    qtbot.waitUntil(lambda: "first layer is adapted" in panel.start_line.text(), timeout=30_000)
    panel.form.chosen_by_hand = True
    panel.form.select_file(str(tiny_checkpoint(tmp_path / "mine.pt")))
    assert panel.form.lr.text() == "0.0001"  # not read yet: a trained model of the user's
    qtbot.waitUntil(lambda: "first layer is adapted" in panel.start_line.text(), timeout=30_000)
    assert panel.form.lr.text() == "0.001"
    assert panel.start_line.text().startswith(
        "Starts from mine.pt: it takes 1 channel and the images have 3 channels, so its first "
        "layer is adapted; learning rate 0.001"
    )


def test_a_typed_rate_and_the_sessions_own_version_are_kept(open_panel, tmp_path, qtbot):
    session = new_session(tmp_path, rgb=False)
    session.add_version(tiny_checkpoint(tmp_path / "tiny.pt"), name="tiny")
    panel = open_panel(session)
    assert panel.form.start_key().startswith("version:")
    assert panel.form.lr.text() == "0.0001"
    assert "already learnt from this session" in panel.start_line.text()


def test_a_25d_file_is_not_said_adapted_and_keeps_the_gentle_rate(open_panel, tmp_path, qtbot):
    """A 2.5-D model (R = 1: 3 input channels = each slice with its 2 neighbours) on grey
    Z-stacks takes them as they are: no "adapted" line, no recipe's rate for a new modality."""
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    net = build_model("unet", depth=2, base_channels=4, in_channels=3, out_channels=3)
    path = save_checkpoint(
        tmp_path / "ctx.pt", net, task="instances", provenance={"context_slices": 1}
    )
    panel = open_panel(new_session(tmp_path, rgb=False))
    panel.form.chosen_by_hand = True
    panel.form.select_file(str(path))
    qtbot.waitUntil(lambda: panel.advisor.channels.get(f"file:{path}") is not None, timeout=30_000)
    qtbot.wait(50)
    assert "adapted" not in panel.start_line.text()
    assert panel.form.lr.text() == "0.0001"
