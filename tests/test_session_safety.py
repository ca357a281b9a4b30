"""A session folder from elsewhere cannot reach other files; a failed save changes nothing."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core.errors import UserInputError
from napari_unet.session import Session, SessionError, SessionWriteError


@pytest.fixture
def session_dir(tmp_path: Path) -> tuple[Path, str]:
    """A session with one 64x64 image (stored copy) whose slice 0 has labels and a snapshot."""
    session = Session.create(tmp_path / "s")
    image_id = session.add_image("x", axes="YX", image=np.zeros((64, 64), np.uint8))
    labels = np.zeros((64, 64), np.uint16)
    labels[5:9, 5:9] = 1
    session.save_slice(image_id, 0, labels=labels, snapshot=np.zeros_like(labels))
    session.add_version(_checkpoint(session.new_version_path()), validate=None)
    return tmp_path / "s", image_id


def _checkpoint(path: Path) -> Path:
    path.write_bytes(b"weights")
    return path


def _edit_index(root: Path, edit) -> None:
    index = json.loads((root / "session.json").read_text())
    edit(index)
    (root / "session.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "labels/../../outside.npz",
        "labels/./x.npz",
        "labels\\..\\x.npz",
        "C:/Windows/x.npz",
        "models/v.pt",  # a path outside the slot's own folder
        "labels",
        42,
    ],
)
def test_crafted_slice_paths_are_refused(session_dir, bad) -> None:
    root, image_id = session_dir

    def edit(index: dict) -> None:
        index["images"][image_id]["slices"]["0"]["labels"] = bad

    _edit_index(root, edit)
    with pytest.raises(SessionError, match=f"image '{image_id}' slice 0 labels") as info:
        Session.open(root)
    assert isinstance(info.value, UserInputError)
    with pytest.raises(SessionError):
        Session.open(root, readonly=True)


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("copy", "images/../../x.tif", "copy"),
        ("source", "/etc/passwd", "not an absolute path to a TIFF"),
        ("source", "relative/image.tif", "not an absolute path to a TIFF"),
    ],
)
def test_crafted_image_paths_are_refused(session_dir, field, bad, message) -> None:
    root, image_id = session_dir

    def edit(index: dict) -> None:
        index["images"][image_id]["copy"] = None
        index["images"][image_id][field] = bad

    _edit_index(root, edit)
    with pytest.raises(SessionError, match=message):
        Session.open(root)


def test_crafted_ids_and_version_paths_are_refused(session_dir) -> None:
    root, image_id = session_dir
    original = (root / "session.json").read_text()
    _edit_index(root, lambda index: index["versions"][0].update(file="models/../../x.pt"))
    with pytest.raises(SessionError, match="model version 'v001'"):
        Session.open(root)
    (root / "session.json").write_text(original)
    _edit_index(root, lambda index: index["images"].update({"../evil": index["images"][image_id]}))
    with pytest.raises(SessionError, match="invalid id"):
        Session.open(root)


def test_symlink_leading_out_is_refused(session_dir, tmp_path: Path) -> None:
    root, image_id = session_dir
    secret = tmp_path / "secret"
    secret.mkdir()
    np.savez(secret / "00000-000099.npz", array=np.ones((64, 64), np.uint16))
    (root / "labels" / "evil").symlink_to(secret, target_is_directory=True)
    _edit_index(
        root,
        lambda index: index["images"][image_id]["slices"]["0"].update(
            labels="labels/evil/00000-000099.npz"
        ),
    )
    with pytest.raises(SessionError, match="outside the session folder"):
        Session.open(root)
    assert (secret / "00000-000099.npz").is_file()  # and nothing outside was touched


def test_damaged_index_is_a_clear_error(session_dir) -> None:
    root, _ = session_dir
    (root / "session.json").write_text('{"format": "napari-unet-loop session", "images": ')
    with pytest.raises(SessionError, match="cannot read the session index"):
        Session.open(root)


def _snapshot_of_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


@pytest.mark.parametrize(
    ("code", "reason"), [(errno.ENOSPC, "disk full"), (errno.EROFS, "the folder is read-only")]
)
def test_failed_write_keeps_the_last_save(session_dir, monkeypatch, code, reason) -> None:
    root, image_id = session_dir
    session = Session.open(root)
    before = _snapshot_of_files(root)
    labels = np.full((64, 64), 7, np.uint16)
    original = labels.copy()

    def full(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(SessionWriteError, match=f"{reason} — your corrections are still in"):
        session.save_slice(image_id, 0, labels=labels)
    with pytest.raises(SessionWriteError, match=r"choose another session folder|can write to"):
        session.add_image("y", axes="YX", image=np.zeros((8, 8), np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(labels, original)  # the caller's data are untouched
    assert _snapshot_of_files(root) == before  # no leftovers, nothing overwritten
    reopened = Session.open(root)
    assert reopened.load_slice(image_id, 0).labels[5, 5] == 1
    session.save_slice(image_id, 0, labels=labels)  # works again once space is back
    assert Session.open(root).load_slice(image_id, 0).labels[0, 0] == 7


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder(session_dir) -> None:
    root, image_id = session_dir
    before = _snapshot_of_files(root)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folder.chmod(0o555)
    try:
        session = Session.open(root)  # still opens for viewing
        with pytest.raises(SessionWriteError, match="read-only"):
            session.save_slice(image_id, 0, labels=np.zeros((64, 64), np.uint16))
    finally:
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            folder.chmod(0o755)
    assert _snapshot_of_files(root) == before


def test_linked_data_folder_or_lock_cannot_redirect_writes(session_dir, tmp_path: Path) -> None:
    root, image_id = session_dir
    outside = tmp_path / "outside"
    outside.mkdir()
    assert not (root / "reviewed").exists()  # nothing reviewed yet
    (root / "reviewed").symlink_to(outside, target_is_directory=True)
    session = Session.open(root)  # nothing of reviewed/ is referenced yet
    before = sorted(outside.rglob("*"))
    with pytest.raises(SessionError, match="outside the session folder"):
        session.save_slice(image_id, 0, reviewed=np.ones((64, 64), bool))
    assert sorted(outside.rglob("*")) == before
    (root / ".lock").unlink()
    (root / ".lock").symlink_to(outside / "created-by-lock")
    with pytest.raises(SessionError, match="is a link"):
        Session.open(root)
    assert not (outside / "created-by-lock").exists()
