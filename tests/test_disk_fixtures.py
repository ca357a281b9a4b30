"""The ``tiny_disk`` / ``readonly_dir`` fixtures of conftest.py refuse every way of writing.

Each test runs twice: with a real mount where this process may mount (root) and with the
monkeypatched fallback (``NAPARI_UNET_TEST_NO_MOUNT=1``), so a test that passes on a developer's
laptop (no mount) meets the same refusals as one in a root CI container.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from napari_unet.core.atomic import atomic_write_bytes

MODES = ["mount", "fallback"]


def _folder(request: pytest.FixtureRequest, monkeypatch, mode: str, name: str) -> Path:
    if mode == "fallback":
        monkeypatch.setenv("NAPARI_UNET_TEST_NO_MOUNT", "1")
    return request.getfixturevalue(name)


def _writes(folder: Path) -> dict:
    """Every way the code under test writes a new file into ``folder``."""

    def builtin_open():
        with open(folder / "a.bin", "wb") as handle:
            handle.write(bytes(8192))

    def os_open():
        fd = os.open(folder / "b.bin", os.O_WRONLY | os.O_CREAT)
        try:
            os.write(fd, bytes(8192))
        finally:
            os.close(fd)

    def mkstemp_fsync():
        fd, _ = tempfile.mkstemp(dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(bytes(8192))
            handle.flush()
            os.fsync(handle.fileno())

    return {
        "open": builtin_open,
        "Path.write_bytes": lambda: (folder / "c.bin").write_bytes(bytes(8192)),
        "os.open": os_open,
        "mkstemp+fsync": mkstemp_fsync,
        "atomic_write_bytes": lambda: atomic_write_bytes(folder / "d.bin", bytes(8192)),
    }


def _mounted(folder: Path) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(folder) for line in mounts)


@pytest.mark.parametrize("mode", MODES)
def test_tiny_disk_refuses_every_write_with_enospc(request, monkeypatch, mode: str) -> None:
    folder = _folder(request, monkeypatch, mode, "tiny_disk")
    for name, write in _writes(folder).items():
        with pytest.raises(OSError) as caught:
            write()
        assert caught.value.errno == errno.ENOSPC, name
    assert shutil.disk_usage(folder).free < 8192
    assert ("disk", "mounted" if _mounted(folder) else "monkeypatched") in (
        request.node.user_properties
    )


@pytest.mark.parametrize("mode", MODES)
def test_readonly_dir_refuses_writes_and_keeps_the_users_file(
    request, monkeypatch, mode: str
) -> None:
    folder = _folder(request, monkeypatch, mode, "readonly_dir")
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"]
    mine = folder / "mine.txt"
    attempts = {
        **_writes(folder),
        "mkdir": lambda: (folder / "sub").mkdir(),
        "unlink": mine.unlink,
        "replace": lambda: os.replace(mine, folder / "moved.txt"),
        "append": lambda: mine.open("a").close(),
    }
    for name, write in attempts.items():
        with pytest.raises(OSError) as caught:
            write()
        assert caught.value.errno in (errno.EROFS, errno.EACCES), name
    assert not os.access(folder, os.W_OK)
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"]
    assert mine.read_text() == "the user's file\n"


@pytest.mark.parametrize("name", ["tiny_disk", "readonly_dir"])
def test_a_failing_set_up_or_body_leaves_no_mount(tmp_path: Path, name: str) -> None:
    """The context managers behind the fixtures unmount whatever happens inside them."""
    import conftest

    manager = {"tiny_disk": conftest.full_disk, "readonly_dir": conftest.readonly_folder}[name]
    folder = tmp_path / name
    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError), manager(folder, mp):
        raise RuntimeError("the test failed")
    assert not _mounted(folder)
    folder.joinpath("x").write_text("writable again")
