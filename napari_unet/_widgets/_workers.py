"""The one way the widgets run background work, and the one way a failure becomes a message.

:class:`Jobs` starts napari ``create_worker`` jobs under a key (e.g. ``(id(panel), "run")``):

- starting a job under a key cancels the job it replaces (``worker.quit()``: a generator stops
  at its next ``yield``; a plain function runs to its end, so a save is never cut short) and
  bumps the key's generation; every callback of a job checks its generation, so a stale result,
  error or end never reaches the widgets (one rule instead of the ``worker is self.worker``,
  generation and "outcome" checks each call site had);
- :meth:`Jobs.quit` asks the current job to stop but still delivers its ``on_abort``/``on_end``
  (a user's Cancel), :meth:`Jobs.cancel` drops it (nothing more arrives);
- a failure reaches ``on_error`` as one sentence (:func:`error_message`): a
  :class:`~napari_unet.core.errors.UserInputError` says itself, an ``OSError`` names the file and
  what to do, anything else is logged with its traceback and summarised.

Threads: no worker changes ``torch.set_num_threads``. torch has no per-thread or per-call
setter (its intra-op count is process state: a global value, MKL's, and with OpenMP each
thread's own copy, taken from the global value when the thread first runs a parallel op).
:func:`use_torch_threads` is called on the main thread when a torch job starts, so the count is
decided in one place and never raced or "restored" by two workers ending in a different order
(a pool thread that already ran torch keeps the count it started with: a best effort that only
ever matters for the politeness towards a running trainer).

:func:`guard` is the one wrapper that turns a button action's ``UserInputError`` into a message.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Hashable
from typing import Any

from qtpy.QtCore import QObject

from napari_unet.core.errors import UserInputError

logger = logging.getLogger(__name__)


def error_message(error: BaseException, what: str = "The job") -> str:
    """One sentence for ``error`` (``what``: the work that failed, e.g. ``"Prediction"``)."""
    if isinstance(error, UserInputError):
        return str(error)
    if isinstance(error, OSError):
        where = f" '{error.filename}'" if getattr(error, "filename", None) else ""
        reason = error.strerror or str(error)
        return (
            f"{what} could not use the file{where} ({reason}); check that it exists, that you "
            "may read and write it and that the disk has space, then try again."
        )
    logger.error("%s failed", what, exc_info=error)
    return f"{what} failed ({type(error).__name__}: {error}); see the log for details."


def guard(action: Callable[[], Any], report: Callable[[str], Any]) -> Any:
    """Run ``action``; a ``UserInputError`` goes to ``report`` as its sentence (returns None)."""
    try:
        return action()
    except UserInputError as err:
        report(str(err))
        return None


def training_running() -> bool:
    """True while a child process (the fine-tune trainer) runs: be polite with threads."""
    return bool(multiprocessing.active_children())


def torch_threads(requested: int | None = None) -> int:
    """Threads for a torch job: ``requested``, else 1 while training, else ``cores - 1``."""
    if requested:
        return int(requested)
    if training_running():
        return 1
    return max(1, (os.cpu_count() or 1) - 1)


def use_torch_threads(requested: int | None = None) -> int | None:
    """Set the process's torch intra-op threads (main thread only; no-op when unchanged).

    Does nothing (returns None) until a worker has imported torch: importing it here would
    freeze the window for a second or two, so the very first job runs with torch's default.
    """
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):
        return None
    threads = min(torch_threads(requested), max(1, os.cpu_count() or 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


class Jobs(QObject):
    """Background jobs by key: one running job per key, stale results dropped."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._workers: dict[Hashable, Any] = {}
        self._generation: dict[Hashable, int] = {}

    def start(
        self,
        key: Hashable,
        fn: Callable[..., Any],
        *args: Any,
        what: str = "The job",
        on_yield: Callable[[Any], Any] | None = None,
        on_done: Callable[[Any], Any] | None = None,
        on_error: Callable[[str], Any] | None = None,
        on_abort: Callable[[], Any] | None = None,
        on_end: Callable[[], Any] | None = None,
        torch_threads: int | bool | None = False,
    ) -> Any:
        """Run ``fn(*args)`` in a napari worker under ``key``, replacing the job there.

        Args:
            what: names the work in error messages ("Prediction failed (...)").
            on_yield, on_done, on_error, on_abort, on_end: main-thread callbacks (progress,
                the return value, the error sentence, a quit honoured, the end in every case).
            torch_threads: False: no torch; else the requested thread count (None: default),
                set on the main thread before the job starts.

        Returns:
            the worker.
        """
        from napari.qt.threading import create_worker

        self.cancel(key)
        generation = self._generation[key] = self._generation.get(key, 0) + 1
        if torch_threads is not False:
            use_torch_threads(torch_threads or None)
        worker = create_worker(fn, *args, _ignore_errors=True)
        self._connect(
            worker,
            key,
            generation,
            what,
            on_yield=on_yield,
            on_done=on_done,
            on_error=on_error,
            on_abort=on_abort,
            on_end=on_end,
        )
        self._workers[key] = worker
        worker.start()
        return worker

    def _connect(
        self,
        worker: Any,
        key: Hashable,
        generation: int,
        what: str,
        *,
        on_yield: Callable[[Any], Any] | None,
        on_done: Callable[[Any], Any] | None,
        on_error: Callable[[str], Any] | None,
        on_abort: Callable[[], Any] | None,
        on_end: Callable[[], Any] | None,
    ) -> None:
        """Connect ``worker``'s signals to the callbacks; each is dropped once the job under
        ``key`` is no longer ``generation`` (replaced or cancelled)."""

        def live() -> bool:
            return self._generation.get(key) == generation

        def ended() -> None:
            if live():
                self._workers.pop(key, None)
                if on_end is not None:
                    on_end()

        def failed(error: BaseException) -> None:
            if not live():
                return
            text = error_message(error, what)  # logs an unexpected error with its traceback
            if on_error is not None:
                on_error(text)
            else:
                logger.warning("%s", text)

        if on_yield is not None and hasattr(worker, "yielded"):
            worker.yielded.connect(lambda value: live() and on_yield(value))
        if on_done is not None:
            worker.returned.connect(lambda value: live() and on_done(value))
        if on_abort is not None and hasattr(worker, "aborted"):
            worker.aborted.connect(lambda: live() and on_abort())
        worker.errored.connect(failed)
        worker.finished.connect(ended)

    def worker(self, key: Hashable) -> Any:
        """The running worker under ``key``, or None."""
        return self._workers.get(key)

    def running(self, key: Hashable) -> bool:
        """A job runs under ``key``."""
        return key in self._workers

    def quit(self, key: Hashable) -> None:
        """Ask the job under ``key`` to stop; its abort/end callbacks still arrive."""
        worker = self._workers.get(key)
        if worker is not None:
            worker.quit()

    def cancel(self, key: Hashable) -> None:
        """Stop the job under ``key`` and drop whatever it still sends."""
        self._generation[key] = self._generation.get(key, 0) + 1
        worker = self._workers.pop(key, None)
        if worker is not None:
            worker.quit()

    def cancel_all(self) -> None:
        """Stop every job (the window is closing)."""
        for key in list(self._workers):
            self.cancel(key)


__all__ = [
    "Jobs",
    "error_message",
    "guard",
    "torch_threads",
    "training_running",
    "use_torch_threads",
]
