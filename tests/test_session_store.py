"""Session round trip: create, add images, save slices, reopen; versions; default folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core.errors import UserInputError
from napari_unet.core.io.images import write_tiff
from napari_unet.session import Session, SessionError, default_session_folder
from napari_unet.session.tracking import annotated_mask


def _data_files(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for folder in ("labels", "reviewed", "snapshots", "images")
        for p in (root / folder).rglob("*")
        if p.is_file()
    }


@pytest.fixture
def stack_file(tmp_path: Path) -> Path:
    """A (3, 64, 64) uint16 ZYX TIFF: the user's own image."""
    image = np.arange(3 * 64 * 64, dtype=np.uint16).reshape(3, 64, 64)
    return write_tiff(tmp_path / "cells.tif", image, axes="ZYX")


@pytest.fixture
def prediction() -> np.ndarray:
    labels = np.zeros((64, 64), dtype=np.uint16)
    labels[10:20, 10:20] = 1
    labels[40:50, 40:50] = 2
    return labels


def test_round_trip(tmp_path: Path, stack_file: Path, prediction: np.ndarray) -> None:
    source_bytes = stack_file.read_bytes()
    session = Session.create(tmp_path / "s", name="demo")
    stack_id = session.add_image("cells", axes="ZYX", source=stack_file, task="instances")
    sample = np.random.default_rng(0).integers(0, 255, (32, 48, 2), dtype=np.uint8)
    sample_id = session.add_image("sample", axes="YXC", image=sample, task="semantic")
    assert session.add_image("cells", axes="ZYX", source=stack_file) == stack_id  # no duplicate

    entry = session.save_slice(
        stack_id, 0, labels=prediction, snapshot=prediction, model_version="builtin:nuclei"
    )
    assert entry.status == "predicted" and entry.labels == entry.snapshot  # one shared file
    edited = prediction.copy()
    edited[25:30, 25:35] = 3
    entry = session.save_slice(stack_id, 0, labels=edited)
    assert (entry.status, entry.pixels_changed, entry.objects_touched) == ("edited", 50, 1)
    reviewed = np.ones((64, 64), dtype=bool)
    session.save_slice(stack_id, 2, labels=prediction, reviewed=reviewed)
    painted = np.zeros((32, 48), dtype=np.uint8)
    painted[5:10, 5:10] = 2
    session.save_slice(sample_id, 0, labels=painted)

    reopened = Session.open(tmp_path / "s")
    assert reopened.name == "demo" and not reopened.problems
    assert reopened.statuses(stack_id) == ["edited", "unlabelled", "reviewed"]
    assert reopened.statuses(sample_id) == ["edited"]
    data = reopened.load_slice(stack_id, 0)
    np.testing.assert_array_equal(data.labels, edited)
    np.testing.assert_array_equal(data.snapshot, prediction)
    assert data.labels.dtype == np.uint16 and data.reviewed is None
    assert reopened.slice_entry(stack_id, 0).model_version == "builtin:nuclei"
    empty = reopened.load_slice(stack_id, 1)
    assert empty.labels is None and empty.snapshot is None and empty.reviewed is None
    volume = reopened.load_labels_volume(stack_id)
    assert volume.shape == (3, 64, 64) and volume.dtype == np.uint16
    np.testing.assert_array_equal(volume[2], prediction)
    assert not volume[1].any()
    np.testing.assert_array_equal(reopened.load_image(sample_id), sample)  # the stored copy
    image = reopened.image(sample_id)
    assert (image.source, image.axes, image.labels_shape, image.kind) == (
        None,
        "YXC",
        (32, 48),
        "semantic",
    )
    assert reopened.image(stack_id).source == stack_file.absolute()
    assert stack_file.read_bytes() == source_bytes  # the user's file is only read
    # every stored file is named by the index, nothing is left over
    index = json.loads((tmp_path / "s" / "session.json").read_text())
    named = {
        r[k]
        for im in index["images"].values()
        for r in im["slices"].values()
        for k in ("labels", "reviewed", "snapshot")
        if r[k]
    } | {f"images/{sample_id}.tif"}
    assert _data_files(tmp_path / "s") == named


def test_training_items_and_accounting(tmp_path: Path, stack_file, prediction) -> None:
    writer = Session.create(tmp_path / "s")
    image_id = writer.add_image("cells", axes="ZYX", source=stack_file, task="instances")
    writer.save_slice(image_id, 0, labels=prediction, snapshot=prediction)  # not annotated
    reader = Session.open(tmp_path / "s", readonly=True)  # e.g. the trainer process
    assert reader.training_items() == []
    edited = prediction.copy()
    edited[40:50, 50:55] = 2  # extend object 2
    writer.save_slice(image_id, 1, labels=edited, snapshot=prediction)
    reviewed = np.zeros((64, 64), bool)
    reviewed[:16] = True
    writer.save_slice(image_id, 0, reviewed=reviewed)
    items = reader.training_items()  # sees the writer's saves
    assert [item.name for item in items] == [f"{image_id}/00000", f"{image_id}/00001"]
    stack = np.arange(3 * 64 * 64, dtype=np.uint16).reshape(3, 1, 64, 64)
    for item in items:
        np.testing.assert_array_equal(item.image, stack[item.slice_index])
    np.testing.assert_array_equal(items[0].annotated_mask, reviewed)
    np.testing.assert_array_equal(items[1].annotated_mask, annotated_mask(edited, prediction, None))
    assert items[1].annotated_mask.sum() == 150 and items[1].task == "instances"
    writer.add_correction_time(90)
    rounds = writer.rounds()
    assert rounds[-1]["pixels_edited"] == 50 and rounds[-1]["objects_edited"] == 1
    assert rounds[-1]["pixels_reviewed"] == 16 * 64 and rounds[-1]["seconds_correcting"] == 90
    with pytest.raises(SessionError, match="read-only"):
        reader.save_slice(image_id, 0, labels=prediction)


def test_reader_survives_a_concurrent_save(tmp_path: Path, prediction) -> None:
    writer = Session.create(tmp_path / "s")
    image_id = writer.add_image("x", axes="YX", image=np.zeros((64, 64), np.uint8))
    writer.save_slice(image_id, 0, labels=prediction)
    reader = Session.open(tmp_path / "s", readonly=True)
    writer.save_slice(image_id, 0, labels=prediction + 1)  # deletes the file the reader knows
    np.testing.assert_array_equal(reader.load_slice(image_id, 0).labels, prediction + 1)


def test_bad_inputs_are_refused(tmp_path: Path, stack_file, prediction) -> None:
    session = Session.create(tmp_path / "s")
    with pytest.raises(SessionError, match="already holds a session"):
        Session.create(tmp_path / "s")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SessionError, match="not an empty folder"):
        Session.create(tmp_path / "other")
    with pytest.raises(SessionError, match="holds no session"):
        Session.open(tmp_path / "other")
    with pytest.raises(SessionError, match="no file and no data"):
        session.add_image("x", axes="YX")
    with pytest.raises(UserInputError):
        session.add_image("x", axes="YX", source=stack_file)  # the file is 3-D
    image_id = session.add_image("x", axes="ZYX", source=stack_file)
    with pytest.raises(SessionError, match="slice 3 does not exist"):
        session.save_slice(image_id, 3, labels=prediction)
    with pytest.raises(ValueError, match="integer"):
        session.save_slice(image_id, 0, labels=prediction.astype(np.float32))
    with pytest.raises(ValueError, match="64"):
        session.save_slice(image_id, 0, labels=prediction[:32])
    index = json.loads((tmp_path / "s" / "session.json").read_text())
    index["format_version"] = 99
    (tmp_path / "s" / "session.json").write_text(json.dumps(index))
    with pytest.raises(SessionError, match="newer napari-unet-loop"):
        Session.open(tmp_path / "s")


def test_missing_slice_file_is_reported_not_fatal(tmp_path: Path, prediction) -> None:
    session = Session.create(tmp_path / "s")
    image_id = session.add_image("x", axes="YX", image=np.zeros((64, 64), np.uint8))
    entry = session.save_slice(image_id, 0, labels=prediction)
    (tmp_path / "s" / entry.labels).unlink()
    reopened = Session.open(tmp_path / "s")
    assert reopened.statuses(image_id) == ["unlabelled"]
    assert "missing" in reopened.problems[0]


def _fake_checkpoint(path: Path, size: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_versions(tmp_path: Path) -> None:
    session = Session.create(tmp_path / "s")
    checked: list[Path] = []
    first = session.add_version(
        _fake_checkpoint(session.new_version_path()),
        parent="builtin:nuclei",
        steps=10,
        metrics={"iou": 0.5},
        validate=checked.append,
    )
    outside = _fake_checkpoint(tmp_path / "elsewhere" / "mine.pt")
    second = session.add_version(outside, name="mine", parent=first.id, validate=checked.append)
    assert checked[-1] == outside.absolute()
    assert (first.id, first.name, second.id, second.parent) == ("v001", "version 1", "v002", "v001")
    assert second.file.startswith("models/") and session.version_path(second.id).is_file()
    assert outside.is_file()  # copied in, not moved
    with pytest.raises(SessionError, match="missing or empty"):
        session.add_version(_fake_checkpoint(session.new_version_path(), size=0), validate=None)
    session.rename_version(first.id, "first try")
    path = session.version_path(second.id)
    session.delete_version(second.id)
    assert not path.exists()
    reopened = Session.open(tmp_path / "s")
    assert [(v.id, v.name, v.metrics) for v in reopened.versions()] == [
        ("v001", "first try", {"iou": 0.5})
    ]
    rounds = reopened.rounds()
    assert [r["version"] for r in rounds] == ["v001", "v002", None]
    third = reopened.add_version(_fake_checkpoint(reopened.new_version_path()), validate=None)
    assert third.id == "v003"  # ids are never reused


def test_truncated_checkpoint_is_never_registered(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from napari_unet.core.checkpoint.format import save_checkpoint
    from napari_unet.core.errors import CheckpointError
    from napari_unet.core.models import build_model

    session = Session.create(tmp_path / "s")
    model = build_model("unet", depth=2, base_channels=4, out_channels=1)
    good = save_checkpoint(session.new_version_path(), model, task="binary")
    truncated = session.new_version_path("cut")
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        session.add_version(truncated)
    assert session.versions() == []
    assert session.add_version(good).id == "v001"


def test_pins_and_settings(tmp_path: Path) -> None:
    session = Session.create(tmp_path / "s")
    image_id = session.add_image("x", axes="YX", image=np.zeros((8, 8), np.uint8))
    session.pin_validation(image_id, 0, rect=(0, 0, 4, 4))
    session.pin_validation(image_id, 0, rect=(0, 0, 4, 4))
    session.update_settings(auto_switch_version=True)
    reopened = Session.open(tmp_path / "s")
    assert reopened.validation_pins() == [
        {"image_id": image_id, "slice_index": 0, "rect": [0, 0, 4, 4]}
    ]
    assert reopened.settings == {"auto_switch_version": True}
    reopened.unpin_validation(image_id, 0, rect=(0, 0, 4, 4))
    assert reopened.validation_pins() == []


def test_default_session_folder(tmp_path: Path, monkeypatch) -> None:
    image = tmp_path / "data" / "embryo.ome.tif"
    image.parent.mkdir()
    assert default_session_folder(image, "embryo") == tmp_path / "data" / "embryo.unet-session"
    monkeypatch.setenv("NAPARI_UNET_SESSIONS_DIR", str(tmp_path / "sessions"))
    assert default_session_folder(None, "Sample: blobs/../x") == (
        tmp_path / "sessions" / "Sample_blobs_.._x"
    )
    assert default_session_folder(None, "...") == tmp_path / "sessions" / "session"
    monkeypatch.delenv("NAPARI_UNET_SESSIONS_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "napari-unet-loop" / "sessions" / "blobs"
    assert default_session_folder(None, "blobs") == expected
    if os.geteuid() != 0:  # root can write anywhere
        image.parent.chmod(0o555)
        try:
            assert default_session_folder(image, "e").parent == expected.parent
        finally:
            image.parent.chmod(0o755)


def test_session_package_imports_neither_torch_nor_qt() -> None:
    code = (
        "import sys, napari_unet.session; "
        "print(sorted(m for m in ('torch', 'napari', 'qtpy', 'magicgui') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
