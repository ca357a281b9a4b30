"""Versions list, hot swap, rollback, compare and guidance in a real napari window (Xvfb).

A tiny session in ``tmp_path`` holds two versions of a depth-2 binary U-Net whose last layer is
zeroed with a strong bias: v001 predicts background everywhere, v002 foreground everywhere, so
which version produced a slice is plain to see.
"""

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
    monkeypatch.setattr("napari.utils.notifications.show_warning", lambda message: None)
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda message: None)


def _checkpoint(path, bias: float):
    import torch

    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", depth=2, base_channels=4, in_channels=1, out_channels=1)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(bias)
    return save_checkpoint(path, model, task="binary", tile_shape=(64, 64), overlap=8)


@pytest.fixture
def session(tmp_path):
    from napari_unet.session import Session

    session = Session.create(tmp_path / "session")
    session.add_version(
        _checkpoint(tmp_path / "a.pt", -10.0), parent="fluo-nuclei", steps=5,
        metrics={"score": 0.5}, data={"n_images": 1, "n_items": 1, "fingerprint":
        "data: 1 image(s) ... (the net sees the images 3x smaller); patch 768x768"},
    )  # fmt: skip
    session.add_version(
        _checkpoint(tmp_path / "b.pt", 10.0), parent="v001", steps=7,
        metrics={"score": 0.7, "held_back_score": 0.7, "held_back_metric": "foreground IoU",
                 "parent_held_back_score": 0.5,
                 "operating_point": {"threshold": 0.6, "min_size": 20}},
    )  # fmt: skip
    return session


@pytest.fixture
def viewer(make_napari_viewer, session):
    from napari_unet._widgets.loop_state import LoopState

    viewer = make_napari_viewer()
    LoopState.for_viewer(viewer).set_session(session)
    return viewer


def _stack(viewer):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(2, 64, 64)).astype(np.uint8)
    return viewer.add_image(image, name="cells", metadata={L.TAG: {"axes": "ZYX"}})


def test_versions_list_rename_export_delete(viewer, session, tmp_path, qtbot):
    from napari_unet._widgets.loop_state import LoopState
    from napari_unet._widgets.versions_panel import VersionsPanel
    from napari_unet.core.checkpoint.format import load_checkpoint
    from napari_unet.session import Session

    panel = VersionsPanel(viewer)
    qtbot.addWidget(panel)
    assert panel.version_ids() == ["v002", "v001"]  # newest first
    row = [panel.table.item(0, c).text() for c in range(panel.table.columnCount())]
    assert row[:3] == ["version 2", "version 1", "7"] and row[4] == "0.700"
    assert panel.table.item(1, 5).text() == "1 img, 1 slices"
    assert panel.table.item(0, 4).toolTip() == (  # how v002 was judged and post-processes
        "Held-back foreground IoU 0.700 > parent 0.500; post-processing threshold 0.6, min size 20."
    )
    assert panel.table.item(1, 4).toolTip().startswith("v001: ")  # not judged: id and file
    assert panel.table.item(1, 5).toolTip() == (  # the run's data line: scale, patch, channels
        "1 img, 1 slices\nData: 1 image(s) ... (the net sees the images 3x smaller); patch 768x768"
    )
    assert panel.table.item(0, 5).toolTip() == panel.table.item(0, 5).text()  # no line: as is
    panel.table.item(0, 0).setText("best so far")  # inline rename
    assert Session.open(session.root, readonly=True).version("v002").name == "best so far"
    exported = panel.export_version("v001", tmp_path / "out" / "exported.pt")
    assert load_checkpoint(exported).info.task == "binary"
    loop = LoopState.for_viewer(viewer)
    loop.set_active_version("v002")
    path = session.version_path("v002")
    panel.delete_version("v002")
    assert loop.active_version == "v001"  # switched before deleting
    assert [v.id for v in session.versions()] == ["v001"] and not path.exists()
    assert panel.version_ids() == ["v001"]


def test_export_a_version_as_a_bioimageio_package(viewer, session, tmp_path, qtbot):
    import io
    import zipfile

    import yaml

    from napari_unet._widgets.versions_panel import VersionsPanel

    panel = VersionsPanel(viewer)
    qtbot.addWidget(panel)
    image = _stack(viewer)
    viewer.dims.set_current_step(0, 1)  # the slice on screen becomes the test input
    with qtbot.waitSignal(panel.exporter.done, timeout=TIMEOUT) as blocker:
        panel.export_bioimageio("v002", tmp_path / "pkg" / "version-2")
    assert blocker.args[0] == str(tmp_path / "pkg" / "version-2.zip")
    assert "Exported the bioimage.io package" in panel.info.text()
    with zipfile.ZipFile(blocker.args[0]) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        test_input = np.load(io.BytesIO(archive.read("test_input.npy")))
    lineage = rdf["config"]["napari-unet-loop"]["lineage"]
    assert [(e["id"], e["parent"]) for e in lineage] == [("v002", "v001"), ("v001", "fluo-nuclei")]
    assert rdf["name"] == "version 2"
    np.testing.assert_array_equal(test_input[0, 0], image.data[1].astype(np.float32))


def test_hot_swap_and_rollback_keep_reviewed_slices(viewer, session, qtbot):
    from napari_unet._widgets import SegmentWidget
    from napari_unet._widgets.loop_state import LoopState
    from napari_unet._widgets.model_picker import VERSION_ROLE
    from napari_unet._widgets.versions_panel import VersionsPanel

    loop = LoopState.for_viewer(viewer)
    image = _stack(viewer)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    panel = widget.segment
    picker = panel.form.model
    listed = [picker.itemData(i, VERSION_ROLE) for i in range(picker.count())]
    assert [v for v in listed if v] == ["v002", "v001"]  # after the built-ins, newest first
    assert panel.hot_swap.follow.isChecked()
    loop.set_active_version("v001")
    assert picker.version_id() == "v001"
    panel.form.scope.setCurrentIndex(panel.form.scope.findData("stack"))
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT)
    labels = L.find_plugin_layer(viewer, role="labels", image_layer=image.name)
    assert labels is not None and not np.asarray(labels.data).any()  # v001: background
    labels.data[1, 10:20, 10:20] = 3  # the user corrects slice 1 and marks it reviewed
    L.plugin_tag(labels)["reviewed"][1] = True
    kept = np.asarray(labels.data[1]).copy()

    loop.add_version("v002")  # a new version is published, follow is on
    repredictor = panel.hot_swap.repredictor
    assert picker.version_id() == "v002" and loop.active_version == "v002"
    qtbot.waitUntil(lambda: not repredictor.running, timeout=TIMEOUT)
    assert np.asarray(labels.data[0]).all()  # unreviewed slice refreshed with v002
    np.testing.assert_array_equal(labels.data[1], kept)  # reviewed slice untouched

    versions = VersionsPanel(viewer)
    qtbot.addWidget(versions)
    versions.select("v001")
    assert versions.use_selected() == "v001"  # rollback
    assert loop.active_version == "v001" and picker.version_id() == "v001"
    qtbot.waitUntil(lambda: not repredictor.running, timeout=TIMEOUT)
    assert not np.asarray(labels.data[0]).any()  # v001's prediction is back
    np.testing.assert_array_equal(labels.data[1], kept)

    loop.auto_switch = False
    loop.add_version("v002")
    assert loop.active_version == "v001" and not repredictor.running
    assert not panel.hot_swap.follow.isChecked()

    panel.hot_swap.follow.setChecked(True)  # the check box drives the shared setting
    assert loop.auto_switch
    loop.add_version("v002")  # starts refreshing with v002...
    assert repredictor.running
    loop.set_active_version("v001")  # ...cancelled at once by another switch
    qtbot.waitUntil(lambda: not repredictor.running, timeout=TIMEOUT)
    qtbot.wait(200)  # a late answer of the cancelled run must not land
    assert not np.asarray(labels.data[0]).any()
    np.testing.assert_array_equal(labels.data[1], kept)


def test_compare_and_uncertainty_layers(viewer, session, qtbot, monkeypatch):
    from napari_unet._widgets import predict_job as J
    from napari_unet._widgets.guidance_panel import GuidancePanel
    from napari_unet._widgets.loop_state import LoopState
    from napari_unet._widgets.versions_panel import VersionsPanel
    from napari_unet.core.errors import UserInputError

    image = _stack(viewer)
    labels = viewer.add_labels(
        np.zeros((2, 64, 64), np.uint8),
        name="cells labels",
        metadata={L.TAG: L.labels_metadata("cells", (2, 64, 64), task="binary",
                                           output="semantic", model="x")},
    )  # fmt: skip
    labels.data[0, :, :32] = 1  # reviewed half foreground, half background
    L.plugin_tag(labels)["reviewed"][0] = True
    panel = VersionsPanel(viewer)
    qtbot.addWidget(panel)
    panel.select("v001", "v002")
    monkeypatch.setattr(J, "available_memory", lambda: 1000)  # the new layers do not fit
    with pytest.raises(UserInputError, match="open a crop"):
        panel.compare_selected()
    assert panel.comparer.worker is None
    monkeypatch.setattr(J, "available_memory", lambda: None)  # unknown: no check
    panel.compare_selected()
    qtbot.waitUntil(lambda: panel.comparer.worker is None, timeout=TIMEOUT)
    compare = [la for la in viewer.layers if (L.plugin_tag(la) or {}).get("role") == "compare"]
    assert sorted(la.name for la in compare) == ["compare v001", "compare v002"]
    assert not viewer.layers["compare v001"].data[0].any()
    assert viewer.layers["compare v002"].data[0].all()
    text = panel.info.text()
    assert "score" in text and "0.700" in text and "IoU vs reviewed" in text
    assert "<td>0.000</td><td>0.500</td>" in text  # v001 finds nothing, v002 all foreground

    LoopState.for_viewer(viewer).set_active_version("v002")
    guidance = GuidancePanel(viewer)
    qtbot.addWidget(guidance)
    viewer.layers.selection.active = image
    monkeypatch.setattr(J, "available_memory", lambda: 1000)
    with pytest.raises(UserInputError, match="open a crop"):
        guidance.show_uncertainty()
    monkeypatch.setattr(J, "available_memory", lambda: 10**12)
    guidance.show_uncertainty()
    qtbot.waitUntil(lambda: guidance.worker is None, timeout=TIMEOUT)
    layer = L.find_plugin_layer(viewer, role="uncertainty", image_layer="cells")
    assert layer is not None and layer.colormap.name == "inferno"
    assert 0 <= float(layer.data[0].max()) < 0.01  # v002 is sure everywhere
    guidance.measure.setCurrentIndex(guidance.measure.findData("disagreement"))
    guidance.show_uncertainty()
    qtbot.waitUntil(lambda: guidance.worker is None, timeout=TIMEOUT)
    assert float(layer.data[0].min()) > 0.99  # the two versions disagree everywhere


def test_next_region_jumps_to_the_planted_tile_and_accounting(viewer, session, qtbot):
    from napari_unet._widgets.guidance_panel import GuidancePanel, scene_camera

    image = viewer.add_image(np.zeros((256, 256), np.float32), name="em")
    probability = np.ones((256, 256), np.float32)
    probability[128:256, 64:192] = 0.5  # the uncertain tile
    probability[0:128, 0:128] = 0.5  # as uncertain, but already reviewed
    viewer.add_image(
        probability, name="em probability",
        metadata={L.TAG: {"role": "probabilities", "image_layer": "em"}},
    )  # fmt: skip
    tag = L.labels_metadata("em", (256, 256), task="binary", output="semantic", model="x")
    tag["predicted"] = [0]
    tag["reviewed"][0:128, 0:128] = True
    viewer.add_labels(np.ones((256, 256), np.uint8), name="em labels", metadata={L.TAG: tag})
    viewer.layers.selection.active = image
    guidance = GuidancePanel(viewer)
    qtbot.addWidget(guidance)
    guidance.next_region()  # the probability layer is reused: no worker
    camera = scene_camera(viewer)
    np.testing.assert_allclose(camera.center[-2:], (192, 128))
    assert camera.zoom > 1.0
    assert guidance.why.text().startswith("Uncertainty 1.00")

    clock = guidance.clock
    clock.is_active = lambda: True
    for at in (0.0, 30.0, 500.0, 510.0):  # the 470 s pause is not counted
        clock.record_edit(at)
    assert clock.pending == pytest.approx(40.0)
    guidance.refresh_rounds()
    rounds = session.rounds()
    assert rounds[-1]["seconds_correcting"] == pytest.approx(40.0)
    cells = [
        [guidance.rounds.item(r, c).text() for c in range(guidance.rounds.columnCount())]
        for r in range(guidance.rounds.rowCount())
    ]
    assert [row[1] for row in cells] == ["v001", "v002", "open"]
    assert cells[1][5] == "+0.200" and cells[2][2] == "0.7"
