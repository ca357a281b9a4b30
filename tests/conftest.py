"""Shared test fixtures: small, deterministic, offline."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
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
# As root (CI containers), the fixtures mount a real 256 kB tmpfs / a read-only bind mount, so the
# code meets the kernel's own ENOSPC / EROFS. Where mounting is not permitted they fall back to
# monkeypatching the calls that write (so the test still runs, never skips). Which way a test ran
# is recorded in its ``user_properties`` as ("disk", "mounted" | "monkeypatched") and printed.
# NAPARI_UNET_TEST_NO_MOUNT=1 forces the fallback (to test it).


def _mount(*args: str) -> bool:
    if os.environ.get("NAPARI_UNET_TEST_NO_MOUNT"):
        return False
    try:
        done = subprocess.run(["mount", *args], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True, timeout=30, check=True)


def _inside(path: object, folder: Path) -> bool:
    try:
        return Path(os.path.abspath(os.fspath(path))).is_relative_to(folder)
    except TypeError:
        return False


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _refuse_writes(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int) -> None:
    """Make every write under ``folder`` fail with ``OSError(code)`` (the fallback)."""
    message = os.strerror(code)
    real_open, real_fsync = pathlib.Path.open, os.fsync
    real_mkstemp, real_mkdir = tempfile.mkstemp, os.mkdir

    def path_open(self, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and _inside(self, folder):
            raise OSError(code, message, str(self))
        return real_open(self, mode, *args, **kwargs)

    def fsync(fd):
        if _inside(_fd_path(fd), folder):
            raise OSError(code, message)
        return real_fsync(fd)

    def mkstemp(*args, **kwargs):
        if code != errno.ENOSPC and _inside(kwargs.get("dir") or tempfile.gettempdir(), folder):
            raise OSError(code, message, os.path.join(str(kwargs.get("dir")), ".x.tmp"))
        return real_mkstemp(*args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if code != errno.ENOSPC and _inside(path, folder):
            raise OSError(code, message, str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", path_open)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "mkdir", mkdir)
    if code != errno.ENOSPC:
        real_access = os.access
        monkeypatch.setattr(
            os,
            "access",
            lambda p, mode, *a, **k: (
                False if mode & os.W_OK and _inside(p, folder) else real_access(p, mode, *a, **k)
            ),
        )


def _record(request: pytest.FixtureRequest, how: str) -> None:
    request.node.user_properties.append(("disk", how))
    print(f"[{request.fixturename}: {how}]")


@pytest.fixture
def tiny_disk(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A folder on a full disk: writing any file there fails with ENOSPC.

    A real 256 kB tmpfs filled up to its last block (unmounted in teardown), or, where mounting
    is not permitted, a plain folder whose writes are monkeypatched to fail the same way.
    """
    folder = tmp_path / "tiny"
    folder.mkdir()
    if _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)):
        try:
            with contextlib.suppress(OSError), open(folder / "filler", "wb") as handle:
                while True:
                    handle.write(bytes(4096))
                    handle.flush()
            _record(request, "mounted")
            yield folder
        finally:
            _umount(folder)
        return
    (folder / "filler").write_bytes(bytes(4096))
    _refuse_writes(monkeypatch, folder, errno.ENOSPC)
    _record(request, "monkeypatched")
    yield folder


@pytest.fixture
def readonly_dir(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A read-only folder holding one file, ``mine.txt`` (writes fail with EROFS).

    A read-only bind mount of a folder onto itself (unmounted in teardown), or, where mounting is
    not permitted, a plain folder whose writes are monkeypatched to fail the same way.
    """
    folder = tmp_path / "readonly"
    folder.mkdir()
    (folder / "mine.txt").write_text("the user's file\n")
    if _mount("--bind", "-o", "ro", str(folder), str(folder)):
        if os.access(folder, os.W_OK) and not _mount("-o", "remount,ro,bind", str(folder)):
            _umount(folder)  # an old mount(8) that ignores ro on a bind: use the fallback
        else:
            try:
                _record(request, "mounted")
                yield folder
            finally:
                _umount(folder)
            return
    _refuse_writes(monkeypatch, folder, errno.EROFS)
    _record(request, "monkeypatched")
    yield folder
