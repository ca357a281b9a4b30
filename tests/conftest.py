"""Shared test fixtures: small, deterministic, offline."""

from __future__ import annotations

import builtins
import collections
import contextlib
import errno
import importlib.util
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

#: The real data sets (ISBI 2012, DSB2018 subset) beside the repository, never copied into it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

os.environ.setdefault("NAPARI_UNET_DATA_DIR", str(SHARED_DATA))


def pytest_configure(config: pytest.Config) -> None:
    """Keep torch to one thread per test process: CI machines have two cores."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the data sets are not beside the checkout."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the checkout")
    return SHARED_DATA


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_benchmark(name: str) -> ModuleType:
    if str(BENCHMARKS) not in sys.path:  # the benchmarks import their _bench_common
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_benchmark():
    """``load_benchmark("bench_train")``: import a script of benchmarks/ as a module."""
    return _load_benchmark


# --- full and read-only output folders (issue 15, point 6) ---
#
# The one implementation of ``tiny_disk`` / ``readonly_dir`` (every test module gets them from
# here; there is no second copy). As root (CI containers) they mount a real 256 kB tmpfs filled
# to its last block / a read-only bind mount, so the code meets the kernel's own ENOSPC / EROFS;
# the mount is always undone on exit (lazily if busy). Where mounting is not permitted, or with
# NAPARI_UNET_TEST_NO_MOUNT=1, the calls that write are monkeypatched to fail the same way, so the
# tests run everywhere instead of being skipped. Which way a test ran is recorded in its
# ``user_properties`` as ("disk", "mounted" | "monkeypatched") and printed.

#: Size of the full-disk tmpfs: far less than any checkpoint or package.
TINY_DISK_SIZE = "256k"
#: What ``readonly_dir`` holds: one file of the user's.
READONLY_FILE, READONLY_TEXT = "mine.txt", "the user's file\n"

_Usage = collections.namedtuple("_Usage", "total used free")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _mount(*args: str) -> bool:
    if os.environ.get("NAPARI_UNET_TEST_NO_MOUNT") or shutil.which("mount") is None:
        return False
    try:
        done = subprocess.run(["mount", *args], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _is_mount(folder: Path) -> bool:
    try:
        with open("/proc/self/mounts") as mounts:
            return any(line.split()[1] == str(folder) for line in mounts)
    except OSError:  # pragma: no cover - no /proc: trust umount's exit status
        return False


def _umount(folder: Path) -> None:
    """Undo every mount on ``folder``; a busy one is detached lazily (``umount -l``)."""
    for _ in range(3):
        if not _is_mount(folder):
            return
        done = subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)
        if done.returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)
    if _is_mount(folder):
        raise RuntimeError(f"could not unmount {folder}")


def _writable(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return False
    probe.unlink()
    return True


def _inside(path: object, folder: Path) -> bool:
    try:
        return Path(os.path.realpath(os.fspath(path))).is_relative_to(folder)
    except TypeError:  # a file descriptor
        return False


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _refuse_writes(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int) -> None:
    """Make every write under ``folder`` fail with ``OSError(code)`` (the fallback).

    Covers ``open``/``io.open`` (so ``Path.open``/``write_bytes`` too), ``os.open`` (so
    ``tempfile.mkstemp`` and ``Path.touch``), ``os.fsync``; for ENOSPC ``shutil.disk_usage``
    reports no free space; for EROFS also ``os.mkdir``, ``os.unlink``/``remove``/``rmdir``,
    ``os.rename``/``replace`` and ``os.access(W_OK)``, as a read-only mount does.
    """
    folder = Path(os.path.realpath(folder))
    message = os.strerror(code)

    def refuse(path: object) -> None:
        if _inside(path, folder):
            raise OSError(code, message, os.fsdecode(path))

    def patch(module, name: str, guard) -> None:
        real = getattr(module, name)

        def patched(*args, **kwargs):
            guard(*args, **kwargs)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, patched)

    def file_mode(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            refuse(file)

    patch(builtins, "open", file_mode)
    patch(io, "open", file_mode)
    patch(os, "open", lambda path, flags, *a, **k: refuse(path) if flags & _WRITE_FLAGS else None)
    patch(os, "fsync", lambda fd: refuse(_fd_path(fd)) if isinstance(fd, int) else refuse(fd))
    if code == errno.ENOSPC:
        real_usage = shutil.disk_usage

        def usage(path):
            total = real_usage(path).total
            return _Usage(total, total, 0) if _inside(path, folder) else real_usage(path)

        monkeypatch.setattr(shutil, "disk_usage", usage)
        return
    for name in ("mkdir", "unlink", "remove", "rmdir"):
        patch(os, name, lambda path, *a, **k: refuse(path))
    for name in ("rename", "replace"):
        patch(os, name, lambda src, dst, *a, **k: (refuse(src), refuse(dst)))
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, *a, **k: (
            False if mode & os.W_OK and _inside(p, folder) else real_access(p, mode, *a, **k)
        ),
    )


@contextlib.contextmanager
def full_disk(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make ``folder`` (created) a full disk; yields "mounted" or "monkeypatched"."""
    folder.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", f"size={TINY_DISK_SIZE}", "tmpfs", str(folder)):
        (folder / "filler").write_bytes(bytes(4096))
        _refuse_writes(monkeypatch, folder, errno.ENOSPC)
        yield "monkeypatched"
        return
    try:
        with contextlib.suppress(OSError), open(folder / "filler", "wb") as handle:
            while True:
                handle.write(bytes(4096))
                handle.flush()
        yield "mounted"
    finally:
        _umount(folder)


@contextlib.contextmanager
def readonly_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make ``folder`` (created, holding ``mine.txt``) read-only; yields how."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / READONLY_FILE).write_text(READONLY_TEXT)
    if _mount("--bind", "-o", "ro", str(folder), str(folder)):
        try:
            # an old mount(8) ignores "ro" on a bind until it is remounted
            if _writable(folder):
                _mount("-o", "remount,ro,bind", str(folder))
            if not _writable(folder):
                yield "mounted"
                return
        finally:
            _umount(folder)
    _refuse_writes(monkeypatch, folder, errno.EROFS)
    yield "monkeypatched"


def _record(request: pytest.FixtureRequest, how: str) -> None:
    request.node.user_properties.append(("disk", how))
    print(f"[{request.fixturename}: {how}]")


@pytest.fixture
def tiny_disk(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A folder on a full disk: writing any file there fails with ENOSPC.

    A real 256 kB tmpfs filled up to its last block (holding ``filler``; unmounted in teardown),
    or, where mounting is not permitted, a plain folder whose writes are monkeypatched to fail.
    """
    with full_disk(tmp_path / "tiny", monkeypatch) as how:
        _record(request, how)
        yield tmp_path / "tiny"


@pytest.fixture
def readonly_dir(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A read-only folder holding one file, ``mine.txt`` (writes fail with EROFS).

    A read-only bind mount of a folder onto itself (unmounted in teardown), or, where mounting is
    not permitted, a plain folder whose writes are monkeypatched to fail the same way.
    """
    with readonly_folder(tmp_path / "readonly", monkeypatch) as how:
        _record(request, how)
        yield tmp_path / "readonly"
