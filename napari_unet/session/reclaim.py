"""Giving disk space back — only ever what the session itself wrote, and never silently.

A file is the session's when its name is one the session makes (nothing else is ever deleted;
a file with any other name is left alone and logged once as not part of the session):

- ``images/img<NNNN>.tif`` and ``labels|reviewed|snapshots/img<NNNN>/<slice>-<counter>.npz``:
  the data files; one the index does not name was written by a save killed before its commit,
  or was superseded by a save killed before its clean-up;
- ``models/<name>-<YYYYmmdd-HHMMSS>-<6 hex>.pt`` (:meth:`Session.new_version_path`): a file
  never registered was left by a trainer killed between writing and registering it;
- ``runs/<YYYYmmdd-HHMMSS>-<6 hex>/`` with ``best.pt``, ``latest.pt`` and ``.lock``: a trainer's
  run; ``best.pt`` was published into ``models/`` already, and only the newest ``latest.pt`` is
  kept, for resuming;
- beside each of those, the temporary files of :mod:`napari_unet.core.atomic`
  (``.<name>.<8 random characters>.tmp``), and ``.session.json.<…>.tmp`` in the session folder.

A run in progress holds ``runs/<id>/.lock`` (:func:`~napari_unet.session.store.hold_run_lock`);
while any run does, unregistered model files are left alone (the trainer may be publishing one).
A run folder without its lock file yet (being created), and an unregistered model file, are
left alone until they are :data:`GRACE_SECONDS` old (a version being copied in by another
program is registered well within that).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from napari_unet.session.store import LOCK_NAME, run_is_active

logger = logging.getLogger(__name__)

#: Sub-folders whose files the index names.
DATA_FOLDERS: tuple[str, ...] = ("labels", "reviewed", "snapshots", "images")
RUNS_FOLDER = "runs"
MODELS_FOLDER = "models"
#: Files in ``runs/`` and ``models/`` younger than this are never reclaimed.
GRACE_SECONDS = 60.0

_TEMP = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile.mkstemp's 8 characters
_IMAGE_ID = r"img\d{4,}"
_SLICE_FILE = re.compile(rf"^{_IMAGE_ID}/\d{{5,}}-\d{{6,}}\.npz$")
_IMAGE_COPY = re.compile(rf"^{_IMAGE_ID}\.tif$")
_MODEL_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}-\d{8}-\d{6}-[0-9a-f]{6}\.pt$")
_RUN_FOLDER = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
_RUN_FILES = ("best.pt", "latest.pt")
_reported: set[str] = set()  # foreign files already logged by this process


def _ours(name: str, matches: Callable[[str], bool]) -> bool:
    """``name`` is a session file (``matches``) or the temporary file of one."""
    temp = _TEMP.match(name)
    return matches(temp["target"] if temp else name)


def _is_index_temp(name: str) -> bool:
    temp = _TEMP.match(name)
    return bool(temp) and temp["target"] == "session.json"


def _data_file(folder: str, relative: str) -> bool:
    """``relative`` (inside ``folder``) is a name the session gives its data files."""
    parent, _, name = relative.rpartition("/")
    if folder == "images":
        return not parent and _ours(name, lambda n: bool(_IMAGE_COPY.match(n)))
    return _ours(name, lambda n: bool(_SLICE_FILE.match(f"{parent}/{n}")))


def _walk(base: Path) -> Iterable[Path]:
    """Files (and links) under ``base``, never following a link."""
    for folder, dirs, files in os.walk(base, followlinks=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            yield Path(folder, name)


def _remove(root: Path, paths: list[Path], why: str) -> list[str]:
    removed = []
    for path in paths:
        try:
            path.unlink()
        except OSError as err:
            logger.debug("cannot remove %s: %s", path, err)
            continue
        removed.append(path.relative_to(root).as_posix())
    if removed:
        shown = ", ".join(removed[:20]) + (f" and {len(removed) - 20} more" if removed[20:] else "")
        logger.warning("reclaimed %d file(s) in %s (%s): %s", len(removed), root, why, shown)
    return removed


def _report_foreign(root: Path, paths: list[Path]) -> None:
    fresh = [p.relative_to(root).as_posix() for p in paths if str(p) not in _reported]
    _reported.update(str(p) for p in paths)
    if fresh:
        shown = ", ".join(fresh[:20]) + (f" and {len(fresh) - 20} more" if fresh[20:] else "")
        logger.warning(
            "%d file(s) in %s are not part of the session and were left alone: %s",
            len(fresh),
            root,
            shown,
        )


def reclaim_data(root: Path, referenced: Iterable[str]) -> list[str]:
    """Remove the session's data files that its index does not name (call under the lock).

    Returns the removed paths, relative to ``root``; other files are left alone.
    """
    keep = set(referenced)
    ours = [p for p in root.iterdir() if _is_index_temp(p.name) and p.is_file()]
    foreign: list[Path] = []
    for folder in DATA_FOLDERS:
        base = root / folder
        if not base.is_dir() or base.is_symlink():
            continue
        for path in _walk(base):
            relative = path.relative_to(root).as_posix()
            if relative in keep:
                continue
            inner = relative.removeprefix(f"{folder}/")
            (ours if _data_file(folder, inner) else foreign).append(path)
    removed = _remove(root, ours, "left by an interrupted or superseded save")
    _report_foreign(root, foreign)
    for folder in DATA_FOLDERS[:3]:  # empty folders of images removed from the session
        base = root / folder
        if base.is_dir() and not base.is_symlink():
            for child in base.iterdir():
                if (
                    re.fullmatch(_IMAGE_ID, child.name)
                    and child.is_dir()
                    and not child.is_symlink()
                ):
                    with contextlib.suppress(OSError):
                        child.rmdir()
    return removed


def _settled(path: Path, grace: float) -> bool:
    try:
        return time.time() - path.lstat().st_mtime >= grace
    except OSError:
        return False


def reclaim_runs(root: Path, *, grace: float = GRACE_SECONDS) -> tuple[list[str], bool]:
    """Remove finished runs' files except the newest ``latest.pt``.

    Returns:
        The removed paths (relative to ``root``) and whether a run is in progress.
    """
    base = root / RUNS_FOLDER
    if not base.is_dir() or base.is_symlink():
        return [], False
    active, finished, foreign = False, [], []
    for run in base.iterdir():
        if not (_RUN_FOLDER.match(run.name) and run.is_dir() and not run.is_symlink()):
            foreign.append(run)
        elif run_is_active(run):
            active = True
        elif (run / LOCK_NAME).is_file() or _settled(run, grace):
            finished.append(run)  # its trainer ended (or died); no lock yet: wait for the grace
    latest = [r / "latest.pt" for r in finished if (r / "latest.pt").is_file()]
    keep = max(latest, key=lambda p: p.stat().st_mtime, default=None)
    doomed = []
    for run in finished:
        for path in run.iterdir():
            if path == keep or path.name == LOCK_NAME:
                continue  # the lock stays while the folder does: it marks a started run
            if _ours(path.name, lambda n: n in _RUN_FILES):
                doomed.append(path)
            else:
                foreign.append(path)
    removed = _remove(root, doomed, "left by finished or interrupted training runs")
    for run in finished:
        with contextlib.suppress(OSError):
            if [p.name for p in run.iterdir()] == [LOCK_NAME]:
                (run / LOCK_NAME).unlink()
            run.rmdir()  # only when empty
    _report_foreign(root, foreign)
    return removed, active


def reclaim_models(
    root: Path, registered: Iterable[str], *, grace: float = GRACE_SECONDS
) -> list[str]:
    """Remove model files the session named but never registered (call with no run active)."""
    base = root / MODELS_FOLDER
    if not base.is_dir() or base.is_symlink():
        return []
    keep = set(registered)
    doomed, foreign = [], []
    for path in base.iterdir():
        if f"{MODELS_FOLDER}/{path.name}" in keep or path.is_dir():
            continue
        if _ours(path.name, lambda n: bool(_MODEL_FILE.match(n))):
            if _settled(path, grace):
                doomed.append(path)
        else:
            foreign.append(path)
    _report_foreign(root, foreign)
    return _remove(root, doomed, "model files never registered as versions (an interrupted run)")


def reclaim(root: Path, referenced: Iterable[str], *, grace: float = GRACE_SECONDS) -> list[str]:
    """Everything above, in order; returns the removed paths (relative to ``root``)."""
    referenced = set(referenced)
    removed = reclaim_data(root, referenced)
    from_runs, active = reclaim_runs(root, grace=grace)
    removed += from_runs
    if not active:
        removed += reclaim_models(root, referenced, grace=grace)
    return removed


def disk_usage(root: Path) -> int:
    """Bytes of every file in the session folder (links are not followed)."""
    total = 0
    for folder, _, files in os.walk(root, followlinks=False):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
