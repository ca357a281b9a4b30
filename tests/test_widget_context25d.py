"""The Segment dock with a 2.5-D model: the predicted slice comes with its Z neighbours (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widget_segment import labels_layers, make_widget, run_and_wait

from napari_unet.core.synthetic import synthetic_nuclei

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CONFIG_DIR", str(tmp_path / "config"))


def test_current_slice_is_predicted_with_its_neighbours(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    import torch

    from napari_unet._widgets import predict_worker
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    net = build_model("unet", depth=2, base_channels=4, in_channels=3, out_channels=3)
    checkpoint = save_checkpoint(
        tmp_path / "ctx.pt",
        net,
        task="instances",
        tile_shape=(64, 64),
        overlap=8,
        provenance={"context_slices": 1},
    )
    viewer = make_napari_viewer()
    stack = np.stack([synthetic_nuclei((64, 64), seed=s)[0] for s in range(5)])
    viewer.add_image(stack, name="zstack")
    _, panel = make_widget(viewer, checkpoint, qtbot)
    seen = []
    real = predict_worker.run_prediction

    def spy(job):
        seen.append(job.image)
        return (yield from real(job))

    monkeypatch.setattr(predict_worker, "run_prediction", spy)
    viewer.dims.set_current_step(0, 2)
    run_and_wait(panel, qtbot)
    (layer,) = labels_layers(viewer)
    assert layer.data[2].any() and not layer.data[[0, 1, 3, 4]].any()
    # the job's image: slice 2 with slices 1 and 3 as channels, as the model was trained
    np.testing.assert_array_equal(seen[0][0], stack[[1, 2, 3]])


def test_average_with_z_reversed_is_offered_only_for_a_model_with_z(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """The "Average with Z reversed" box (``PredictConfig.z_flip``) is greyed for a 2-D model
    (no effect there; the proposed built-in here), enabled for a 2.5-D one, its tooltip saying the
    2x time (and why when greyed); choosing another model drops the built-in's proposal line."""
    from pathlib import Path

    import torch

    from napari_unet._widgets import SegmentWidget, model_picker
    from napari_unet._widgets.layers import TAG
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    paths = {}
    for name, channels, provenance in (("ctx", 3, {"context_slices": 1}), ("flat", 1, {})):
        net = build_model("unet", depth=2, base_channels=4, in_channels=channels, out_channels=3)
        paths[name] = str(save_checkpoint(
            tmp_path / f"{name}.pt", net, task="instances", tile_shape=(64, 64), overlap=8,
            provenance=provenance,
        ))  # fmt: skip
    monkeypatch.setattr(
        model_picker, "builtin_models", lambda: {"fluo-nuclei": Path(paths["flat"])}
    )
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="U-Net Segment")
    panel = widget.segment
    box = panel.form.fields["z_flip"].native
    stack = np.stack([synthetic_nuclei((64, 64), seed=s)[0] for s in range(3)])
    viewer.add_image(stack, metadata={TAG: {"model": "fluo-nuclei"}})  # as the sample data
    # the (2-D) built-in, proposed for the image
    qtbot.waitUntil(lambda: "fluo-nuclei chosen for" in panel.status.text(), timeout=30_000)
    qtbot.waitUntil(lambda: paths["flat"] in panel.model_dims, timeout=30_000)
    assert not box.isEnabled()
    assert "2x the time" in box.toolTip() and "the chosen model is 2-D" in box.toolTip()
    panel.form.model.add_checkpoint(paths["ctx"])
    qtbot.waitUntil(lambda: paths["ctx"] in panel.model_dims, timeout=30_000)
    assert box.isEnabled() and "2x the time" in box.toolTip() and "Greyed" not in box.toolTip()
    assert "chosen for" not in panel.status.text()  # that proposal no longer holds
