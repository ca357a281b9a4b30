"""Debounced autosave of labels layers into a session.

Every edit restarts a single-shot timer; when the user pauses (``delay_ms``, ~1 s after the last
brush stroke) the controller saves the slices that changed, and only those:

- what may have changed comes from the layer's events: ``paint`` (the slices a stroke touched),
  ``data`` (everything), ``set_data`` without a slice change (undo/redo, a prediction refreshed in
  place: the shown slice), ``metadata`` (reviewed marks; ``napari_unet_slices`` narrows it), and
  a changed ``snapshot``/``predicted`` entry in the tag (the predicted slices);
- each candidate slice's labels, reviewed mask and snapshot are fingerprinted (CRC-32) and
  compared with what was last saved, so scrolling or a no-op refresh writes nothing.

Small saves run on the main thread. When the last save suggests this one would take longer than
``budget_s`` (~50 ms), or it spans more than :data:`MAIN_THREAD_SLICES` slices (each slice is a
few files written and synced: a volume refreshed in 3-D is tens of them), it runs as a background
job (the viewer's :class:`~napari_unet._widgets._workers.Jobs`) on COPIES of the dirty slices, and
edits made meanwhile are coalesced into one save after it. A save is never dropped: it runs to its
end once started, and :meth:`Autosave.flush` either waits for it or, when the thread pool has not
started it yet, claims it and runs it itself. A failed save (disk full, read-only folder) keeps
the slices dirty, reports the error, and is retried on the next edit. :meth:`Autosave.flush` saves
synchronously (viewer closing).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from napari_unet._widgets import autosave_collect as collect
from napari_unet._widgets import reviewed as rv
from napari_unet._widgets.autosave_jobs import (
    Fingerprint,
    SaveJob,
    Updates,
    Watch,
    run_save,
    save_in_worker,
    slices_or_none,
)
from napari_unet._widgets.loop_state import LoopState
from napari_unet.session.errors import SessionError

logger = logging.getLogger(__name__)

#: Most slices a save may span and still run on the main thread (a 2-D image has one).
MAIN_THREAD_SLICES = 4


class Autosave(QObject):
    """Saves watched labels layers into ``session`` shortly after each edit.

    Args:
        viewer: the napari viewer (its current slice tells which slice an undo touched).
        delay_ms: quiet time after the last edit before saving.
        budget_s: longest save allowed on the main thread.
        threaded: force (True) or forbid (False) saving in a thread; None decides by size.

    Signals:
        saved(float): a save finished (``time.time()``).
        failed(str): a save failed; the sentence to show.
        busy(bool): a threaded save started / ended.
    """

    saved = Signal(float)
    failed = Signal(str)
    busy = Signal(bool)

    def __init__(
        self,
        viewer: Any,
        parent: QObject | None = None,
        *,
        delay_ms: int = 1000,
        budget_s: float = 0.05,
        threaded: bool | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.loop = LoopState.for_viewer(viewer)
        self.budget_s = budget_s
        self.threaded = threaded
        self.error: str | None = None
        self.last_saved: float | None = None
        self._watches: list[Watch] = []
        self._job: SaveJob | None = None
        self._again = False
        self._last_rate: tuple[float, int] = (0.0, 1)
        self._timer = QTimer(self, singleShot=True, interval=delay_ms)
        self._timer.timeout.connect(self.save_now)

    @property
    def session(self) -> Any:
        """Where the saves go: the viewer's open session (None: nothing is saved)."""
        return self.loop.session

    # ------------------------------------------------------------------ watching
    def watch(self, layer: Any, image_id: str, *, saved_now: bool = False) -> None:
        """Save ``layer`` as session image ``image_id`` from now on.

        Args:
            saved_now: the layer holds exactly what the session stores (just restored); else
                every slice is saved at the next tick.
        """
        self.unwatch(layer)
        watch = Watch(layer, image_id)
        n = rv.n_slices(tuple(layer.data.shape))
        if saved_now:
            watch.saved = {s: self._fingerprint(layer, s) for s in range(n)}
        else:
            watch.suspect = set(range(n))
        watch.seen = self._seen(layer)
        watch.step = tuple(self.viewer.dims.current_step)
        self._watches.append(watch)
        for name, callback in self._callbacks(watch):
            getattr(layer.events, name).connect(callback)
        if not saved_now:
            self._timer.start()

    def unwatch(self, layer: Any) -> None:
        """Stop saving ``layer`` (pending changes of it are dropped; flush first to keep them)."""
        for watch in [w for w in self._watches if w.layer is layer]:
            for name, callback in self._callbacks(watch):
                getattr(layer.events, name).disconnect(callback)
            self._watches.remove(watch)

    def watched(self) -> list[tuple[Any, str]]:
        """``(layer, image_id)`` of every watched layer."""
        return [(w.layer, w.image_id) for w in self._watches]

    def _callbacks(self, watch: Watch) -> list[tuple[str, Any]]:
        cached = getattr(watch, "_cb", None)
        if cached is None:
            cached = [
                (
                    "paint",
                    lambda e: self._dirty(
                        watch, rv.paint_slices(e.value, tuple(watch.layer.data.shape))
                    ),
                ),
                ("data", lambda e: self._dirty(watch, None)),
                ("set_data", lambda e: self._on_set_data(watch)),
                (
                    "metadata",
                    lambda e: self._dirty(
                        watch, slices_or_none(getattr(e, "napari_unet_slices", None))
                    ),
                ),
            ]
            watch._cb = cached  # type: ignore[attr-defined]
        return cached

    def _on_set_data(self, watch: Watch) -> None:
        step = tuple(self.viewer.dims.current_step)
        if step != watch.step:  # scrolling through the stack: nothing changed
            watch.step = step
            return
        self._dirty(watch, {self._current_slice(watch.layer)})

    def _current_slice(self, layer: Any) -> int:
        shape = tuple(layer.data.shape)
        if len(shape) <= 2:
            return 0
        position = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
        return rv.flat_index(shape, np.round(position[-len(shape) : -2]))

    def _dirty(self, watch: Watch, slices: set[int] | None) -> None:
        n = rv.n_slices(tuple(watch.layer.data.shape))
        watch.suspect |= set(range(n)) if slices is None else {s for s in slices if 0 <= s < n}
        self.mark_pending()

    def mark_dirty(self, layer: Any, slices: set[int] | None = None) -> None:
        """Tell the autosave that ``slices`` (None: all) of ``layer`` may have changed."""
        for watch in self._watches:
            if watch.layer is layer:
                self._dirty(watch, slices)

    def mark_pending(self) -> None:
        """Restart the quiet-time timer (or queue a save after the one running)."""
        if self._job is not None:
            self._again = True
        self._timer.start()

    @property
    def pending(self) -> bool:
        """A save is scheduled or running."""
        return self._timer.isActive() or self._job is not None

    # ------------------------------------------------------------------ collecting
    _seen = staticmethod(collect.seen)
    _fingerprint = staticmethod(collect.fingerprint)

    def _collect(self, watch: Watch) -> tuple[Updates, dict[int, Fingerprint]]:
        return collect.collect(watch)

    # ------------------------------------------------------------------ saving
    def save_now(self) -> bool:
        """Save what changed now (threaded when large); False when nothing could be started."""
        self._timer.stop()
        if self.session is None:
            return False
        if self._job is not None:
            self._again = True
            return False
        batch = {}
        for watch in self._watches:
            updates, prints = self._collect(watch)
            if updates:
                batch[watch] = (updates, prints)
        if not batch:
            return True
        nbytes = sum(
            a.nbytes for u, _ in batch.values() for t in u.values() for a in t if a is not None
        )
        job = SaveJob(batch, nbytes, session=self.session)
        seconds, size = self._last_rate
        threaded = self.threaded
        if threaded is None:
            slices = sum(len(updates) for updates, _ in batch.values())
            threaded = (
                seconds * max(1.0, nbytes / size) > self.budget_s
                or nbytes > 32 << 20
                or slices > MAIN_THREAD_SLICES
            )
        self._job = job
        if not threaded:
            run_save(job, self.session)
            self._on_finished(job)
            return job.error is None
        job.threaded = True
        self.busy.emit(True)
        self.loop.jobs.start(
            (id(self), "save"), save_in_worker, job, what="Saving", on_done=self._on_finished
        )
        return True

    def _on_finished(self, job: SaveJob) -> None:
        if job.handled:
            return
        job.handled = True
        batch, job.batch = job.batch, {}  # a queued copy of ``job`` must not keep layers alive
        if job.threaded:
            self.busy.emit(False)
            job.threaded = False
        self._job = None
        if job.error is None:
            for watch, (_, prints) in batch.items():
                watch.saved.update(prints)
            self._last_rate = (job.seconds, max(job.nbytes, 1))
            self.error = None
            self.last_saved = time.time()
            logger.debug("autosaved %d byte(s) in %.3f s", job.nbytes, job.seconds)
            self.saved.emit(self.last_saved)
        else:
            for watch, (updates, _) in batch.items():
                watch.suspect |= set(updates)
            err = job.error
            if isinstance(err, OSError) and not isinstance(err, SessionError):
                from napari_unet.session.store import write_error

                err = write_error(self.session.root, err)
            self.error = str(err)
            logger.warning("autosave failed: %s", self.error)
            self.failed.emit(self.error)  # retried on the next edit
        if self._again:
            self._again = False
            self._timer.start()

    def flush(self, timeout: float = 30.0) -> bool:
        """Save everything pending now, synchronously; True when nothing is left unsaved."""
        self._timer.stop()
        job = self._job
        if job is not None and job.threaded:
            if job.claim():  # the pool has not started it yet: save here
                run_save(job, job.session)
                job.done.set()
            elif not job.done.wait(timeout):
                return False
            self._on_finished(job)
        self._again = False
        threaded, self.threaded = self.threaded, False
        try:
            ok = self.save_now()
        finally:
            self.threaded = threaded
        return ok and self.error is None
