"""Stopping the fine-tune process (moved out of ``trainer_client``): a mixin of
:class:`~napari_unet._widgets.trainer_client.TrainerClient`, which provides the process, the
queues, the timers, ``_drain``, ``_put``, ``poll`` and the ``running_changed`` signal.
"""

from __future__ import annotations

import contextlib
import logging
import time

from napari_unet.trainer.events import STOP

logger = logging.getLogger("napari_unet._widgets.trainer_client")  # its messages, as before


class TrainerStopping:
    """Graceful stop, then terminate, then kill; and the clean-up once the process is gone."""

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop the trainer now, waiting up to ``timeout`` s (default ``stop_grace_s``) for it.

        For napari closing (blocking briefly is fine then): graceful stop, then terminate,
        then kill. The final events are still emitted.
        """
        process = self._process
        if process is None:
            return
        timeout = self.stop_grace_s if timeout is None else float(timeout)
        if not self._stopping:
            self._stopping = True
            self._put(STOP)
        deadline = time.monotonic() + timeout
        while process.is_alive() and time.monotonic() < deadline:
            self._drain()  # keep the pipe flowing so the child can exit
            process.join(0.05)
        if process.is_alive():
            process.terminate()
            process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join(1.0)
        self.poll()

    def _terminate(self) -> None:
        if self._process is not None and self._process.is_alive():
            logger.warning("trainer did not stop within %.1f s: terminating", self.stop_grace_s)
            self._process.terminate()
            self._kill_timer.start()

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            logger.warning("trainer ignored terminate: killing it")
            self._process.kill()

    def _cleanup(self) -> None:
        self._timer.stop()
        self._terminate_timer.stop()
        self._kill_timer.stop()
        process, self._process = self._process, None
        if process is not None:
            process.join(0)
            with contextlib.suppress(ValueError):  # ValueError: still running (cannot happen)
                process.close()
        for q in (self._events, self._control):
            if q is not None:
                q.close()
        self._events = self._control = None
        self._stopping = False
        self.running_changed.emit(False)
