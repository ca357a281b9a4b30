"""Kill a writer with SIGKILL at random instants, many times: the session always opens at a
completed save, with every slice and version consistent with one finished iteration."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_unet.session import Session
from napari_unet.session.index import referenced_files

sys.path.insert(0, str(Path(__file__).parent))
from session_crash_writer import CHECKPOINT_BYTES, SHAPE, reviewed_for

logger = logging.getLogger(__name__)
WRITER = Path(__file__).with_name("session_crash_writer.py")
KILLS = 30


def _fill(array: np.ndarray | None) -> int | None:
    if array is None:
        return None
    values = np.unique(array)
    assert values.size == 1, "a slice mixes two saves"
    return int(values[0])


def _check(root: Path, done: int, first: int, state: dict) -> int:
    """Open the session after a kill and check it; return the last saved iteration.

    ``state`` carries what earlier runs left: ``slice1`` (the value of slice 1) and ``versions``
    (names that must stay registered).
    """
    session = Session.open(root)
    assert not session.problems
    image_id = session.images()[0].id
    slice0, slice1 = session.load_slice(image_id, 0), session.load_slice(image_id, 1)
    latest = _fill(slice0.labels)
    if latest is None or latest < first:  # killed before its first save
        assert _fill(slice1.labels) == state["slice1"]
        assert state["versions"] <= {v.name for v in session.versions()}
        return first - 1
    assert done <= latest <= done + 1  # the iteration printed last, or the one after it
    allowed = {latest - 1, latest} if latest > first else {latest, state["slice1"]}
    state["slice1"] = _fill(slice1.labels)
    assert state["slice1"] in allowed
    # the files of one save were committed together
    np.testing.assert_array_equal(slice0.reviewed, reviewed_for(latest))
    assert slice0.labels.shape == SHAPE
    entry = session.slice_entry(image_id, 0)
    assert entry.status == ("reviewed" if latest % 2 else "edited")  # all or half reviewed
    if _fill(slice0.snapshot) is not None:
        snap = _fill(slice0.snapshot)
        assert snap % 3 == 0 and snap <= latest and latest - snap < 3
        assert entry.model_version == f"it{snap}"
    # versions: every registered file is complete, and each finished iteration's is there
    names = [v.name for v in session.versions()]
    for version in session.versions():
        assert session.version_path(version.id).read_bytes() == CHECKPOINT_BYTES
    assert len(names) == len(set(names))
    assert all(int(n[2:]) <= latest for n in names)
    # this run finished iterations first..latest-1, so registered their versions
    state["versions"] |= {f"it{k}" for k in range(first, latest) if k % 5 == 0}
    assert state["versions"] <= set(names)
    # an opened session holds no leftovers of the interrupted save
    on_disk = {
        p.relative_to(root).as_posix()
        for folder in ("labels", "reviewed", "snapshots")
        for p in (root / folder).rglob("*")
        if p.is_file()
    }
    assert on_disk <= referenced_files(session._index)
    assert not [p for p in root.rglob(".*.tmp") if "models" not in p.parts]
    return latest


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_at_random_instants_leaves_a_loadable_session(tmp_path: Path) -> None:
    root = tmp_path / "s"
    session = Session.create(root)
    session.add_image("stack", axes="ZYX", image=np.zeros((2, *SHAPE), np.uint8), task="instances")
    rng = np.random.default_rng(1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first, saves, started = 1, 0, time.monotonic()
    state: dict = {"slice1": None, "versions": set()}
    for _ in range(KILLS):
        writer = subprocess.Popen(
            [sys.executable, str(WRITER), str(root), str(first)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert writer.stdout is not None
        if rng.random() < 0.15:  # sometimes while it is still opening (and cleaning up)
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
            time.sleep(rng.uniform(0.0, 0.25))
        os.kill(writer.pid, signal.SIGKILL)
        output, errors = writer.communicate()
        assert writer.returncode == -signal.SIGKILL, errors
        printed = [int(line) for line in output.split() if line.isdigit()]
        done = printed[-1] if printed else first - 1
        latest = _check(root, done, first, state)
        saves += latest - first + 1
        first = latest + 1
    assert saves > KILLS  # the writer really was interrupted mid-run, not only at start
    logger.info("%d kills, %d saves in %.1f s", KILLS, saves, time.monotonic() - started)
