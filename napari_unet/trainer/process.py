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

Each improved model (a ``best`` checkpoint of ``core.training.loop.iter_train`` that beats the start
model on the held-back tiles) is copied atomically into ``models/`` and registered with
``Session.add_version`` — which validates the file first, so a trainer killed at any instant never
leaves a truncated version. ``latest.pt`` (with the optimiser state, for resuming) lives in
``runs/<run id>/`` of the session; the run holds ``runs/<run id>/.lock`` while it lives (the OS
frees it if the process is killed), so that opening the session reclaims finished runs
(keeping only the newest ``latest.pt``) but never touches a running one.

No Qt, no napari: usable from scripts, e.g. ``bench_hitl``.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from napari_unet.core.errors import UserInputError
from napari_unet.core.training.config import TrainConfig
from napari_unet.trainer.data import (
    ValidationPlan,
    check_training_data,
    resolve_start,
    slice_name,
    summarize,
    to_items,
)
from napari_unet.trainer.events import (
    CORRECTIONS,
    STOP,
    FinetuneRequest,
    PoolChanged,
    TrainerFailed,
    TrainerFinished,
    VersionPublished,
)

logger = logging.getLogger(__name__)

RUNS_FOLDER = "runs"
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


def _prepare_process(request: FinetuneRequest) -> None:
    """Low priority and capped torch threads, so the UI keeps a core."""
    import torch

    if request.nice and hasattr(os, "nice"):
        try:
            os.nice(request.nice)
        except OSError as err:  # not permitted: train at normal priority
            logger.debug("cannot lower the trainer's priority: %s", err)
    torch.set_num_threads(request.threads)


class _Control:
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


class _Feed(queue.Queue):
    """The ``new_items`` queue of ``iter_train``; remembers what the loop took out."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[Any] = []

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        self.taken.append(item)
        return item


class Trainer:
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
            self._hold_resume_run()  # before opening: the open reclaims finished runs
            # a background process: wait for a big save of napari's rather than fail at once
            self.session = Session.open(request.session, wait=30.0)
            self.start_path, self.parent = resolve_start(self.session, request.start_from)
            self.info = read_checkpoint_info(self.start_path)
            self.normalization = self.info.normalization_config()
            self.run_dir = self._new_run_dir()
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
        self._last_step_sent = 0.0
        self._pending_step: Any = None

    def _new_run_dir(self) -> Path:
        from napari_unet.session.store import hold_run_lock, write_error

        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        folder = self.session.root / RUNS_FOLDER / run_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._locks.append(hold_run_lock(folder))
        except OSError as err:
            raise write_error(self.session.root, err) from None
        return folder

    def _hold_resume_run(self) -> None:
        """Keep the run folder we resume from (inside this session's ``runs/``) from reclaim."""
        from napari_unet.session.store import hold_run_lock

        if self.request.resume_from is None:
            return
        folder = Path(self.request.resume_from).expanduser().absolute().parent
        runs = Path(self.request.session).expanduser().absolute() / RUNS_FOLDER
        if folder.parent == runs and folder.is_dir():
            try:
                self._locks.append(hold_run_lock(folder))
            except OSError as err:
                logger.debug("cannot lock %s: %s", folder, err)

    def close(self) -> None:
        """Release the run folders (the OS does it too when the process dies)."""
        from napari_unet.session.store import release_run_lock

        while self._locks:
            release_run_lock(self._locks.pop())

    def _config(self) -> TrainConfig:
        return self.request.train_config.replace(
            task=self.info.task,
            checkpoint_dir=str(self.run_dir),
            device=self.request.device,
            num_threads=self.request.threads,
        )

    # ------------------------------------------------------------------ data
    def gather(self) -> tuple[list[Any], list[Any]]:
        """Every annotated slice of the session -> ``(train_items, val_items)``."""
        slices = self.session.training_items()
        check_training_data(slices, self.info, repr(self.request.start_from))
        items = to_items(slices, self.normalization)
        self.pool = {item.name: item for item in items}
        train, self.val_items = self.plan.split(items)
        self._send_pool(())
        return train, self.val_items

    def _send_pool(self, added: tuple) -> None:
        items = list(self.pool.values())
        counts = summarize(items, self.val_items, self.info.task)
        self.data = {k: counts[k] for k in ("n_images", "n_slices", "annotated_pixels", "objects")}
        self.data["validation_pixels"] = counts["validation_pixels"]
        self.send(
            PoolChanged(
                n_items=len(items),
                n_validation=counts["n_validation"],
                n_images=counts["n_images"],
                annotated_pixels=counts["annotated_pixels"],
                validation_pixels=counts["validation_pixels"],
                objects=counts["objects"],
                added=tuple(added),
            )
        )

    def load_corrections(self, keys: list[tuple[str, int]], feed: _Feed) -> None:
        """Reload ``keys`` from the session and queue them for the training pool."""
        if not self.request.keep_learning:
            logger.info("ignoring %d correction(s): keep-learning is off", len(keys))
            return
        self.session.refresh()
        wanted = {slice_name(i, s) for i, s in keys}
        image_ids = sorted({i for i, _ in keys if i in {e.id for e in self.session.images()}})
        slices = [
            s for s in self.session.iter_training_items(image_ids=image_ids) if s.name in wanted
        ]
        slices = [s for s in slices if s.annotated_mask.any()]
        for item in to_items(slices, self.normalization):
            feed.put(self.plan.prepare_new(item))
            self.pool[item.name] = item
        logger.info("queued %d corrected slice(s) for training", len(slices))

    # ------------------------------------------------------------------ events
    def _send_step(self, event: Any, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_step_sent >= 1.0 / self.request.max_step_events_per_s:
            self.send(event)
            self._last_step_sent = now
            self._pending_step = None
        else:
            self._pending_step = event

    def _flush_step(self) -> None:
        if self._pending_step is not None:
            self._send_step(self._pending_step, force=True)

    def _publish(self, path: Path, step: int, metrics: dict) -> None:
        from napari_unet.core.atomic import atomic_write_with

        target = self.session.new_version_path(self.request.version_name or "model")
        with open(path, "rb") as source:
            atomic_write_with(target, lambda handle: shutil.copyfileobj(source, handle))
        name = None
        if self.request.version_name:
            name = f"{self.request.version_name} (step {step})"
        entry = self.session.add_version(
            target, name=name, parent=self.parent, steps=step, data=self.data, metrics=metrics
        )
        self.published = entry.id
        self.send(VersionPublished(entry.id, str(target), dict(metrics), int(step)))

    # ------------------------------------------------------------------ the run
    def baseline(self, train: list[Any]) -> float | None:
        """Validation score of the start model (None without validation data)."""
        if not self.val_items:
            return None
        from napari_unet.core.checkpoint.format import load_checkpoint
        from napari_unet.core.device import get_device
        from napari_unet.core.training.config import ValidationEvent
        from napari_unet.core.training.losses import SegmentationLoss
        from napari_unet.core.training.state import build_pools
        from napari_unet.core.training.validation import evaluate

        model = load_checkpoint(self.start_path).model
        _, validation, _ = build_pools(model, train, self.val_items, self.config)
        device = get_device(self.config.device)
        model.to(device)
        metrics = evaluate(
            model,
            validation.validation_batches(self.config.batch_size),
            task=self.config.task,
            loss_fn=SegmentationLoss(self.config.loss, self.config.task),
            device=device,
        )
        self.send(ValidationEvent(step=0, metrics=dict(metrics), improved=False))
        return float(metrics["score"])

    def run(self, control: _Control) -> TrainerFinished:
        """Train until the budget is spent or ``stop`` is asked; returns the final event."""
        from napari_unet.core.training.loop import (
            CheckpointEvent,
            StepEvent,
            ValidationEvent,
            iter_train,
        )

        train, val = self.gather()
        baseline = self.baseline(train)
        feed = _Feed()
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
        metrics: dict = {}
        while True:
            try:
                event = next(events)
            except StopIteration as done:
                result = done.value
                break
            if self._take_corrections(control, feed):
                baseline = None  # the held-back tiles changed: scores are not comparable
            if isinstance(event, StepEvent):
                self._send_step(event)
            elif isinstance(event, ValidationEvent):
                self._flush_step()
                metrics = dict(event.metrics)
                self.send(event)
            elif isinstance(event, CheckpointEvent) and event.kind == "best":
                score = metrics.get("score")
                if event.step == 0:
                    logger.info("stopped before the first step: nothing to publish")
                elif baseline is None or score is None or score > baseline:
                    self._publish(Path(event.path), event.step, metrics)
                else:
                    logger.info("best so far (%.4f) not better than the start model", score)
        self._flush_step()
        return TrainerFinished(result.reason, int(result.steps), self.published)

    def _take_corrections(self, control: _Control, feed: _Feed) -> bool:
        """Announce items the loop took in, queue new corrections; True when the pool grew."""
        changed = bool(feed.taken)
        if changed:
            names = tuple(item.name for item in feed.taken)
            feed.taken.clear()
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
        _prepare_process(request)
        listener = _Control(control)
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
