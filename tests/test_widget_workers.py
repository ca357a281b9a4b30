"""The one worker helper (``_widgets/_workers.py``) and the autosave's never-dropped save."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pytestqt")

from napari_unet._widgets._workers import Jobs, error_message, guard
from napari_unet._widgets.autosave_jobs import SaveJob, save_in_worker
from napari_unet.core.errors import UserInputError


def _slow(value, seconds=0.3):
    time.sleep(seconds)
    return value


def _counting(n):
    for i in range(n):
        time.sleep(0.02)
        yield i
    return "done"


def test_a_job_replaced_under_its_key_never_delivers(qtbot):
    jobs = Jobs()
    got, ends = [], []
    jobs.start("k", _slow, "old", on_done=got.append, on_end=lambda: ends.append("old"))
    jobs.start("k", _slow, "new", 0.05, on_done=got.append, on_end=lambda: ends.append("new"))
    qtbot.waitUntil(lambda: not jobs.running("k"), timeout=5_000)
    qtbot.wait(400)  # the replaced job has ended too
    assert got == ["new"] and ends == ["new"]


def test_quit_still_ends_and_cancel_drops(qtbot):
    jobs = Jobs()
    seen, ends, aborted = [], [], []
    jobs.start(
        "a", _counting, 1000, on_yield=seen.append, on_abort=lambda: aborted.append(1),
        on_end=lambda: ends.append("a"),
    )  # fmt: skip
    qtbot.waitUntil(lambda: len(seen) > 1, timeout=5_000)
    jobs.quit("a")  # a user's Cancel: the end still arrives
    qtbot.waitUntil(lambda: bool(ends), timeout=5_000)
    assert aborted and jobs.worker("a") is None
    jobs.start("b", _counting, 1000, on_end=lambda: ends.append("b"))
    jobs.cancel("b")  # dropped: nothing more arrives
    qtbot.wait(300)
    assert ends == ["a"] and not jobs.running("b")


def test_a_failure_is_one_sentence(qtbot):
    jobs = Jobs()
    errors = []

    def broken():
        raise UserInputError("The model file is damaged: pick another one.")

    jobs.start("e", broken, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5_000)
    assert errors == ["The model file is damaged: pick another one."]
    text = error_message(FileNotFoundError(2, "No such file or directory", "/x/a.pt"), "Export")
    assert text.startswith("Export could not use the file '/x/a.pt' (No such file or directory)")
    assert "\n" not in text and text.endswith("try again.")
    assert error_message(ValueError("boom"), "Comparison").startswith("Comparison failed (")
    reported = []
    assert guard(lambda: (_ for _ in ()).throw(UserInputError("No.")), reported.append) is None
    assert reported == ["No."]


def test_a_save_not_started_yet_is_claimed_by_the_flush_and_never_run_twice():
    class Session:
        def __init__(self):
            self.calls = 0

        def save_slices(self, image_id, updates):
            self.calls += 1

    class Watch:
        image_id = "img0001"

    session = Session()
    job = SaveJob({Watch(): ({0: (None, None, None)}, {})}, 0, session=session)
    assert job.claim()  # the flush got there first and saves on the main thread
    assert save_in_worker(job) is job  # the worker, started late, does not save again
    assert session.calls == 0 and not job.done.is_set()
    other = SaveJob({Watch(): ({0: (None, None, None)}, {})}, 0, session=session)
    save_in_worker(other)
    assert session.calls == 1 and other.done.is_set() and other.error is None
