"""Issue 15: a session never destroys what it did not write, refuses a second writer's stale save,
is created atomically, says at once when it is locked, refuses untrainable labels and damaged
checkpoints, and gives back the disk its runs and interrupted saves used."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core.errors import UserInputError
from napari_unet.session import Session

SHAPE = (32, 32)


def _one_sentence(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text, text
    assert text.endswith("."), text
    return text


@pytest.fixture
def root(tmp_path: Path) -> Path:
    session = Session.create(tmp_path / "s")
    image_id = session.add_image("x", axes="YX", image=np.zeros(SHAPE, np.uint8))
    labels = np.zeros(SHAPE, np.uint16)
    labels[2:6, 2:6] = 1
    session.save_slice(image_id, 0, labels=labels)
    return tmp_path / "s"


def _tiff(path: Path) -> Path:
    from napari_unet.core.io.images import write_tiff

    path.parent.mkdir(parents=True, exist_ok=True)
    write_tiff(path, np.arange(64, dtype=np.uint8).reshape(8, 8))
    return path


# ---------------------------------------------------------------------- point 2
def test_issue15_point2_open_keeps_files_the_session_did_not_write(root: Path, caplog) -> None:
    foreign = [
        _tiff(root / "images" / "mine.tif"),
        _tiff(root / "labels" / "mine.tif"),
        _tiff(root / "reviewed" / "img0001" / "notes.tif"),
        root / "snapshots" / "backup.npz",
        root / "labels" / "img0001" / "my-labels.npz",
        root / "images" / ".hidden.tmp",
    ]
    for path in foreign[3:]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"the user's own file")
    before = {p: p.read_bytes() for p in foreign}
    with caplog.at_level(logging.INFO, logger="napari_unet.session"):
        Session.open(root)
        Session.open(root)
    assert {p: p.read_bytes() for p in foreign if p.exists()} == before
    notes = [r for r in caplog.records if "not part of the session" in r.getMessage()]
    assert notes and "images/mine.tif" in notes[0].getMessage()


def test_issue15_point2_session_leftovers_are_removed_with_a_warning(
    root: Path, caplog, monkeypatch
) -> None:
    session = Session.open(root)
    image_id = session.images()[0].id
    # a save whose clean-up was interrupted after its commit: the superseded file stays
    from napari_unet.session import session as session_module

    monkeypatch.setattr(session_module, "remove_files", lambda *a, **k: None)
    old = session.slice_entry(image_id, 0).labels
    session.save_slice(image_id, 0, labels=np.full(SHAPE, 2, np.uint16))
    monkeypatch.undo()
    # and what a save killed before its commit wrote
    uncommitted = root / "labels" / image_id / "00000-000099.npz"
    shutil.copy(root / old, uncommitted)
    temp = root / ".session.json.abcd_123.tmp"
    temp.write_text("{")
    assert (root / old).is_file()
    with caplog.at_level(logging.WARNING, logger="napari_unet.session"):
        reopened = Session.open(root)
    assert not (root / old).exists() and not uncommitted.exists() and not temp.exists()
    removed = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert old in removed and uncommitted.name in removed
    assert reopened.load_slice(image_id, 0).labels.max() == 2


# ---------------------------------------------------------------------- point 3
def test_issue15_point3_a_stale_save_of_a_slice_is_refused(root: Path) -> None:
    from napari_unet.session.errors import SessionConflictError

    first, second = Session.open(root), Session.open(root)
    image_id = first.images()[0].id
    first.save_slice(image_id, 0, labels=np.full(SHAPE, 111, np.uint16))
    with pytest.raises(SessionConflictError) as info:
        second.save_slice(image_id, 0, labels=np.full(SHAPE, 222, np.uint16))
    assert "another program" in _one_sentence(info.value)
    assert Session.open(root).load_slice(image_id, 0).labels.max() == 111
    # the first writer keeps saving; a new image of the second writer is no conflict
    first.save_slice(image_id, 0, labels=np.full(SHAPE, 112, np.uint16))
    other = second.add_image("y", axes="YX", image=np.zeros(SHAPE, np.uint8))
    second.save_slice(other, 0, labels=np.ones(SHAPE, np.uint16))
    assert Session.open(root).load_slice(image_id, 0).labels.max() == 112
    # reopened, the second program sees the first one's save and may change it
    third = Session.open(root)
    third.save_slice(image_id, 0, labels=np.full(SHAPE, 333, np.uint16))
    assert Session.open(root).load_slice(image_id, 0).labels.max() == 333


def _create_worker(folder_base: str, tries: int, barrier, results, worker: int) -> None:
    from napari_unet.session import Session, SessionError

    for attempt in range(tries):
        folder = Path(folder_base) / f"try{attempt}"
        barrier.wait()
        try:
            session = Session.create(folder)
            image_id = session.add_image(f"w{worker}", axes="YX", image=np.zeros((8, 8), np.uint8))
            results.put((attempt, worker, "ok", image_id))
        except SessionError as err:
            results.put((attempt, worker, "refused", str(err)))
        except Exception as err:  # reported to the test
            results.put((attempt, worker, "crashed", repr(err)))


def test_issue15_point3_simultaneous_create_has_exactly_one_winner(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    tries, workers = 15, 2
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(target=_create_worker, args=(str(tmp_path), tries, barrier, results, w))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in range(tries * workers)]
    for process in processes:
        process.join(30)
    for attempt in range(tries):
        mine = [o for o in outcomes if o[0] == attempt]
        winners = [o for o in mine if o[2] == "ok"]
        assert len(winners) == 1, mine
        (loser,) = [o for o in mine if o[2] != "ok"]
        assert loser[2] == "refused" and "already holds a session" in loser[3], loser
        session = Session.open(tmp_path / f"try{attempt}", readonly=True)
        assert [e.id for e in session.images()] == [winners[0][3]]


def _add_same_image_worker(folder_base: str, tries: int, barrier, results) -> None:
    """Open each session, then add the same image file as the other process at the same instant.

    The lock is taken 0.3 s late (a slow disk), so a duplicate check done before the lock sees
    neither process's image: only a check under the lock keeps the second add out.
    """
    import contextlib

    import napari_unet.session.session as session_module
    from napari_unet.session import Session

    real_lock = session_module.writer_lock

    @contextlib.contextmanager
    def slow_lock(*args, **kwargs):
        time.sleep(0.3)
        with real_lock(*args, **kwargs):
            yield

    for attempt in range(tries):
        session = Session.open(Path(folder_base) / f"try{attempt}")
        session_module.writer_lock = slow_lock
        barrier.wait()
        try:
            image_id = session.add_image("cells", axes="YX", source=Path(folder_base) / "cells.tif")
            results.put((attempt, image_id))
        except Exception as err:  # reported to the test
            results.put((attempt, repr(err)))
        session_module.writer_lock = real_lock


def test_two_programs_adding_the_same_image_at_once_add_it_once(tmp_path: Path) -> None:
    _tiff(tmp_path / "cells.tif")
    tries = 3
    for attempt in range(tries):
        Session.create(tmp_path / f"try{attempt}")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(
            target=_add_same_image_worker, args=(str(tmp_path), tries, barrier, results)
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in range(tries * 2)]
    for process in processes:
        process.join(30)
    for attempt in range(tries):
        ids = [o[1] for o in outcomes if o[0] == attempt]
        assert ids == ["img0001", "img0001"], outcomes
        session = Session.open(tmp_path / f"try{attempt}", readonly=True)
        assert [e.id for e in session.images()] == ["img0001"]


_HOLDER = """
import sys, time
from pathlib import Path
from napari_unet.session.store import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_issue15_point3_a_locked_session_says_at_once_who_holds_it(root: Path) -> None:
    from napari_unet.session.errors import SessionBusyError

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(SessionBusyError) as info:
            Session.open(root)
        assert time.monotonic() - started < 10
        text = _one_sentence(info.value)
        assert "open in another program" in text and str(holder.pid) in text
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # the killed holder's lock is released with it: the session opens and saves
    session = Session.open(root)
    session.save_slice(session.images()[0].id, 0, labels=np.full(SHAPE, 5, np.uint16))


# ---------------------------------------------------------------------- point 7
@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (np.zeros(SHAPE, np.float32), "integer"),
        (np.zeros((16, 32), np.uint16), "32"),
        (np.zeros(SHAPE, bool), "integer"),
        (np.zeros(SHAPE, np.complex64), "integer"),
        (np.full(SHAPE, -1, np.int16), "negative"),
        (np.full(SHAPE, 2**63, np.uint64), "2147483647"),
        (np.full(SHAPE, 2**31, np.int64), "2147483647"),
    ],
    ids=["float", "shape", "bool", "complex", "negative", "2**63", "2**31"],
)
def test_issue15_point7_untrainable_labels_are_refused_on_save(root, labels, expected) -> None:
    session = Session.open(root)
    image_id = session.images()[0].id
    before = session.load_slice(image_id, 0).labels
    for kwargs in ({"labels": labels}, {"snapshot": labels}):
        with pytest.raises(UserInputError, match=expected) as info:
            session.save_slice(image_id, 0, **kwargs)
        _one_sentence(info.value)
    np.testing.assert_array_equal(Session.open(root).load_slice(image_id, 0).labels, before)


def test_issue15_point7_bad_reviewed_masks_and_images_are_refused(root) -> None:
    session = Session.open(root)
    image_id = session.images()[0].id
    with pytest.raises(UserInputError, match="reviewed") as info:
        session.save_slice(image_id, 0, reviewed=np.ones((4, 4), bool))
    _one_sentence(info.value)
    for image in (np.zeros(SHAPE, np.complex64), np.zeros((0, 0), np.uint8)):
        with pytest.raises(UserInputError) as info:
            session.add_image("bad", axes="YX", image=image)
        _one_sentence(info.value)
    assert [e.name for e in Session.open(root).images()] == ["x"]
    # valid labels of every integer dtype up to int32's range still save
    for dtype in (np.uint8, np.int32, np.uint32, np.int64):
        labels = np.zeros(SHAPE, dtype)
        labels[0, 0] = 2**31 - 1 if np.iinfo(dtype).max >= 2**31 - 1 else 7
        session.save_slice(image_id, 0, labels=labels)


# ---------------------------------------------------------------------- point 8
def _flip_a_weight_byte(path: Path) -> None:
    """Flip one byte inside the largest stored tensor of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    header = member.header_offset
    name_len = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_len = int.from_bytes(data[header + 28 : header + 30], "little")
    start = header + 30 + name_len + extra_len
    data[start + member.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_issue15_point8_a_bit_flipped_checkpoint_is_never_registered(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from napari_unet.core.checkpoint.format import read_checkpoint_info, save_checkpoint
    from napari_unet.core.errors import CheckpointError
    from napari_unet.core.models import build_model

    session = Session.create(tmp_path / "s")
    model = build_model("unet", depth=2, base_channels=4, out_channels=1)
    flipped = save_checkpoint(session.new_version_path("flipped"), model, task="binary")
    _flip_a_weight_byte(flipped)
    read_checkpoint_info(flipped)  # the description alone still reads: only the CRC tells
    outside = tmp_path / "outside.pt"
    shutil.copy(flipped, outside)
    for path in (flipped, outside):
        with pytest.raises(CheckpointError, match="damaged") as info:
            session.add_version(path)
        _one_sentence(info.value)
    assert session.versions() == []
    good = save_checkpoint(session.new_version_path(), model, task="binary")
    assert session.add_version(good).id == "v001"


# ---------------------------------------------------------------------- point 9
def _age(path: Path, seconds: float = 3600) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_issue15_point9_leftovers_of_runs_and_versions_are_reclaimed(root: Path, caplog) -> None:
    runs = root / "runs"
    old, new = runs / "20240101-100000-aaaaaa", runs / "20240101-110000-bbbbbb"
    made = {
        old / "best.pt": 3000,
        old / "latest.pt": 5000,
        old / ".best.pt.k2j4h5g6.tmp": 1000,
        new / "best.pt": 3000,
        new / ".latest.pt.ab_cd123.tmp": 700,
        new / "latest.pt": 5000,
        root / "models" / "model-20240101-110000-cccccc.pt": 3000,
        root / "models" / ".model-20240101-110000-dddddd.pt.x1y2z3w4.tmp": 900,
    }
    foreign = {
        runs / "notes.txt": 10,
        old / "my-analysis.csv": 20,
        root / "models" / "mine.pt": 30,
    }
    for path, size in {**made, **foreign}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        _age(path, 7200 if old in path.parents else 3600)
    for folder in (old, new):
        _age(folder, 7200)
    with caplog.at_level(logging.WARNING, logger="napari_unet.session"):
        session = Session.open(root)
    kept = {p for p in made if p.exists()}
    assert kept == {new / "latest.pt"}, kept  # what resuming the newest run needs
    assert all(p.exists() for p in foreign)
    assert "reclaimed" in caplog.text
    on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert session.disk_usage() == on_disk


def test_issue15_point9_a_running_trainers_files_are_left_alone(root: Path) -> None:
    from napari_unet.session.store import run_lock

    run = root / "runs" / "20240101-100000-aaaaaa"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"x")
    pending = root / "models" / "model-20240101-110000-cccccc.pt"
    pending.parent.mkdir()
    pending.write_bytes(b"x")
    for path in (run / "best.pt", run, pending):
        _age(path)
    with run_lock(run):
        Session.open(root)
        assert (run / "best.pt").exists() and pending.exists()
    Session.open(root)
    assert not run.exists() and not pending.exists()
