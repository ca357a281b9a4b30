"""The napari side of the fine-tune process: start it, stream its events into Qt signals, stop it.

:class:`TrainerClient` spawns :func:`napari_unet.trainer.process.run_trainer` in a separate process
(``multiprocessing`` **spawn** context: its own CUDA context and GIL; GPU memory is released when
it ends). A ``QTimer`` on the main thread drains the event queue every ``poll_ms`` without ever
blocking (``get_nowait``, at most ``max_events_per_tick`` per tick) and re-emits the events as Qt
signals. Stop is graceful (``"stop"`` on the control queue), then ``terminate()`` after
``stop_grace_s`` and ``kill()`` a second later, all driven by timers. A process that dies without
saying it finished (crash, out of memory, SIGKILL) is reported on ``failed``; the session and the
versions it already published are intact (the trainer registers only complete checkpoints).

Example:
    >>> client = TrainerClient(viewer=viewer)  # doctest: +SKIP
    >>> client.version.connect(lambda event: print(event.version_id))  # doctest: +SKIP
    >>> client.start(FinetuneRequest(session=folder, start_from="fluo-nuclei"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
from typing import Any

from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QApplication

from napari_unet._widgets.spawn_guard import (
    REENTRY_EXIT_CODE,
    TRAINER_PROCESS_NAME,
    UNGUARDED_MESSAGE,
    unguarded_main_script,
)
from napari_unet._widgets.trainer_stop import TrainerStopping
from napari_unet.core.errors import UserInputError
from napari_unet.trainer.events import (
    CORRECTIONS,
    STOP,
    FinetuneRequest,
    PoolChanged,
    TrainerFailed,
    TrainerFinished,
    VersionPublished,
)
from napari_unet.trainer.guard import VersionSkipped

logger = logging.getLogger(__name__)

CRASH_MESSAGE = (
    "The trainer stopped unexpectedly (exit code {code}); your session and all completed "
    "versions are intact."
)


class TrainerClient(TrainerStopping, QObject):
    """Runs one fine-tune process at a time and re-emits its events on the main thread.

    Args:
        parent: Qt parent.
        viewer: a napari viewer; closing its window stops the trainer (optional).
        poll_ms: how often the event queue is drained.
        stop_grace_s: how long :meth:`stop` waits for a graceful exit before ``terminate()``.

    Signals:
        started(): the process was started.
        step(object): a ``core.training.config.StepEvent`` (step, loss, lr, patches_per_s,
            elapsed_s); at most ~10 per second.
        validation(object): a ``core.training.config.ValidationEvent`` (step, metrics, improved).
        version(object): a :class:`VersionPublished` (version_id, path, metrics, step): already
            registered in the session.
        pool_changed(object): a :class:`PoolChanged` (the training pool at start, and after
            corrections were added in keep-learning mode).
        skipped(object): a ``trainer.guard.VersionSkipped`` (step, score, parent_score,
            message): a best model not published, as it did not beat its parent on the
            held-back tiles; ``message`` says both scores in the metric's terms.
        finished(object): a :class:`TrainerFinished` (reason, steps, best_version).
        failed(str): the sentence to show (bad training data, a crash, a killed process).
        running_changed(bool): the process started (True) or is gone (False).
    """

    started = Signal()
    step = Signal(object)
    validation = Signal(object)
    version = Signal(object)
    pool_changed = Signal(object)
    skipped = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    running_changed = Signal(bool)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        viewer: Any = None,
        poll_ms: int = 100,
        stop_grace_s: float = 2.0,
        max_events_per_tick: int = 200,
    ) -> None:
        super().__init__(parent)
        self.stop_grace_s = float(stop_grace_s)
        self.max_events_per_tick = int(max_events_per_tick)
        self.request: FinetuneRequest | None = None
        #: The last step seen, and the last version published in the current/last run.
        self.last_step = 0
        self.last_version: str | None = None
        self._process: Any = None
        self._events: Any = None
        self._control: Any = None
        self._ended = True  # a final event (finished/failed) was handled
        self._stopping = False
        self._timer = QTimer(self, interval=int(poll_ms))
        self._timer.timeout.connect(self.poll)
        self._terminate_timer = QTimer(self, singleShot=True)
        self._terminate_timer.timeout.connect(self._terminate)
        self._kill_timer = QTimer(self, singleShot=True, interval=1000)
        self._kill_timer.timeout.connect(self._kill)
        if viewer is not None:
            self.watch_viewer(viewer)  # the viewer's one shutdown hook (also on quitting)
        elif QApplication.instance() is not None:
            QApplication.instance().aboutToQuit.connect(self.shutdown)

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        """A trainer process is alive (or its last events are still being read)."""
        return self._process is not None

    @property
    def pid(self) -> int | None:
        """The trainer's process id while running."""
        return None if self._process is None else self._process.pid

    # ------------------------------------------------------------------ control
    def start(self, request: FinetuneRequest | dict) -> None:
        """Spawn the trainer for ``request``; events then arrive on the signals.

        Raises:
            UserInputError: a trainer is already running.
        """
        from napari_unet.trainer.process import run_trainer

        if self.running:
            raise UserInputError("A training is already running; stop it first.")
        if isinstance(request, dict):
            request = FinetuneRequest.from_dict(request)
        script = unguarded_main_script()
        if script is not None:
            raise UserInputError(f"{script.name}: {UNGUARDED_MESSAGE}")
        context = multiprocessing.get_context("spawn")
        self._events = context.Queue()
        self._control = context.Queue()
        self._control.cancel_join_thread()  # never block napari on unread control messages
        self._process = context.Process(
            target=run_trainer,
            args=(request, self._events, self._control),
            name=TRAINER_PROCESS_NAME,
            daemon=True,  # the interpreter's exit terminates a forgotten trainer
        )
        self.request = request
        self.last_step, self.last_version = 0, None
        self._ended, self._stopping = False, False
        self._process.start()
        logger.info("started trainer process %s", self._process.pid)
        self._timer.start()
        self.started.emit()
        self.running_changed.emit(True)

    def stop(self) -> None:
        """Ask the trainer to stop at the next step; ``terminate()`` it after ``stop_grace_s``.

        Never blocks: the escalation runs on timers. The best model so far is already a version.
        """
        if not self.running or self._stopping:
            return
        self._stopping = True
        self._put(STOP)
        self._terminate_timer.start(int(self.stop_grace_s * 1000))

    def send_corrections(self, keys: Any) -> None:
        """Send ``[(image_id, slice_index), ...]`` saved since the start (keep-learning mode)."""
        keys = [(str(image_id), int(s)) for image_id, s in keys]
        if keys and self.running and not self._stopping:
            self._put((CORRECTIONS, keys))

    def watch_viewer(self, viewer: Any) -> None:
        """Stop the trainer when ``viewer``'s window closes (its loop state's ``closing``)."""
        from napari_unet._widgets.loop_state import LoopState

        LoopState.for_viewer(viewer).closing.connect(self.shutdown)

    # ------------------------------------------------------------------ the event pump
    def _put(self, message: Any) -> None:
        try:
            self._control.put(message)
        except (OSError, ValueError) as err:  # queue closed: the process is gone anyway
            logger.debug("cannot send %r to the trainer: %s", message, err)

    def _drain(self) -> None:
        for _ in range(self.max_events_per_tick):
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            except (OSError, ValueError, EOFError) as err:
                logger.debug("trainer event queue closed: %s", err)
                return
            self._dispatch(event)

    def poll(self) -> None:
        """Drain pending events (bounded) and notice the process ending (timer slot)."""
        process = self._process
        if process is None:
            self._timer.stop()
            return
        alive = process.is_alive()
        self._drain()
        if alive:
            return
        self._drain()  # everything the child put is in the pipe once it is dead
        if not self._ended:
            self._ended = True
            code = process.exitcode
            if self._stopping:
                logger.info("trainer ended (exit code %s) after a stop request", code)
                self.finished.emit(TrainerFinished("stopped", self.last_step, self.last_version))
            elif code == REENTRY_EXIT_CODE:
                logger.warning("the trainer re-ran the user's script: %s", UNGUARDED_MESSAGE)
                self.failed.emit(UNGUARDED_MESSAGE)
            else:
                logger.warning("trainer process died (exit code %s)", code)
                self.failed.emit(CRASH_MESSAGE.format(code=code))
        self._cleanup()

    def _dispatch(self, event: Any) -> None:
        if isinstance(event, VersionPublished):
            self.last_version = event.version_id
            self.version.emit(event)
        elif isinstance(event, PoolChanged):
            self.pool_changed.emit(event)
        elif isinstance(event, VersionSkipped):
            self.skipped.emit(event)
        elif isinstance(event, TrainerFinished):
            self._ended = True
            self.finished.emit(event)
        elif isinstance(event, TrainerFailed):
            self._ended = True
            self.failed.emit(event.message)
        elif hasattr(event, "metrics") and hasattr(event, "improved"):
            self.validation.emit(event)
        elif hasattr(event, "loss") and hasattr(event, "patches_per_s"):
            self.last_step = int(event.step)
            self.step.emit(event)
        else:
            logger.debug("ignoring trainer event %r", event)


__all__ = ["CRASH_MESSAGE", "TrainerClient"]
