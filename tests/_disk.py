"""Fixtures for output locations that cannot be written: a full disk and a read-only folder.

``tiny_disk`` is a 256 KiB tmpfs and ``readonly_dir`` a read-only bind mount, when this process
may mount (root in a container or VM); each is unmounted in teardown. Where mounting is not
permitted the same failures are simulated by monkeypatching the calls that create or write files
under the folder (``os.open``, ``open``, ``os.mkdir``, ``shutil.disk_usage``), so the tests run
everywhere instead of being skipped. Use them with ``from tests._disk import readonly_dir,
tiny_disk`` (pytest picks up fixtures imported into a test module).
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import subprocess
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Size of the full-disk tmpfs: far less than any checkpoint or package.
TINY_DISK_SIZE = "256k"

_Usage = namedtuple("_Usage", "total used free")


def _mount(*args: str) -> bool:
    """Run ``mount ARGS``; True when it succeeded (False where mounting is not permitted)."""
    if shutil.which("mount") is None:
        return False
    try:
        done = subprocess.run(["mount", *args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=False)


def _writable(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return False
    probe.unlink()
    return True


def _fill(folder: Path) -> None:
    """Leave (almost) no free space on the tmpfs at ``folder``."""
    try:
        with open(folder / ".filler", "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
    except OSError:  # ENOSPC on a write or on the final flush
        pass


def _under(path: object, root: Path) -> bool:
    try:
        resolved = Path(os.fsdecode(path)).resolve() if not isinstance(path, int) else None
    except (TypeError, ValueError, OSError):
        return False
    return resolved is not None and (resolved == root or root in resolved.parents)


def _simulate(monkeypatch: pytest.MonkeyPatch, root: Path, code: int) -> None:
    """Make creating or writing a file under ``root`` fail with ``OSError(code)``."""
    root = root.resolve()
    message = os.strerror(code)
    real_os_open, real_open, real_mkdir = os.open, builtins.open, os.mkdir
    real_usage = shutil.disk_usage
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & write_flags and _under(path, root):
            raise OSError(code, message, os.fsdecode(path))
        return real_os_open(path, flags, *args, **kwargs)

    def fake_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and _under(file, root):
            raise OSError(code, message, os.fsdecode(file))
        return real_open(file, mode, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if code == errno.EROFS and _under(path, root):
            raise OSError(code, message, os.fsdecode(path))
        return real_mkdir(path, *args, **kwargs)

    def fake_usage(path):
        usage = real_usage(path)
        if code == errno.ENOSPC and _under(path, root):
            return _Usage(usage.total, usage.total, 0)
        return usage

    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(shutil, "disk_usage", fake_usage)


@pytest.fixture
def tiny_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on a full disk: a filled 256 KiB tmpfs, or ENOSPC simulated where mounting fails."""
    folder = tmp_path / "full-disk"
    folder.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", f"size={TINY_DISK_SIZE}", "tmpfs", str(folder))
    try:
        if mounted:
            _fill(folder)
        else:
            _simulate(monkeypatch, folder, errno.ENOSPC)
        yield folder
    finally:
        if mounted:
            _umount(folder)


@pytest.fixture
def readonly_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A read-only folder holding ``existing.txt``: a read-only bind mount, or EROFS simulated."""
    source = tmp_path / "readonly-source"
    source.mkdir()
    (source / "existing.txt").write_text("the user's file\n")
    folder = tmp_path / "readonly"
    folder.mkdir()
    mounted = _mount("--bind", "-o", "ro", str(source), str(folder))
    try:
        # old mount(8): a bind mount ignores "ro" until it is remounted
        remount = mounted and _writable(folder)
        if remount and not (_mount("-o", "remount,bind,ro", str(folder)) and not _writable(folder)):
            _umount(folder)
            mounted = False
        if not mounted:
            shutil.copy2(source / "existing.txt", folder / "existing.txt")
            _simulate(monkeypatch, folder, errno.EROFS)
        yield folder
    finally:
        if mounted:
            _umount(folder)
