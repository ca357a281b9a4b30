"""Session panel and autosave in a real napari window (run under Xvfb: ``xvfb-run -a``).

Labels layers are built by hand with the contract tag (no model runs). Checked: one-click create
(next to the image file, or under the data folder for an image without one), autosave after an
edit (only what changed), reopening in a new viewer restores labels, snapshot, reviewed mask and
statuses, a failing disk is reported and retried, threaded saves coalesce, and closing the viewer
flushes what is pending.
"""

from __future__ import annotations

import errno
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_unet._widgets import reviewed as rv
from napari_unet.session import Session

pytestmark = pytest.mark.gui
TIMEOUT = 10_000


@pytest.fixture(autouse=True)
def _sessions_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_SESSIONS_DIR", str(tmp_path / "sessions"))


def predicted_stack(n: int = 3) -> np.ndarray:
    labels = np.zeros((n, 32, 32), dtype=np.uint16)
    for s in range(n):
        labels[s, 2:10, 2:10] = 2 * s + 1
        labels[s, 20:30, 18:28] = 2 * s + 2
    return labels


def add_pair(viewer, data: np.ndarray, name: str = "img", image=None):
    if image is None:
        image = viewer.add_image(np.random.default_rng(0).random(data.shape, np.float32), name=name)
    tag = {
        "role": "labels",
        "image_layer": image.name,
        "task": "instances",
        "output": "instances",
        "model": "test",
        "snapshot": data.copy(),
        "reviewed": np.zeros(data.shape, bool),
        "predicted": list(range(rv.n_slices(data.shape))),
        "session_image_id": None,
    }
    labels = viewer.add_labels(data, name=f"{image.name} labels", metadata={"napari_unet": tag})
    viewer.dims.set_current_step(0, 0)
    return image, labels


def make_panel(viewer, qtbot, delay_ms: int = 200):
    from napari_unet._widgets.session_panel import SessionPanel

    panel = SessionPanel(viewer)
    viewer.window.add_dock_widget(panel, name="session")
    panel.autosave._timer.setInterval(delay_ms)
    return panel


def on_disk(folder, image_id: str = "img0001"):
    session = Session.open(folder, readonly=True)
    return session, session.statuses(image_id)


def test_create_edit_autosave_and_reopen(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    image, labels = add_pair(viewer, predicted_stack())
    panel = make_panel(viewer, qtbot)
    assert panel.autosave._timer.interval() == 200
    session = panel.create_session()
    folder = session.root
    assert folder == tmp_path / "sessions" / "img"  # no file: under the data folder
    assert str(folder) in panel.path_label.text()
    tag = labels.metadata["napari_unet"]
    assert tag["session_image_id"] == "img0001"
    qtbot.waitUntil(lambda: on_disk(folder)[1] == ["predicted"] * 3, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: panel.state_label.text().startswith("saved"), timeout=TIMEOUT)

    labels.paint((1, 5, 5), 7)  # an edit on slice 1
    rv.mark_reviewed(labels, 2)  # and a reviewed slice, announced like the correct panel does
    labels.events.metadata(napari_unet_slices=(2,))
    qtbot.waitUntil(
        lambda: on_disk(folder)[1] == ["predicted", "edited", "reviewed"], timeout=TIMEOUT
    )
    stored, _ = on_disk(folder)
    np.testing.assert_array_equal(stored.load_slice("img0001", 1).labels, labels.data[1])
    assert stored.load_slice("img0001", 2).reviewed.all()
    files = sorted(p.name for p in (folder / "labels" / "img0001").iterdir())
    assert len(files) == 1  # only the edited slice has labels apart from its snapshot

    # scrolling writes nothing
    before = (folder / "session.json").stat().st_mtime_ns
    viewer.dims.set_current_step(0, 2)
    qtbot.wait(400)
    assert (folder / "session.json").stat().st_mtime_ns == before

    other = make_napari_viewer()
    panel2 = make_panel(other, qtbot)
    panel2.open_session(folder)
    restored = [la for la in other.layers if rv.role_of(la) == "labels"]
    assert len(restored) == 1 and restored[0].name == "img labels"
    new = restored[0]
    np.testing.assert_array_equal(new.data, labels.data)
    np.testing.assert_array_equal(other.layers["img"].data, image.data)  # the stored copy
    new_tag = new.metadata["napari_unet"]
    np.testing.assert_array_equal(new_tag["snapshot"], tag["snapshot"])
    np.testing.assert_array_equal(new_tag["reviewed"], tag["reviewed"])
    assert new_tag["predicted"] == [0, 1, 2] and new_tag["session_image_id"] == "img0001"
    assert [rv.status_of(new, s) for s in range(3)] == ["predicted", "edited", "reviewed"]
    assert rv.find_overlay(other, new) is not None
    # the restored layer is autosaved too, without rewriting what it just loaded
    assert not panel2.autosave.pending
    new.paint((0, 25, 5), 9)
    qtbot.waitUntil(lambda: on_disk(folder)[1][0] == "edited", timeout=TIMEOUT)


def test_default_folder_next_to_image_file(make_napari_viewer, qtbot, tmp_path):
    import tifffile

    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, np.arange(32 * 32, dtype=np.uint16).reshape(32, 32))
    viewer = make_napari_viewer()
    image = viewer.add_image(
        tifffile.imread(path),
        name="cells",
        metadata={"napari_unet": {"source": str(path), "axes": "YX"}},
    )
    _, _labels = add_pair(viewer, predicted_stack(1)[0], image=image)
    panel = make_panel(viewer, qtbot)
    session = panel.create_session()
    assert session.root == tmp_path / "cells.unet-session"
    assert session.image("img0001").source == path  # referenced, not copied
    panel.flush()
    assert on_disk(session.root)[1] == ["predicted"]
    # a second create does not clobber the first session
    viewer2 = make_napari_viewer()
    _, _labels2 = add_pair(
        viewer2,
        predicted_stack(1)[0],
        image=viewer2.add_image(image.data, name="cells", metadata=dict(image.metadata)),
    )
    second = make_panel(viewer2, qtbot).create_session()
    assert second.root == tmp_path / "cells-2.unet-session"


def test_failing_disk_is_reported_and_retried(make_napari_viewer, qtbot, monkeypatch):
    import napari_unet.session.slice_update as slices_module

    warnings = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warnings.append)
    viewer = make_napari_viewer()
    _, labels = add_pair(viewer, predicted_stack(2))
    panel = make_panel(viewer, qtbot)
    folder = panel.create_session().root
    assert panel.flush()
    real = slices_module.save_array

    def full_disk(path, array):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(slices_module, "save_array", full_disk)
    labels.paint((0, 15, 15), 5)
    qtbot.waitUntil(lambda: "disk full" in panel.state_label.text(), timeout=TIMEOUT)
    assert "e04040" in panel.state_label.styleSheet()  # the red line
    assert warnings and "disk full" in warnings[-1]
    assert labels.data[0, 15, 15] == 5  # the in-memory data is kept
    assert on_disk(folder)[1] == ["predicted", "predicted"]  # last good save intact
    qtbot.wait(400)
    assert panel.autosave.error  # not retried in a loop without an edit

    monkeypatch.setattr(slices_module, "save_array", real)  # space freed
    labels.paint((1, 15, 15), 6)  # the next edit retries everything
    qtbot.waitUntil(lambda: on_disk(folder)[1] == ["edited", "edited"], timeout=TIMEOUT)
    qtbot.waitUntil(lambda: panel.state_label.text().startswith("saved"), timeout=TIMEOUT)
    assert panel.state_label.styleSheet() == ""
    stored, _ = on_disk(folder)
    np.testing.assert_array_equal(stored.load_slice("img0001", 0).labels, labels.data[0])


def test_threaded_saves_coalesce_and_predictions_are_saved(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    _, labels = add_pair(viewer, predicted_stack(3))
    panel = make_panel(viewer, qtbot, delay_ms=50)
    folder = panel.create_session().root
    assert panel.flush()
    autosave = panel.autosave
    autosave.threaded = True
    session = panel.session
    real = session.save_slices
    calls = []

    def slow(image_id, updates, **kwargs):
        calls.append(sorted(updates))
        time.sleep(0.4)
        return real(image_id, updates, **kwargs)

    monkeypatch.setattr(session, "save_slices", slow)
    labels.paint((0, 15, 15), 5)
    qtbot.waitUntil(lambda: autosave._job is not None, timeout=TIMEOUT)
    labels.paint((1, 15, 15), 6)  # while the first save runs in its thread
    labels.paint((2, 15, 15), 7)
    qtbot.waitUntil(lambda: on_disk(folder)[1] == ["edited"] * 3, timeout=TIMEOUT)
    assert calls == [[0], [1, 2]]  # the two later edits were coalesced into one save

    # a prediction lands in place (as the predict panel writes it) and is saved as snapshot
    tag = labels.metadata["napari_unet"]
    viewer.dims.set_current_step(0, 2)
    qtbot.wait(100)
    new = np.zeros((32, 32), np.uint16)
    new[5:15, 5:15] = 30
    labels.data[2] = new
    tag["snapshot"][2] = new
    tag["predicted"] = sorted(tag["predicted"])
    labels.refresh()
    qtbot.waitUntil(lambda: on_disk(folder)[1][2] == "predicted", timeout=TIMEOUT)
    stored, _ = on_disk(folder)
    np.testing.assert_array_equal(stored.load_slice("img0001", 2).snapshot, new)
    qtbot.waitUntil(lambda: not autosave.pending, timeout=TIMEOUT)


def test_closing_the_viewer_flushes_pending_saves(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, labels = add_pair(viewer, predicted_stack(2))
    panel = make_panel(viewer, qtbot, delay_ms=60_000)  # the timer would never fire
    folder = panel.create_session().root
    panel.flush()
    labels.paint((1, 15, 15), 5)
    assert panel.autosave.pending
    viewer.close()
    stored, statuses = on_disk(folder)
    assert statuses == ["predicted", "edited"]
    assert stored.load_slice("img0001", 1).labels[15, 15] == 5


def test_messages_instead_of_tracebacks(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    warnings = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warnings.append)
    viewer = make_napari_viewer()
    panel = make_panel(viewer, qtbot)
    panel.create_button.click()  # no labels layer at all
    assert "No labels layer" in panel.state_label.text() and warnings
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="orphan")
    panel.create_button.click()  # labels without any image
    assert "No image layer" in panel.state_label.text()
    assert panel.session is None
    panel._guard(lambda: panel.open_session(tmp_path))  # not a session
    assert "holds no session" in panel.state_label.text()


def test_new_prediction_layer_joins_the_open_session(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    add_pair(viewer, predicted_stack(1)[0], name="first")
    panel = make_panel(viewer, qtbot)
    folder = panel.create_session().root
    _, labels = add_pair(viewer, predicted_stack(1)[0] * 2, name="second")  # a first prediction
    assert [image_id for _, image_id in panel.autosave.watched()] == ["img0001", "img0002"]
    assert labels.metadata["napari_unet"]["session_image_id"] == "img0002"
    qtbot.waitUntil(lambda: on_disk(folder, "img0002")[1] == ["predicted"], timeout=TIMEOUT)
    stored, _ = on_disk(folder, "img0002")
    np.testing.assert_array_equal(stored.load_slice("img0002", 0).labels, labels.data)


def test_a_channel_of_a_multichannel_file_is_stored_as_a_copy() -> None:
    from types import SimpleNamespace

    from napari_unet._widgets.session_panel import image_source

    whole = SimpleNamespace(
        source=SimpleNamespace(path="/data/cells.tif"),
        metadata={"napari_unet": {"axes": "CYX", "source": "/data/cells.tif"}},
    )
    channel = SimpleNamespace(
        source=SimpleNamespace(path="/data/cells.tif"),
        metadata={"napari_unet": {"axes": "YX", "source": "/data/cells.tif", "channel": 1}},
    )
    assert image_source(whole) == "/data/cells.tif"
    assert image_source(channel) is None


def test_a_zarr_volume_is_referenced_and_reopened_lazily(make_napari_viewer, qtbot, tmp_path):
    zarr = pytest.importorskip("zarr")
    from napari_unet._reader import get_reader
    from napari_unet.core.io.zarr_io import ngff_attributes

    volume = np.random.default_rng(1).integers(0, 255, (3, 32, 32), dtype=np.uint8)
    path = tmp_path / "vol.ome.zarr"
    group = zarr.open_group(store=str(path), mode="w", zarr_format=2)
    group.attrs.update(ngff_attributes("ZYX", path.name))
    group.create_array("0", shape=volume.shape, chunks=(1, 32, 32), dtype=volume.dtype)[...] = (
        volume
    )
    [(data, kwargs, _)] = get_reader(str(path))(str(path))
    viewer = make_napari_viewer()
    _, labels = add_pair(viewer, predicted_stack(3), image=viewer.add_image(data, **kwargs))
    panel = make_panel(viewer, qtbot)
    session = panel.create_session()
    assert session.root == tmp_path / "vol.unet-session"  # next to the volume
    entry = session.image("img0001")
    assert entry.source == path and entry.copy is None  # referenced, never copied
    assert not any((session.root / "images").glob("*"))
    panel.flush()

    other = make_napari_viewer()
    make_panel(other, qtbot).open_session(session.root)
    restored = other.layers["vol"]
    assert not isinstance(restored.data, np.ndarray)  # opened lazily again
    np.testing.assert_array_equal(np.asarray(restored.data), volume)
    np.testing.assert_array_equal(other.layers["vol labels"].data, labels.data)


def test_a_lazy_image_without_a_file_is_copied_only_when_it_fits(
    make_napari_viewer, qtbot, monkeypatch
):
    import dask.array as da

    from napari_unet._widgets import predict_job as J
    from napari_unet.core.errors import UserInputError

    viewer = make_napari_viewer()
    lazy = da.ones((3, 32, 32), dtype=np.uint16, chunks=(1, 32, 32))
    image = viewer.add_image(lazy, name="lazy", metadata={"napari_unet": {"axes": "ZYX"}})
    add_pair(viewer, predicted_stack(3), image=image)
    panel = make_panel(viewer, qtbot)
    monkeypatch.setattr(J, "available_memory", lambda: 1000)  # 6 kB would not fit
    with pytest.raises(UserInputError, match="open a crop"):
        panel.create_session()
    monkeypatch.setattr(J, "available_memory", lambda: 10**12)
    session = panel.add_labels_layer() and panel.session
    entry = session.image("img0001")
    assert entry.copy is not None  # no file to reference: stored as a copy
    np.testing.assert_array_equal(session.load_image("img0001"), np.ones((3, 32, 32)))


def test_issue15_point9_the_dock_shows_the_session_disk_use(make_napari_viewer, qtbot):
    from napari_unet._widgets.disk_use import human_size

    assert [human_size(n) for n in (512, 42_000_000, 1_234_000_000)] == [
        "512 bytes",
        "42 MB",
        "1.2 GB",
    ]
    viewer = make_napari_viewer()
    add_pair(viewer, predicted_stack())
    panel = make_panel(viewer, qtbot)
    session = panel.create_session()
    qtbot.waitUntil(lambda: on_disk(session.root)[1] == ["predicted"] * 3, timeout=TIMEOUT)

    def shown() -> str:
        return panel.disk_label.text()

    qtbot.waitUntil(
        lambda: shown() == f"Session: {human_size(session.disk_usage())} on disk", timeout=TIMEOUT
    )
    before = shown()
    big = session.new_version_path()
    big.write_bytes(np.random.default_rng(0).bytes(3_000_000))
    session.add_version(big, validate=None)
    panel.loop_state.add_version("v001")  # as the Fine-tune dock does when a version arrives
    qtbot.waitUntil(lambda: shown() != before, timeout=TIMEOUT)
    assert shown() == f"Session: {human_size(session.disk_usage())} on disk"
    assert "MB" in shown()


def test_issue19_point4_in_memory_pyramid_is_stored_at_full_resolution(make_napari_viewer, qtbot):
    """A multiscale image layer held in memory (a list of numpy levels, no file) is stored in the
    session as its level 0, not as the pyramid (``np.asarray`` of the list)."""
    viewer = make_napari_viewer()
    level0 = np.random.default_rng(1).random((2, 32, 32), np.float32)
    image = viewer.add_image([level0, level0[:, ::2, ::2].copy()], multiscale=True, name="pyr")
    assert image.multiscale
    _, labels = add_pair(viewer, predicted_stack(2), image=image)
    panel = make_panel(viewer, qtbot)
    session = panel.create_session()
    image_id = labels.metadata["napari_unet"]["session_image_id"]
    np.testing.assert_array_equal(np.asarray(session.load_image(image_id)), level0)
    assert session.image(image_id).axes == "ZYX"
