"""The fine-tune process: learns from a session's corrections and publishes versions into it.

:func:`run_trainer` is the entry point of a process started with the multiprocessing **spawn**
context (by ``_widgets.trainer_client.TrainerClient``, or by scripts and benchmarks): it has its
own CUDA context (GPU memory is released when it ends), caps torch's threads and lowers its
priority so napari keeps a core. It reads everything from the session folder — never big arrays
through a pipe — and talks through two queues:

- ``control`` (napari -> trainer): ``"stop"`` (finish at the next step) and
  ``("corrections", [(image_id, slice_index), ...])`` (keep-learning: reload those slices and
  add them to the sampling pool; their held-back tiles stay held back);
- ``events`` (trainer -> napari): the core's ``StepEvent`` (at most
  ``max_step_events_per_s``) and ``ValidationEvent``, and :class:`PoolChanged`,
  :class:`VersionPublished`, then exactly one :class:`TrainerFinished` or :class:`TrainerFailed`.

Each improved model (a ``best`` checkpoint of ``core.training.loop.iter_train`` that, with its
post-processing re-tuned on the held-back tiles, beats the start model with its own there: the rule
of ``simulate``, :class:`~napari_unet.trainer.guard.ParentGuard`) is copied atomically into
``models/``, its settings stored in it, and registered with ``Session.add_version`` — which
validates the file first, so a trainer killed at any instant never leaves a truncated version.
``latest.pt`` (with the optimiser state, for resuming) lives in ``runs/<run id>/`` of the session;
the run holds ``runs/<run id>/.lock`` while it lives (the OS frees it if the process is killed),
so that opening the session reclaims finished runs (keeping only the newest ``latest.pt``) but
never touches a running one.

No Qt, no napari: usable from scripts, e.g. ``bench_hitl``.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path
from typing import Any

from napari_unet.core.errors import UserInputError
from napari_unet.core.training.config import TrainConfig
from napari_unet.trainer.control import Control, Feed, StepThrottle, prepare_process
from napari_unet.trainer.data import (
    ValidationPlan,
    resolve_start,
    start_metrics,
)
from napari_unet.trainer.events import (
    FinetuneRequest,
    PoolChanged,
    TrainerFailed,
    TrainerFinished,
    VersionPublished,
)
from napari_unet.trainer.guard import ParentGuard, VersionSkipped, held_back_now
from napari_unet.trainer.pool import TrainerPool
from napari_unet.trainer.runs import RUNS_FOLDER, hold_resume_run, new_run_dir  # noqa: F401

logger = logging.getLogger(__name__)

CRASH_MESSAGE = (
    "The trainer crashed: {kind}: {error}; your session and earlier versions are intact."
)

__all__ = [
    "CRASH_MESSAGE",
    "FinetuneRequest",
    "PoolChanged",
    "TrainerFailed",
    "TrainerFinished",
    "VersionPublished",
    "run_trainer",
]


class Trainer(TrainerPool):
    """One fine-tune run on a session (the body of :func:`run_trainer`).

    Args:
        request: what to train. send: puts one event on the events queue.
    """

    def __init__(self, request: FinetuneRequest, send: Any) -> None:
        from napari_unet.core.checkpoint.format import read_checkpoint_info
        from napari_unet.session import Session

        self.request = request
        self.send = send
        self._locks: list[int] = []
        try:
            # before opening: the open reclaims finished runs
            hold_resume_run(request.session, request.resume_from, self._locks)
            # a background process: wait for a big save of napari's rather than fail at once
            self.session = Session.open(request.session, wait=30.0)
            self.start_path, self.parent = resolve_start(self.session, request.start_from)
            self.info = read_checkpoint_info(self.start_path)
            self.normalization = self.info.normalization_config()
            self.run_dir = new_run_dir(self.session.root, self._locks)
            self.config = self._config()
            self.plan = ValidationPlan(
                fraction=self.config.val_fraction,
                tile=self.config.val_tile,
                seed=self.config.seed,
                pins=self.session.validation_pins(),
            )
        except BaseException:
            self.close()
            raise
        self.pool: dict[str, Any] = {}  # name -> training item (the full, unsplit item)
        self.val_items: list[Any] = []
        self.published: str | None = None
        self._send_step = StepThrottle(send, request.max_step_events_per_s)

    def close(self) -> None:
        """Release the run folders (the OS does it too when the process dies)."""
        from napari_unet.session.store import release_run_lock

        while self._locks:
            release_run_lock(self._locks.pop())

    def _config(self, info: Any = None) -> TrainConfig:
        return self.request.train_config.replace(
            task=(info or self.info).task,
            checkpoint_dir=str(self.run_dir),
            device=self.request.device,
            num_threads=self.request.threads,
            tune_postprocess=False,  # each offered model is re-tuned by the guard (ParentGuard)
            # every improving validation is offered as a version while the user works: the
            # final weights, offered after them, could publish a newer version that scores lower
            keep="best",
        )

    # ------------------------------------------------------------------ events
    def _publish(self, path: Path, step: int, metrics: dict, settings: dict) -> None:
        """Copy ``path`` into the session as a version; ``settings``: its re-tuned
        post-processing and operating point (``Verdict.provenance``; empty: inherited)."""
        from napari_unet.core.checkpoint.stamp import copy_with_provenance
        from napari_unet.trainer.context import context_provenance

        target = self.session.new_version_path(self.request.version_name or "model")
        extra = {
            "fingerprint": self.fingerprint.to_dict(),
            **context_provenance(self.info),
            **settings,
        }
        copy_with_provenance(path, target, extra)
        name = None
        if self.request.version_name:
            name = f"{self.request.version_name} (step {step})"
        entry = self.session.add_version(
            target, name=name, parent=self.parent, steps=step, data=self.data, metrics=metrics
        )
        self.published = entry.id
        self.send(VersionPublished(entry.id, str(target), dict(metrics), int(step)))

    # ------------------------------------------------------------------ the run
    def baseline(
        self, train: list[Any], val: list[Any] | None = None, *, announce: bool = True
    ) -> float | None:
        """The start model's score on ``val`` (default: the held-back tiles; None without
        validation data) with its own post-processing, as offered models are judged
        (:class:`ParentGuard`); ``announce`` sends its pixel validation metrics as the step-0
        validation (the first point of the dock's curve)."""
        val = self.val_items if val is None else val
        if announce and val:
            from napari_unet.core.training.config import ValidationEvent

            metrics = start_metrics(self.start_path, train, val, self.config)
            self.send(ValidationEvent(step=0, metrics=dict(metrics), improved=False))
        return self.guard.score_parent(list(val), self.config)

    def run(self, control: Control) -> TrainerFinished:
        """Train until the budget is spent or ``stop`` is asked; returns the final event."""
        from napari_unet.core.training.loop import (
            CheckpointEvent,
            StepEvent,
            ValidationEvent,
            iter_train,
        )

        train, val = self.gather()
        tune = self.request.train_config.tune_postprocess
        self.guard = ParentGuard(self.start_path, self.info, self.config.device, tune=tune)
        self.baseline(train)
        feed = Feed()
        events = iter_train(
            str(self.start_path),
            train,
            self.config,
            stop=control.stop,
            resume_from=self.request.resume_from,
            val_items=val,
            parent=self.parent,
            new_items=feed,
        )
        best: dict = {}  # metrics of the model in best.pt (events without their own metrics)
        while True:
            try:
                event = next(events)
            except StopIteration as done:
                result = done.value
                break
            if self._take_corrections(control, feed):
                # the held-back tiles changed: score the parent again on them
                self._rescore_parent(train, feed.taken)
                feed.taken.clear()
            if isinstance(event, StepEvent):
                self._send_step(event)
            elif isinstance(event, ValidationEvent):
                self._send_step.flush()
                best = dict(event.metrics) if event.improved else best
                self.send(event)
            elif isinstance(event, CheckpointEvent) and event.kind == "best":
                # the weights written (the final ones at the end: TrainConfig.keep)
                self._offer(event, best if event.metrics is None else event.metrics)
        self._send_step.flush()
        return TrainerFinished(result.reason, int(result.steps), self.published)

    def _offer(self, event: Any, metrics: dict) -> None:
        """Publish the best model unless it does not beat the parent on the held-back tiles,
        each with its own post-processing (the child's re-tuned: :class:`ParentGuard`)."""
        if event.step == 0:
            logger.info("stopped before the first step: nothing to publish")
            return
        val = list(self.held.values())
        outcome = self.guard.review(int(event.step), event.path, val, self.config, metrics)
        if isinstance(outcome, VersionSkipped):
            logger.info("%s", outcome.message)
            self.send(outcome)
            return
        self._publish(Path(event.path), event.step, *outcome)

    def _rescore_parent(self, train: list[Any], taken: list[Any]) -> float | None:
        """The start model's held-back score once ``taken`` joined the pool (its tiles held
        back as the core holds them back); offered models are judged on the same tiles."""
        held_back_now(self.held, taken, self.config)
        return self.baseline(train, list(self.held.values()), announce=False)

    def _take_corrections(self, control: Control, feed: Feed) -> bool:
        """Announce items the loop took in, queue new corrections; True when the pool grew
        (``feed.taken`` then holds the new items: the caller clears it)."""
        changed = bool(feed.taken)
        if changed:
            names = tuple(item.name for item in feed.taken)
            self._send_pool(names)
        while True:
            try:
                keys = control.corrections.get_nowait()
            except queue.Empty:
                return changed
            self.load_corrections(keys, feed)


def run_trainer(request: dict | FinetuneRequest, events: Any, control: Any) -> None:
    """Entry point of the trainer process (multiprocessing **spawn** context).

    Args:
        request: a :class:`FinetuneRequest` (it pickles as it is) or its ``to_dict()``.
        events: a multiprocessing queue receiving the events (see the module docs).
        control: a multiprocessing queue of ``"stop"`` / ``("corrections", keys)`` messages.

    Never raises: failures end with a :class:`TrainerFailed` event saying what to do.
    """
    listener = None
    trainer = None
    try:
        if isinstance(request, dict):
            request = FinetuneRequest.from_dict(request)
        prepare_process(request)
        listener = Control(control)
        trainer = Trainer(request, events.put)
        final: Any = trainer.run(listener)
    except UserInputError as err:
        logger.info("training refused: %s", err)
        final = TrainerFailed(str(err))
    except Exception as err:  # report every crash; never leave napari guessing
        logger.exception("trainer crashed")
        final = TrainerFailed(CRASH_MESSAGE.format(kind=type(err).__name__, error=err))
    finally:
        if listener is not None:
            listener.close()
        if trainer is not None:
            trainer.close()
    try:
        events.put(final)
        if hasattr(events, "join_thread"):  # a multiprocessing queue: flush before exiting
            events.close()
            events.join_thread()
    except (OSError, ValueError) as err:  # napari is gone
        logger.debug("cannot send the final event: %s", err)
