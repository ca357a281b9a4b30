"""The trainer process's plumbing: its priority and threads, the control-queue listener, the
``new_items`` feed of the training loop and the step-event throttle. No Qt, no torch at import.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from napari_unet.trainer.events import CORRECTIONS, STOP, FinetuneRequest

__all__ = ["Control", "Feed", "StepThrottle", "prepare_process"]

logger = logging.getLogger(__name__)


def prepare_process(request: FinetuneRequest) -> None:
    """Low priority and capped torch threads, so the UI keeps a core."""
    import torch

    if request.nice and hasattr(os, "nice"):
        try:
            os.nice(request.nice)
        except OSError as err:  # not permitted: train at normal priority
            logger.debug("cannot lower the trainer's priority: %s", err)
    torch.set_num_threads(request.threads)


class Control:
    """Reads the control queue in a daemon thread: sets ``stop``, collects corrections."""

    def __init__(self, control: Any) -> None:
        self.stop = threading.Event()
        self.corrections: queue.Queue = queue.Queue()
        self._queue = control
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._main, name="trainer-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening (the thread ends within 0.2 s)."""
        self._closed.set()

    def _main(self) -> None:
        while not self._closed.is_set():
            try:
                message = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):  # napari is gone: stop
                self.stop.set()
                return
            if message == STOP:
                logger.info("stop requested")
                self.stop.set()
            elif isinstance(message, tuple) and len(message) == 2 and message[0] == CORRECTIONS:
                self.corrections.put([(str(i), int(s)) for i, s in message[1]])
            else:
                logger.warning("ignoring control message %r", message)


class Feed(queue.Queue):
    """The ``new_items`` queue of ``iter_train``; remembers what the loop took out."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[Any] = []

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        self.taken.append(item)
        return item


class StepThrottle:
    """Sends at most ``per_s`` step events a second; the last one held back goes out on
    :meth:`flush` (before a validation and at the end)."""

    def __init__(self, send: Callable[[Any], None], per_s: float) -> None:
        self.send = send
        self.per_s = per_s
        self._last_sent = 0.0
        self._pending: Any = None

    def __call__(self, event: Any, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_sent >= 1.0 / self.per_s:
            self.send(event)
            self._last_sent = now
            self._pending = None
        else:
            self._pending = event

    def flush(self) -> None:
        if self._pending is not None:
            self(self._pending, force=True)
